#!/usr/bin/env bash
# Pretraining throughput on one GPU: llama-pt-60m (56.6 M parameters) in bf16, a fixed
# 200 steps of 64 x 256 tokens (3,276,800 tokens) per method: full-rank, low-rank,
# SLTrain, SST and LOST at rank 128, seed 0, on python-docs-lm. Budget: under 8 minutes
# on an H100/H200 (5 cells; each trains for well under a minute, evaluates 960 sequences).
#
# Prints per method: status, tokens per second, the estimated training FLOP/s as a
# fraction of the bf16 dense-matmul peak the worker calibrated
# (suite/scheduler/hardware.py; the estimate counts linear layers and the replaced
# layers' declared flop_weights, suite/train/flops.py), peak GPU memory, validation
# perplexity; then the calibrated profile. The bf16 preset is a generated copy of
# llama-pt-60m with dtype bfloat16: full-rank keeps bf16 weights with fp32 master copies,
# the replaced layers keep fp32 factors and compute in bf16 (suite/methods/pretrain.py).
#
# The corpus (Debian's python3.11-doc reST sources) must be at
# /usr/share/doc/python3.11/html/_sources, or under $PEFTBENCH_DEBIAN_ROOT, or in
# results/deb-root (made by `make corpus-root` on a machine with apt, carried along).
#
# Usage (from the repository root):  bash bench/gpu_pretrain.sh [OUT_DIR]
#   PY=python3 PEFTBENCH="python3 -m suite.cli" bash bench/gpu_pretrain.sh   (no venv)
# Exit code: 0 if every cell is ok, else 1.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/gpu_common.sh
source bench/gpu_common.sh gpu_pretrain "${1:-}"
SOURCES=usr/share/doc/python3.11/html/_sources
if [ ! -d "/$SOURCES" ] && [ -z "${PEFTBENCH_DEBIAN_ROOT:-}" ]; then
  if [ -d "results/deb-root/$SOURCES" ]; then
    export PEFTBENCH_DEBIAN_ROOT="$PWD/results/deb-root"
  else
    echo "no corpus: install python3.11-doc, or carry results/deb-root (make corpus-root)" >&2
    exit 1
  fi
fi
STEPS="${STEPS:-200}"
PLUGINS="$WORK/plugins"
mkdir -p "$PLUGINS/models"

"$PY" - "$PLUGINS/models/llama-pt-60m-bf16.yaml" "$WORK/gpu-pretrain.yaml" "$STEPS" <<'PYEOF'
import sys, yaml
import torch
assert torch.cuda.is_available(), "no CUDA device visible: this check needs a GPU"
print("torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name(0))
preset_out, matrix_out, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
preset = yaml.safe_load(open("suite/models/llama-pt-60m.yaml"))
preset.update(name="llama-pt-60m-bf16", dtype="bfloat16")
yaml.safe_dump(preset, open(preset_out, "w"), sort_keys=False)
matrix = yaml.safe_load(open("suite/matrices/pretrain.yaml"))
matrix.update(
    name="gpu-pretrain", models=["llama-pt-60m-bf16"], seeds=[0], timeout_s=300,
    budget={**matrix["budget"], "tokens": steps * matrix["budget"]["batch_size"] * 256},
)
yaml.safe_dump(matrix, open(matrix_out, "w"), sort_keys=False)
PYEOF

start=$(date +%s)
status=0
timeout 420 "${PB[@]}" run "$WORK/gpu-pretrain.yaml" --plugins "$PLUGINS" --db "$DB" \
  --executor local >"$OUT/run.log" 2>&1 || status=1
echo "gpu-pretrain: $(($(date +%s) - start)) s wall" | tee "$OUT/timings.txt"
"${PB[@]}" query "select method, status, train_steps, round(tokens_per_s) as tokens_per_s, round(flops_fraction_of_peak, 4) as frac_bf16_peak, round(achieved_flops_per_s/1e12, 2) as tflops, round(peak_memory_bytes/2^20) as peak_mib, round(step_time_median_s*1e3, 1) as step_ms, trainable_params, round(val_perplexity, 2) as val_ppl, base_dtype, adapter_dtype, device, error from results order by method" --db "$DB" --format csv | tee "$OUT/rows.csv"
"${PB[@]}" query "select device_name, dtype, round(matmul_flops/1e12, 1) as matmul_tflops, round(memory_bandwidth_bytes_s/1e9) as bandwidth_gb_s, cuda_version, driver_version from hardware_profiles" --db "$DB" --format csv | tee "$OUT/profile.csv"
ok=$("${PB[@]}" query "select count(*) as n from results where status = 'ok'" --db "$DB" --format csv | tail -n 1)
echo "ok cells: $ok of 5"
[ "$ok" = "5" ] || status=1
if [ -d "$WORK/logs" ]; then tar -czf "$OUT/cell-logs.tgz" -C "$WORK" logs; fi
exit $status
