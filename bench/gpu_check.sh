#!/usr/bin/env bash
# GPU check for the Ray scheduler (UNTESTED on a GPU so far: written on a CPU-only
# machine; run it on one when a GPU machine is available). Budget: under 8 minutes.
#
# What it does, on one GPU, with an embedded Ray:
#   1. one whole GPU per cell   (profile cuda-any:      num_gpus 1)
#   2. two cells packed per GPU (profile cuda-any-half: num_gpus 0.5, opt-in packing)
# each a small matrix: minilm-l6 x {head, lora, bitfit} x drug-condition, 1 seed, 60 steps.
# Then prints the recorded hardware profile (device, driver, CUDA/cuDNN, calibrated
# matmul FLOP/s and bandwidth) and per-row status, device mismatch, gpu_fraction,
# achieved FLOP/s fraction, peak memory and wall times for both runs.
#
# Usage (from the repository root):  bash bench/gpu_check.sh [OUT_DIR]
# Exit code: 0 if every cell of both runs is ok, else 1.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-${OUT:-results/gpu_check}}"
mkdir -p "$OUT"
PY="${PY:-.venv/bin/python}"
PEFTBENCH="${PEFTBENCH:-.venv/bin/peftbench}"
DB="$OUT/gpu_check.duckdb"
rm -f "$DB" "$DB.wal"

"$PY" - <<'PYEOF'
import torch
assert torch.cuda.is_available(), "no CUDA device visible: this check needs a GPU"
print("torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name(0))
PYEOF

write_matrix() {  # name profile
  cat > "$OUT/$1.yaml" <<YAML
name: $1
models: [minilm-l6]
methods: [head, lora, bitfit]
tasks: [drug-condition]
seeds: [0]
profile: $2
timeout_s: 240
budget: {max_steps: 60, batch_size: 16}
YAML
}
write_matrix gpu-whole cuda-any
write_matrix gpu-packed cuda-any-half

status=0
for m in gpu-whole gpu-packed; do
  start=$(date +%s)
  timeout 300 "$PEFTBENCH" run "$OUT/$m.yaml" --db "$DB" 2>&1 | tail -n 20 | tee "$OUT/$m.log" || status=1
  echo "$m: $(( $(date +%s) - start )) s wall" | tee -a "$OUT/timings.txt"
done

"$PEFTBENCH" query "select profile_id, device_name, device_count, device_memory_bytes/2^30 as mem_gib, driver_version, cuda_version, cudnn_version, dtype, matmul_flops/1e12 as matmul_tflops, memory_bandwidth_bytes_s/1e9 as bandwidth_gbs, cpu_model, cpu_cores from hardware_profiles" --db "$DB" --format csv | tee "$OUT/profiles.csv"
"$PEFTBENCH" query "select matrix, method, status, device, device_mismatch, gpu_fraction, round(flops_fraction_of_peak, 4) as frac_peak, peak_memory_bytes/2^20 as peak_mib, round(train_wall_s, 2) as train_s, round(cell_wall_s, 2) as cell_s, round(latency_unmerged_s*1e3, 2) as lat_ms, test_primary, error from cell_runs order by matrix, method" --db "$DB" --format csv | tee "$OUT/rows.csv"
ok=$("$PEFTBENCH" query "select count(*) as n from cell_runs where status = 'ok'" --db "$DB" --format csv | tail -n 1)
echo "ok cells: $ok of 6"
[ "$ok" = "6" ] || status=1
exit $status
