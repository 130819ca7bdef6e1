"""int8 files: an exported generator quantised statically (QDQ), calibrated on real inputs.

``gankit export RUN --int8`` and ``gankit bench``'s int8 rows both come from here: the bench's
OpenVINO int8 row times the file a user can write (its onnxruntime int8 row leaves the
ConvTranspose layers unquantised, see ``conv_transpose`` below). Weights are int8 per output channel,
activations uint8 per tensor, ranges from the run's own training data (random latents and labels for a
generator, which are its real inputs; training images under real masks for inpainting;
degraded training patches for restoration). Only Conv, ConvTranspose, MatMul and Gemm are quantised: the element-wise rest
and any comparison (the gan's cluster lookup) stay float, so no decision in the graph moves.

OpenVINO runs every quantised layer in int8 (VNNI/AMX kernels). onnxruntime has no int8
ConvTranspose kernel and runs those layers in float between a DequantizeLinear and a
QuantizeLinear; ``conv_transpose=False`` leaves them unquantised for it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from gankit.errors import GankitError, first_line
from gankit.sysinfo import cpu_flags

CALIBRATION_BATCHES, CALIBRATION_BATCH = 8, 32


def calibration_batches(family, config: dict[str, Any], dataset, *, batches: int = CALIBRATION_BATCHES,
                        batch: int = CALIBRATION_BATCH, seed: int = 100) -> list[dict[str, np.ndarray]]:
    """Inputs drawn as in real use, from the training split (never the evaluation's test split)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(batches):
        if family.task in ("inpaint", "restore") and dataset is not None:
            from gankit.data import to_float

            n = len(dataset.x_train)
            x = to_float(dataset.x_train[rng.choice(n, batch, replace=n < batch)])  # a folder may hold 2 images
            if family.task == "inpaint":
                from gankit.data.masks import mixed_masks

                m = mixed_masks(batch, x.shape[2], x.shape[3], seed=seed + i).astype(np.float32)
                out.append({"image": x * (1 - m), "mask": m})
            else:
                from gankit.data.degradations import degrade

                lq = degrade(str(config["degradation"]), x, rng)
                out.append({"image": np.ascontiguousarray(lq, np.float32)})
        else:
            out.append({k: v.numpy() for k, v in family.export_inputs(config, batch, seed=seed + i).items()})
    return out


def quantize_int8(src: str | os.PathLike, out: str | os.PathLike, batches: list[dict[str, np.ndarray]], *,
                  conv_transpose: bool = True) -> Path:
    """Write the int8 QDQ version of the fp32 file ``src`` to ``out`` (not atomically: callers
    write to a temporary name). ``src``'s metadata is carried over, plus ``gankit.precision``."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from gankit.export import set_metadata

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(batches)

        def get_next(self):
            return next(self.it, None)

    src, out = Path(src), Path(out)
    # Zen 4/5 and recent Xeons have VNNI: u8 x s8 products cannot saturate there, so the full
    # 8-bit range is safe; without it onnxruntime's AVX2 kernels need 7-bit weights. The choice
    # follows the exporting CPU and is recorded (gankit.int8_weight_bits): a full-range file
    # run by onnxruntime on a CPU without VNNI can saturate (OpenVINO is unaffected)
    vnni = bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})
    with tempfile.TemporaryDirectory(prefix="gankit-int8-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(_defaults_as_constants(src, Path(tmp))), str(pre), skip_symbolic_shape=True)
        try:
            quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=["Conv", "MatMul", "Gemm"] + (["ConvTranspose"] if conv_transpose else []),
                            reduce_range=not vnni)
        except Exception as exc:
            raise GankitError(f"int8 quantisation failed: {first_line(exc)}") from None
    model = onnx.load(str(out))
    meta = {p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props}
    meta["gankit.precision"] = "int8"
    meta["gankit.int8_weight_bits"] = "8" if vnni else "7"
    kept = {i.name for i in model.graph.input}
    optional = [n for n in meta.get("gankit.optional_inputs", "").split(",") if n and n in kept]
    if "gankit.optional_inputs" in meta:  # the ones fixed at their defaults are inputs no more
        meta["gankit.optional_inputs"] = ",".join(optional)
    set_metadata(model, meta)
    onnx.save(model, str(out))
    return out


def _defaults_as_constants(path: Path, tmp: Path) -> Path:
    """The file with its optional inputs (initializers that are also graph inputs, e.g.
    stylegan's truncation) turned into constants at their defaults: onnxruntime's calibrator
    cannot range tensors fed by overridable initializers ("scale issue"), so an int8 file has
    only the contract's required inputs."""
    import onnx

    m = onnx.load(str(path))
    names = {init.name for init in m.graph.initializer}
    keep = [i for i in m.graph.input if i.name not in names]
    if len(keep) == len(m.graph.input):
        return path
    del m.graph.input[:]
    m.graph.input.extend(keep)
    out = tmp / "const.onnx"
    onnx.save(m, str(out))
    return out
