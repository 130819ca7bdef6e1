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

# Data-parallel path (issue 26) on NCCL at world size 1: torchrun with one rank, the collectives
# forced on (GANKIT_DIST_FORCE=1), against the same training in one plain process. Copy both
# "trained N steps in Xs (Y images/s)" lines into benchmarks/RESULTS.md (section "Data-parallel training").
for mode in plain nccl1; do
  rm -rf "$OUT/ddp-$mode"
  if [ "$mode" = plain ]; then
    launch=(python -m gankit)
  else
    launch=(env GANKIT_DIST_FORCE=1 python -m torch.distributed.run --standalone --nproc-per-node 1 -m gankit)
  fi
  echo "== $mode"
  timeout 150 "${launch[@]}" train --plugin cgan --device cuda --steps 300 --batch-size 256 --no-evaluate \
    --no-export --set sample_every=0 --out "$OUT/ddp-$mode" | grep -E "trained|on cuda" || true
done
