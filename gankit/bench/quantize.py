"""Reduced-precision files for the benchmark: static QDQ int8 (the export's, calibrated on real
inputs) and an fp16 model for the CUDA backends."""

from __future__ import annotations

from pathlib import Path

from gankit.bench.models import BenchModel


def quantize_int8(model: BenchModel, conv_transpose: bool = False) -> Path:
    """The int8 file ``gankit export --int8`` writes for this model when ``conv_transpose``
    (same calibration, same quantiser: :mod:`gankit.export.quantize`). ConvTranspose is left in float unless
    ``conv_transpose``: onnxruntime has no int8 ConvTranspose kernel, so quantising it only adds
    QuantizeLinear/DequantizeLinear pairs there; OpenVINO does run it in int8 (and gets the
    export's file, which quantises it)."""
    if conv_transpose in model.int8_paths:
        return model.int8_paths[conv_transpose]
    from gankit.export.quantize import calibration_batches
    from gankit.export.quantize import quantize_int8 as quantize_file

    out = model.onnx_path.with_suffix(".int8ct.onnx" if conv_transpose else ".int8.onnx")
    quantize_file(model.onnx_path, out, calibration_batches(model.family, model.config, model.dataset),
                  conv_transpose=conv_transpose)
    model.int8_paths[conv_transpose] = out
    return out


def fp16_model(model: BenchModel) -> Path:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    out = model.onnx_path.with_suffix(".fp16.onnx")
    if not out.exists():
        m = convert_float_to_float16(onnx.load(str(model.onnx_path)), keep_io_types=False)
        onnx.save(m, str(out))
    return out
