#!/usr/bin/env bash
# GPU rows of the benchmark, for when a GPU machine is lent (see benchmarks/README.md).
# Installs nothing from the network. Runs in well under 8 minutes on one H100/H200.
#
#   benchmarks/gpu.sh            # from the repository root, on the GPU machine
#
# Expects: CUDA PyTorch in the image; onnxruntime-gpu as a wheel split into parts under
# .gpu-wheel/ (ignored by git; sent over several calls because one call carries 64 MiB):
#   split -b 60M onnxruntime_gpu-*.whl .gpu-wheel/onnxruntime_gpu.whl.part-
# Results: benchmarks/gpu.json, benchmarks/gpu.md, benchmarks/gpu.png; copy the card name
# and the table into benchmarks/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

if ls .gpu-wheel/*.part-* >/dev/null 2>&1; then
  name=$(ls .gpu-wheel/*.part-* | head -1 | sed 's/\.part-.*//')
  cat .gpu-wheel/*.part-* > "$name"
  pip install -q --no-index --no-deps --force-reinstall "$name"
fi
# gankit and its plugins from this checkout, using what the image already has
pip install -q --no-index --no-deps --no-build-isolation -e . -e plugins/gan -e plugins/cgan -e plugins/inpaint

python - <<'PY'
import onnxruntime as ort, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))
print("onnxruntime", ort.__version__, ort.get_available_providers())
PY

# GPU and CPU rows in one process; no training/cold-start (CPU numbers come from the CPU run)
timeout 450 gankit bench --device cuda --models cgan,gan,inpaint --batch 1,64,256 --no-train --no-cold \
  --budget 0.5 --json "$OUT/gpu.json" --md "$OUT/gpu.md" --png "$OUT/gpu.png" --overwrite
