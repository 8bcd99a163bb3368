# Shared set-up of the GPU check scripts; source it as `source bench/gpu_common.sh NAME [OUT]`
# from the repository root. Sets OUT (summary files), PY, PB (the peftbench command as an
# array, from PEFTBENCH), WORK (database, Ray's temp folder, cell logs; emptied) and DB.
gpu_name="$1"
OUT="${2:-${OUT:-results/$gpu_name}}"
mkdir -p "$OUT"
PY="${PY:-.venv/bin/python}"
read -r -a PB <<<"${PEFTBENCH:-.venv/bin/peftbench}"
WORK="results/${gpu_name}_work"
rm -rf "$WORK" && mkdir -p "$WORK"
DB="$WORK/$gpu_name.duckdb"
