#!/usr/bin/env bash
# The league (suite/matrices/league.yaml) on one task, in slices of two entries in the
# matrix's order, for a background run across sessions (docs/league.md, "Running it,
# across sessions"). It first loads the published league into the store, so every cell
# already published counts as stored; each slice then runs only what is missing (a
# complete slice plans and exits), so running this script again resumes where a stopped
# run left off (a cell stopped mid-way runs again from its start).
#
#   setsid nohup bench/league_slices.sh >> results/league.log 2>&1 < /dev/null &
#
# Environment: PYTHON (default .venv/bin/python), DB (default results/league.duckdb),
# TASK (default rotten-tomatoes), WORKERS (default 2).
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD
PYTHON=${PYTHON:-.venv/bin/python}
DB=${DB:-results/league.duckdb}
TASK=${TASK:-rotten-tomatoes}
WORKERS=${WORKERS:-2}

"$PYTHON" -m suite.cli import-published leaderboard/published/league-v1 --db "$DB" || exit 1
# The matrix's entries by label, as `run --method` takes them.
mapfile -t ENTRIES < <("$PYTHON" -c '
from suite.registry import Catalog
for entry in Catalog.discover().matrices.get("league").spec.entries():
    print(entry.display)')
[ "${#ENTRIES[@]}" -gt 0 ] || { echo "no league entries found" >&2; exit 1; }
for ((i = 0; i < ${#ENTRIES[@]}; i += 2)); do
    slice=(--method "${ENTRIES[i]}")
    [ $((i + 1)) -lt ${#ENTRIES[@]} ] && slice+=(--method "${ENTRIES[i + 1]}")
    echo "== $(date -u +%FT%TZ) slice: ${slice[*]}"
    "$PYTHON" -m suite.cli run league --task "$TASK" "${slice[@]}" --db "$DB" --workers "$WORKERS"
    echo "== $(date -u +%FT%TZ) exit $?"
done
