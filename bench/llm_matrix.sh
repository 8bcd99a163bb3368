#!/usr/bin/env bash
# The llm matrix (suite/matrices/llm.yaml) in slices, most wanted first, for a background
# run on a shared CPU (docs/llm.md, "Running the matrix"). Each slice is `peftbench run
# llm` restricted by --task/--method/--seed: it runs the cells the whole matrix would run
# and skips those already stored ok, so running this script again resumes where a stopped
# run left off (a cell stopped mid-way runs again from its start). The slices do not
# overlap, so a cell that fails is tried once per pass, not once per slice.
#
#   PYTHON=.venv/bin/python setsid nohup bench/llm_matrix.sh >> results/llm-matrix.log 2>&1 < /dev/null &
#
# Environment: DB (default results/llm.duckdb), PYTHON (default .venv/bin/python), NICE
# (default 15). One process, one thread: the machine is shared.
set -u
cd "$(dirname "$0")/.."
# Started with setsid (as above), this script leads its own session, and the kernel's
# autogroup scheduler weighs that session against the others whatever its processes'
# nice: give the session itself the nice value. Not when it shares a caller's session.
if [ "$(ps -o sid= -p $$ | tr -d ' ')" = "$$" ] && [ -w /proc/self/autogroup ]; then
    echo "${NICE:-15}" > /proc/self/autogroup
fi
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
DB=${DB:-results/llm.duckdb}
PYTHON=${PYTHON:-.venv/bin/python}
FIRST=(--method lora --method full --method qlora --method dora)
REST=(--method lq-lora --method loram --method pela --method galore --method mos
      --method smora --method lora-mixer)

run() {
    echo "== $(date -u +%FT%TZ) peftbench run llm $*"
    nice -n "${NICE:-15}" "$PYTHON" -m suite.cli run llm --db "$DB" --executor local "$@"
    echo "== $(date -u +%FT%TZ) exit $?"
}

RT=(--task rotten-tomatoes-mc)
DOCS=(--task python-docs-adapt)
run "${RT[@]}" --seed 0 "${FIRST[@]}"
run "${RT[@]}" --seed 1 --seed 2 "${FIRST[@]}"
run "${RT[@]}" --seed 0 "${REST[@]}"
run "${DOCS[@]}" --seed 0 "${FIRST[@]}"
run "${RT[@]}" --seed 1 --seed 2 "${REST[@]}"
run "${DOCS[@]}" --seed 0 "${REST[@]}"
run "${DOCS[@]}" --seed 1 --seed 2 "${FIRST[@]}"
run "${DOCS[@]}" --seed 1 --seed 2 "${REST[@]}"
