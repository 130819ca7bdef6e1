"""``gankit bench``: every backend, every batch size, one process, honest numbers.

For each model (an installed family's generator with trained weights when a run of it is
found under ``runs/``, else a fresh init of the same architecture) and each batch size, it
times, after warm-up, with the median of many runs:

- PyTorch: eager fp32, eager fp32 channels_last, bf16 autocast + channels_last,
  ``torch.compile`` (all on the same BatchNorm-folded module the exporter sees);
- the exported ``.onnx`` file: onnxruntime (graph optimisation saved to disk, threads set),
  onnxruntime int8 (static QDQ, per-channel, calibrated on real inputs; ConvTranspose stays
  float because onnxruntime has no int8 kernel for it), OpenVINO fp32 (and bf16 where the
  CPU has it) where OpenVINO is installed (with gankit, where it has wheels);
- on CUDA when present: PyTorch eager/compiled/fp16, onnxruntime CUDA with IO binding and
  CUDA graphs, an fp16 model, and TensorRT when onnxruntime has it.

Reduced precision is reported only with proof: each bf16/fp16/int8 row carries its PSNR
against the fp32 output and the judge metrics (conditional accuracy, FD) or inpainting
hole PSNR computed through that backend; a drop of more than one point (0.01 of conditional
accuracy or class entropy, 1 dB of hole PSNR) marks the row ``failing``. FD is reported beside
them but does not mark a row: no margin for it has been calibrated. FLOPs come from
``torch.utils.flop_counter``; the same run measures the machine's fp32/bf16 matmul roof and
int8 roof (the best of onnxruntime's MatMulInteger and OpenVINO's QDQ MatMul) and reports
each row's share of the roof of the precision it computes in.

Restore models are timed on 256x256 input windows, at most four per call (the runtime's own
batch), and also on a whole 512x512 photo through ``gankit restore``'s code path against the
same generator in PyTorch and OpenCV's bicubic (:mod:`gankit.bench.restore_speed`). Cold start
(fresh processes, torch never imported) is measured for every model's file.
"""

from gankit.bench.core import run_bench  # noqa: F401

__all__ = ["run_bench"]
