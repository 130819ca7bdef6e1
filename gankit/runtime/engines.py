"""Inference engines behind :class:`gankit.runtime.GankitModel`: the same ``.onnx`` file, run
by onnxruntime (default; CUDA when a driver is present, else CPU) or by OpenVINO (optional
extra ``pip install gankit[openvino]``; bf16 on CPUs with AMX / AVX-512 bf16). Neither
imports torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from gankit.runtime.errors import ModelFormatError, RuntimeInputError

BACKENDS = ("onnxruntime", "openvino")


def _first_line(exc: BaseException) -> str:
    return next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)[:200]


class OnnxRuntimeEngine:
    name = "onnxruntime"

    def __init__(self, path: Path, providers: Sequence[Any] | None, threads: int | None,
                 optimized_path: str | None = None, session_config: dict[str, str] | None = None):
        import onnxruntime as ort

        from gankit.runtime.model import default_providers

        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if threads:
            so.intra_op_num_threads = int(threads)
        if optimized_path:
            so.optimized_model_filepath = optimized_path
        for key, value in (session_config or {}).items():  # e.g. gankit serve turns off intra-op spinning
            so.add_session_config_entry(str(key), str(value))
        try:
            self.session = ort.InferenceSession(str(path), so, providers=list(providers or default_providers()))
        except Exception as exc:
            raise ModelFormatError(f"{path} is not a loadable ONNX model ({_first_line(exc)})") from None
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, feed)[0]


def read_onnx_metadata(path: Path) -> dict[str, str]:
    """``metadata_props`` of an ONNX file without building a session (weights not needed)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelFormatError(f"{path} is not a loadable ONNX model ({_first_line(exc)})") from None
    return {p.key: p.value for p in model.metadata_props}


def cpu_has_bf16() -> bool:
    """True when the CPU computes bf16 natively (AMX or AVX-512 bf16): then bf16 pays."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


class OpenVINOEngine:
    name = "openvino"

    @staticmethod
    def require():
        """The ``openvino`` module, or a one-line error saying how to install it."""
        try:
            import openvino as ov
        except ImportError:
            raise RuntimeInputError("backend 'openvino' needs OpenVINO: pip install 'gankit[openvino]'") from None
        return ov

    def __init__(self, path: Path, threads: int | None, precision: str = "auto", device: str = "CPU"):
        ov = self.require()
        if precision == "auto":
            precision = "bf16" if cpu_has_bf16() else "f32"
        if precision not in ("f32", "bf16", "f16"):
            raise RuntimeInputError(f"unknown OpenVINO precision {precision!r}; use auto, f32, bf16 or f16")
        self.metadata = read_onnx_metadata(path)
        core = ov.Core()
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            model = core.read_model(str(path))
            self.input_names = [p.get_any_name() for p in model.inputs]
            self.output_names = [p.get_any_name() for p in model.outputs]
            self.compiled = core.compile_model(model, device, config)
        except Exception as exc:
            raise ModelFormatError(f"OpenVINO cannot compile {path} ({_first_line(exc)})") from None
        self.precision = precision
        self.request = self.compiled.create_infer_request()

    @property
    def providers(self) -> list[str]:
        return [f"OpenVINO CPU ({self.precision})"]

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        result = self.request.infer(feed)
        return np.asarray(result[self.compiled.outputs[0]])


def open_engine(path: Path, backend: str, providers: Sequence[Any] | None, threads: int | None, **options: Any):
    if backend == "onnxruntime":
        return OnnxRuntimeEngine(path, providers, threads, **options)
    if backend == "openvino":
        if providers:
            raise RuntimeInputError("providers= applies to the onnxruntime backend only")
        return OpenVINOEngine(path, threads, **options)
    raise RuntimeInputError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "OnnxRuntimeEngine", "OpenVINOEngine", "open_engine", "cpu_has_bf16", "read_onnx_metadata"]
