#!/usr/bin/env bash
# Every built-in method on one GPU, then native vs PEFT LoRA/DoRA on that GPU.
# Budget: under 6 minutes on an H100/H200.
#
#   1. suite/matrices/lowrank.yaml and sparse.yaml (33 cells, 20 steps each) with their
#      profile switched to cuda-any: each method's prepare, step hooks (mask regrowth,
#      rank reallocation, optimiser rebinding), merge and save on CUDA tensors. Prints
#      per row: status, peak GPU memory, median step time, merge error, error text.
#   2. bench/methods_vs_peft.py --device cuda: native/PEFT ratios for LoRA and DoRA.
#
# Usage (from the repository root):  bash bench/gpu_methods.sh [OUT_DIR]
#   PY=python3 PEFTBENCH="python3 -m suite.cli" bash bench/gpu_methods.sh   (no venv)
# Exit code: 0 if every cell is ok and the benchmark ran, else 1.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/gpu_common.sh
source bench/gpu_common.sh gpu_methods "${1:-}"

status=0
for m in lowrank sparse; do
  "$PY" - "$m" "$WORK/gpu-$m.yaml" <<'PYEOF'
import sys, yaml
name, dest = sys.argv[1], sys.argv[2]
spec = yaml.safe_load(open(f"suite/matrices/{name}.yaml"))
spec.update(name=f"gpu-{name}", profile="cuda-any", timeout_s=300)
yaml.safe_dump(spec, open(dest, "w"), sort_keys=False)
PYEOF
  start=$(date +%s)
  timeout 180 "${PB[@]}" run "$WORK/gpu-$m.yaml" --db "$DB" >"$OUT/run-$m.log" 2>&1 || status=1
  echo "gpu-$m: $(($(date +%s) - start)) s wall" | tee -a "$OUT/timings.txt"
done
"${PB[@]}" query "select matrix, method, status, device, round(peak_memory_bytes/2^20) as peak_mib, round(step_time_median_s*1e3, 1) as step_ms, merge_max_abs_diff, trainable_params, round(test_primary, 4) as test_acc, error from cell_runs order by matrix, method" --db "$DB" --format csv | tee "$OUT/rows.csv"
ok=$("${PB[@]}" query "select count(*) as n from cell_runs where status = 'ok'" --db "$DB" --format csv | tail -n 1)
all=$("${PB[@]}" query "select count(*) as n from cell_runs" --db "$DB" --format csv | tail -n 1)
echo "ok cells: $ok of $all"
[ "$ok" = "$all" ] || status=1

timeout 120 "$PY" bench/methods_vs_peft.py --device cuda --steps 20 2>&1 | tee "$OUT/methods_vs_peft.txt" || status=1
if [ -d "$WORK/logs" ]; then tar -czf "$OUT/cell-logs.tgz" -C "$WORK" logs; fi
exit $status
