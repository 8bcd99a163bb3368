#!/usr/bin/env bash
# GPU check for the runner and the Ray scheduler. Budget: under 6 minutes on one GPU.
#
# Four small matrices on one GPU, each minilm-l6 x drug-condition, seed 0:
#   gpu-local   --executor local (no Ray), one GPU       head, lora, bitfit; 1 epoch
#                                                        (15 steps of 16 reviews)
#   gpu-whole   embedded Ray, cuda-any (num_gpus 1)      the same cells again (--rerun)
#   gpu-packed  embedded Ray, cuda-any-half (0.5 GPU)    two cells share the GPU (opt-in)
#   gpu-smoke   embedded Ray, cuda-any                   the smoke matrix's cells and
#               budget (head, lora, full; 5 epochs), to set beside the CPU numbers
# Then prints the recorded hardware profiles (device, driver, CUDA/cuDNN, calibrated
# matmul FLOP/s and bandwidth) and, per row: status, device, mismatch flag, GPU fraction,
# achieved FLOP/s as a fraction of the calibrated peak, peak memory, wall times, latency
# and test accuracy.
#
# Usage (from the repository root):  bash bench/gpu_check.sh [OUT_DIR]
#   PY=python3 PEFTBENCH="python3 -m suite.cli" bash bench/gpu_check.sh   (no venv)
# Exit code: 0 if every cell of every run is ok, else 1.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/gpu_common.sh
source bench/gpu_common.sh gpu_check "${1:-}"
SPECS="$(mktemp -d)"

"$PY" - <<'PYEOF'
import torch
assert torch.cuda.is_available(), "no CUDA device visible: this check needs a GPU"
print("torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name(0))
PYEOF

write_matrix() {  # name profile methods budget
  cat >"$SPECS/$1.yaml" <<YAML
name: $1
models: [minilm-l6]
methods: [$3]
tasks: [drug-condition]
seeds: [0]
profile: $2
timeout_s: 300
budget: {$4}
baseline_method: lora
YAML
}
short="epochs: 1, batch_size: 16"
smoke="epochs: 5, batch_size: 16, warmup_ratio: 0.06, grad_clip: 1.0"
write_matrix gpu-local cuda-any "head, lora, bitfit" "$short"
write_matrix gpu-whole cuda-any "head, lora, bitfit" "$short"
write_matrix gpu-packed cuda-any-half "head, lora, bitfit" "$short"
write_matrix gpu-smoke cuda-any "head, lora, full" "$smoke"

status=0
run_one() {  # name extra-args...
  local name=$1
  shift
  local start
  start=$(date +%s)
  echo "=== $name $*" >>"$OUT/runs.log"
  timeout 420 "${PB[@]}" run "$SPECS/$name.yaml" --db "$DB" --rerun "$@" >>"$OUT/runs.log" 2>&1 || status=1
  echo "$name: $(($(date +%s) - start)) s wall" | tee -a "$OUT/timings.txt"
}
run_one gpu-local --executor local
run_one gpu-whole
run_one gpu-packed
run_one gpu-smoke
tail -n 40 "$OUT/runs.log"

"${PB[@]}" query "select profile_id, device_name, device_count, round(device_memory_bytes/2^30, 1) as mem_gib, driver_version, cuda_version, cudnn_version, dtype, round(matmul_flops/1e12, 1) as matmul_tflops, round(memory_bandwidth_bytes_s/1e9) as bandwidth_gbs, cpu_model, cpu_cores from hardware_profiles" --db "$DB" --format csv | tee "$OUT/profiles.csv"
"${PB[@]}" query "select matrix, method, status, device, device_mismatch, gpu_fraction, worker_pid, round(flops_fraction_of_peak, 4) as frac_peak, round(peak_memory_bytes/2^20) as peak_mib, train_steps, round(train_wall_s, 2) as train_s, round(step_time_median_s*1e3, 1) as step_ms, round(cell_wall_s, 2) as cell_s, round(latency_unmerged_s*1e3, 2) as lat_ms, round(latency_merged_s*1e3, 2) as lat_merged_ms, round(test_primary, 4) as test_acc, round(baseline_test_primary, 4) as majority, error from cell_runs order by finished_at" --db "$DB" --format csv | tee "$OUT/rows.csv"
ok=$("${PB[@]}" query "select count(*) as n from cell_runs where status = 'ok'" --db "$DB" --format csv | tail -n 1)
echo "ok cells: $ok of 12"
[ "$ok" = "12" ] || status=1
cp "$DB" "$OUT/"
if [ -d "$WORK/logs" ]; then tar -czf "$OUT/cell-logs.tgz" -C "$WORK" logs; fi
rm -rf "$SPECS"
exit $status
