"""Reduced-precision files for the benchmark: static QDQ int8 (calibrated on real inputs)
and an fp16 model for the CUDA backends."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gankit.bench.models import BenchModel, example_inputs
from gankit.sysinfo import cpu_flags


def quantize_int8(model: BenchModel, conv_transpose: bool = False) -> Path:
    """Static QDQ int8, per-channel weights, calibrated on real inputs. ConvTranspose is left
    in float unless ``conv_transpose``: onnxruntime has no int8 ConvTranspose kernel, so
    quantising it only adds QuantizeLinear/DequantizeLinear pairs there; OpenVINO does run
    it in int8."""
    if conv_transpose in model.int8_paths:
        return model.int8_paths[conv_transpose]
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    batches = [calibration_inputs(model, 32, seed=s) for s in range(8)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(batches)

        def get_next(self):
            return next(self.it, None)

    pre = model.onnx_path.with_suffix(".pre.onnx")
    quant_pre_process(str(_defaults_as_constants(model.onnx_path)), str(pre), skip_symbolic_shape=True)
    out = model.onnx_path.with_suffix(".int8ct.onnx" if conv_transpose else ".int8.onnx")
    vnni = bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})
    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=["Conv", "MatMul", "Gemm"] + (["ConvTranspose"] if conv_transpose else []),
                    reduce_range=not vnni)
    model.int8_paths[conv_transpose] = out
    return out


def _defaults_as_constants(path: Path) -> Path:
    """The file with its optional inputs (initializers that are also graph inputs, e.g.
    stylegan's truncation) turned into constants at their defaults: the bench feeds only the
    contract's inputs, and onnxruntime's calibrator cannot range tensors fed by overridable
    initializers ("scale issue")."""
    import onnx

    m = onnx.load(str(path))
    names = {init.name for init in m.graph.initializer}
    keep = [i for i in m.graph.input if i.name not in names]
    if len(keep) == len(m.graph.input):
        return path
    del m.graph.input[:]
    m.graph.input.extend(keep)
    out = path.with_suffix(".const.onnx")
    onnx.save(m, str(out))
    return out


def calibration_inputs(model: BenchModel, batch: int, seed: int) -> dict[str, np.ndarray]:
    """Inputs drawn as in real use: noise (+ labels), or real test images with real masks."""
    if model.family.task == "inpaint" and model.dataset is not None:
        from gankit.data import to_float
        from gankit.data.masks import mixed_masks

        rng = np.random.default_rng(seed)
        x = to_float(model.dataset.x_test[rng.choice(len(model.dataset.x_test), batch)])
        m = mixed_masks(batch, x.shape[2], x.shape[3], seed=seed).astype(np.float32)
        return {"image": x * (1 - m), "mask": m}
    if model.family.task == "restore" and model.dataset is not None:
        # real degraded held-out patches at the run's size: the bench times 256x256 tiles, but
        # the calibrator keeps every activation of every batch, and 8 x 32 such tiles through
        # 48-channel layers at 2x size need tens of GiB
        from gankit.evaluate.restoration import eval_set

        _, lq = eval_set(model.dataset, str(model.config["degradation"]), seed=1000 + seed)  # not the judged draws
        rng = np.random.default_rng(seed)
        return {"image": np.ascontiguousarray(lq[rng.choice(len(lq), batch)], np.float32)}
    return example_inputs(model, batch, seed=100 + seed)


def fp16_model(model: BenchModel) -> Path:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    out = model.onnx_path.with_suffix(".fp16.onnx")
    if not out.exists():
        m = convert_float_to_float16(onnx.load(str(model.onnx_path)), keep_io_types=False)
        onnx.save(m, str(out))
    return out
