#!/usr/bin/env bash
# Compressed bases on one GPU. Budget: under 8 minutes on an H100/H200.
#
#   1. suite/matrices/compressed.yaml (minilm-l6 x {lora, qlora, lq-lora, loram, pela,
#      sketch-to-adapt} x drug-condition, 30 steps, one seed) with its profile switched
#      to cuda-any: prints per row status, base storage, base bytes and their ratio to
#      bf16 LoRA's, the training peak (max_memory_allocated) and its ratio to LoRA's, the
#      memory breakdown, test accuracy beside LoRA's.
#      Risk to the budget: lq-lora decomposes every linear first (SVD + NF4, at most 100
#      rounds; 35 minutes on a loaded 2-core CPU); the run stops at 330 s.
#   2. bench/compressed_vs_peft.py --device cuda: QLoRA in torchao (peftbench's nf4
#      storage) and in bitsandbytes (PEFT's LoRA on Linear4bit), bf16 LoRA native and in
#      PEFT; prints base bytes, peaks, step times, their ratios, and init agreement.
#
# bitsandbytes is the optional `quant` extra (pip install -c constraints.txt
# bitsandbytes); part 2 fails without it, part 1 does not need it.
#
# Usage (from the repository root):  bash bench/gpu_compressed.sh [OUT_DIR]
#   PY=python3 PEFTBENCH="python3 -m suite.cli" bash bench/gpu_compressed.sh   (no venv)
# Exit code: 0 if every cell is ok and the comparison ran, else 1.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/gpu_common.sh
source bench/gpu_common.sh gpu_compressed "${1:-}"

"$PY" - "$WORK/gpu-compressed.yaml" <<'PYEOF'
import sys, yaml
import torch
assert torch.cuda.is_available(), "no CUDA device visible: this check needs a GPU"
print("torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name(0))
spec = yaml.safe_load(open("suite/matrices/compressed.yaml"))
spec.update(name="gpu-compressed", profile="cuda-any", timeout_s=240)
yaml.safe_dump(spec, open(sys.argv[1], "w"), sort_keys=False)
PYEOF

status=0
start=$(date +%s)
timeout 330 "${PB[@]}" run "$WORK/gpu-compressed.yaml" --db "$DB" --executor local \
  >"$OUT/run.log" 2>&1 || status=1
echo "gpu-compressed: $(($(date +%s) - start)) s wall" | tee "$OUT/timings.txt"
"${PB[@]}" query "with l as (select base_bytes as lb, peak_memory_bytes as lp, test_primary as la from results where method = 'lora') select method, status, base_storage, base_bytes, round(base_bytes / l.lb, 3) as base_vs_bf16, inference_base_bytes, round(peak_memory_bytes/2^20) as peak_mib, round(peak_memory_bytes / l.lp, 3) as peak_vs_lora, mem_frozen_weights_bytes as frozen, mem_trainable_weights_bytes as trainable, mem_gradients_bytes as grads, optimizer_state_bytes as optim, mem_activations_other_bytes as act_rest, round(test_primary, 4) as test_acc, round(l.la, 4) as lora_acc, device, error from results, l order by method" --db "$DB" --format csv | tee "$OUT/rows.csv"
ok=$("${PB[@]}" query "select count(*) as n from results where status = 'ok'" --db "$DB" --format csv | tail -n 1)
echo "ok cells: $ok of 6"
[ "$ok" = "6" ] || status=1

timeout 120 "$PY" bench/compressed_vs_peft.py --device cuda --steps 30 2>&1 \
  | grep -v "Warning\|warn(" | tee "$OUT/compressed_vs_peft.txt" || status=1
if [ -d "$WORK/logs" ]; then tar -czf "$OUT/cell-logs.tgz" -C "$WORK" logs; fi
exit $status
