"""Inference engines behind :class:`gankit.runtime.GankitModel`: the same ``.onnx`` file, run
by onnxruntime (CUDA when a driver is present, else CPU) or by OpenVINO (a base dependency
where it publishes wheels, else ``pip install gankit[openvino]``; bf16 on CPUs with AMX /
AVX-512 bf16), or by a fixed rule that picks between them (``auto``: onnxruntime on a GPU,
else OpenVINO where installed; see :func:`resolve_backend`). Neither imports torch.

Each engine reports its graph's inputs and outputs as :class:`TensorSpec` (name, numpy dtype
name, shape with ``None`` for a dynamic or unknown axis), so the model checks the file
contract once, whatever the backend. This module imports nothing else from the runtime but
its errors (the model imports the engines, never the other way round).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
import tempfile
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from gankit.errors import first_line
from gankit.runtime.contract import optional_input_names
from gankit.runtime.errors import ModelFormatError, RuntimeInputError, show
from gankit.sysinfo import cpu_has_bf16  # re-exported: the runtime's callers ask it here

BACKENDS = ("onnxruntime", "openvino", "auto")

# onnxruntime logs failed runs and graph rewrites on stderr besides raising; gankit turns the
# raised error into its own one-line message, so the log line would only be a duplicate.
_ORT_SILENT = 4  # FATAL only


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy name: "float32", "int64", ... ("unknown" when the backend cannot say)
    shape: tuple[int | None, ...] | None  # None: rank unknown


_ORT_TYPES = {"tensor(float)": "float32", "tensor(int64)": "int64", "tensor(int32)": "int32",
              "tensor(double)": "float64", "tensor(float16)": "float16", "tensor(uint8)": "uint8",
              "tensor(bool)": "bool"}


def _cuda_driver_present() -> bool:
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def default_providers() -> list[str]:
    """CUDA then CPU when onnxruntime has the CUDA provider *and* a driver is present; else CPU.

    Checking for the driver first keeps onnxruntime-gpu from logging a failed CUDA load
    on machines without a GPU.
    """
    import onnxruntime as ort

    available = ort.get_available_providers()
    chosen = []
    if "CUDAExecutionProvider" in available and _cuda_driver_present():
        chosen.append("CUDAExecutionProvider")
    chosen.append("CPUExecutionProvider")
    return chosen


def _check_providers(providers: Any) -> list[Any]:
    """A list of provider names (or ``(name, options)`` pairs) that this onnxruntime has."""
    import onnxruntime as ort

    if isinstance(providers, (str, bytes)) or not isinstance(providers, (list, tuple)):
        raise RuntimeInputError(f"providers must be a list of onnxruntime provider names, got {type(providers).__name__}")
    available = ort.get_available_providers()
    checked = []
    for p in providers:
        name = p[0] if isinstance(p, tuple) and len(p) == 2 and isinstance(p[1], dict) else p
        if not isinstance(name, str) or name not in available:
            raise RuntimeInputError(f"unknown onnxruntime provider {show(name)}; available: {', '.join(available)}")
        checked.append(p)
    if not checked:
        raise RuntimeInputError("providers is empty; give at least one, e.g. ['CPUExecutionProvider']")
    gpu = [n for n in _names(checked) if n in ("CUDAExecutionProvider", "TensorrtExecutionProvider")]
    if gpu and not _cuda_driver_present():
        # onnxruntime would log pages about missing CUDA libraries, then run on the CPU anyway
        if len(gpu) == len(checked):
            raise RuntimeInputError(f"{', '.join(gpu)} needs an NVIDIA GPU and its driver, and this machine has none; "
                                    "leave providers out for the default, or add 'CPUExecutionProvider' as a fallback")
        checked = [p for p, n in zip(checked, _names(checked)) if n not in gpu]  # the fallback asked for, quietly
    return checked


def _names(providers: Sequence[Any]) -> list[str]:
    return [p[0] if isinstance(p, tuple) else p for p in providers]


class OnnxRuntimeEngine:
    name = "onnxruntime"

    def __init__(self, path: Path, providers: Sequence[Any] | None, threads: int | None,
                 optimized_path: str | None = None, session_config: dict[str, str] | None = None):
        import onnxruntime as ort

        chosen = default_providers() if providers is None else _check_providers(providers)
        if optimized_path is not None and not isinstance(optimized_path, (str, Path)):
            raise RuntimeInputError(f"optimized_path must be a path, got {type(optimized_path).__name__}")
        if session_config is not None and not isinstance(session_config, dict):
            raise RuntimeInputError(f"session_config must be a dict of onnxruntime session options, got "
                                    f"{type(session_config).__name__}")
        so = ort.SessionOptions()
        so.log_severity_level = _ORT_SILENT
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if threads:
            so.intra_op_num_threads = int(threads)
        if optimized_path:
            if not Path(optimized_path).parent.is_dir():  # onnxruntime's own message is "SystemError : 2"
                raise RuntimeInputError(f"optimized_path's folder {Path(optimized_path).parent} does not exist")
            so.optimized_model_filepath = str(optimized_path)
        for key, value in (session_config or {}).items():  # e.g. gankit serve turns off intra-op spinning
            so.add_session_config_entry(str(key), str(value))
        try:
            self.session = ort.InferenceSession(str(path), so, providers=chosen)
        except Exception as exc:
            raise ModelFormatError(f"{path} is not a loadable ONNX model ({first_line(exc, with_type=False)})") from None
        running = self.session.get_providers()
        if providers is not None and not set(_names(chosen)) & set(running):
            # none of the asked-for providers started (e.g. CUDA libraries missing): onnxruntime
            # fell back to its CPU provider, which the caller did not ask for
            raise RuntimeInputError(f"none of the requested providers ({', '.join(_names(chosen))}) could start here; "
                                    f"onnxruntime would run on {', '.join(running)}. Add 'CPUExecutionProvider' to "
                                    "allow that, or leave providers out")
        self.run_options = ort.RunOptions()
        self.run_options.log_severity_level = _ORT_SILENT
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.inputs = [self._spec(i) for i in self.session.get_inputs()]
        self.outputs = [self._spec(o) for o in self.session.get_outputs()]
        self.input_names = [i.name for i in self.inputs]
        self.output_names = [o.name for o in self.outputs]
        # inputs with a default (an initializer that is also a graph input): fed only when given
        self.optional_names = {i.name for i in self.session.get_overridable_initializers()}

    @staticmethod
    def _spec(arg) -> TensorSpec:
        shape = arg.shape
        dims = None if shape is None else tuple(d if isinstance(d, int) and d >= 0 else None for d in shape)
        return TensorSpec(arg.name, _ORT_TYPES.get(arg.type, str(arg.type)), dims)

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, feed, self.run_options)[0]


def read_onnx_metadata(path: Path) -> dict[str, str]:
    """``metadata_props`` of an ONNX file without building a session (weights not needed)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelFormatError(f"{path} is not a loadable ONNX model ({first_line(exc, with_type=False)})") from None
    return {p.key: p.value for p in model.metadata_props}


# Graph ops whose result is a discrete decision. In bf16 their float inputs are rounded to 8
# significant bits first, so inputs near a threshold land on the other side: the gan's cluster
# lookup (Greater against the cluster edges) gave another digit for 8 of 256 latents under
# OpenVINO bf16 (benchmarks/RESULTS.md, speed v4). A graph with one of them on float inputs
# runs in fp32 under OpenVINO's automatic precision, as does one that casts a float to an
# integer; comparisons of integers (stylegan's crossover layer index) are exact in any
# precision and do not count.
DECISION_OPS = frozenset({"Greater", "GreaterEqual", "Less", "LessEqual", "Equal", "NotEqual", "TopK",
                          "Round", "Floor", "Ceiling", "Sign"})


class OpenVINOEngine:
    name = "openvino"

    @staticmethod
    def require():
        """The ``openvino`` module, or a one-line error saying how to install it."""
        try:
            import openvino as ov
        except ImportError:
            raise RuntimeInputError("backend 'openvino' needs OpenVINO: pip install 'gankit[openvino]'") from None
        except Exception as exc:  # installed but broken (a missing shared library, a bad build)
            raise RuntimeInputError(f"OpenVINO is installed but fails to import: {first_line(exc)}") from None
        return ov

    def __init__(self, path: Path, threads: int | None, precision: str = "auto", device: str = "CPU"):
        ov = self.require()
        if not isinstance(precision, str) or precision not in ("auto", "f32", "bf16", "f16"):
            raise RuntimeInputError(f"unknown OpenVINO precision {show(precision)}; use auto, f32, bf16 or f16")
        if not isinstance(device, str):
            raise RuntimeInputError(f"device must be an OpenVINO device name such as 'CPU', got {type(device).__name__}")
        self.metadata = read_onnx_metadata(path)
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        # Inputs with a default (gankit.optional_inputs: an initializer of the same name, e.g.
        # stylegan's truncation) become constants in OpenVINO's ONNX reader, so they could not be
        # fed. They are read from a copy of the file without those initializers; run() feeds the
        # defaults a caller leaves out, as onnxruntime does.
        optional = optional_input_names(self.metadata)
        self.defaults: dict[str, np.ndarray] = {}
        try:
            core = ov.Core()
            known = core.available_devices
        except Exception as exc:  # OpenVINO itself (its CPU plugin), not the arguments: auto falls back
            raise ModelFormatError(f"OpenVINO cannot start for {path} ({first_line(exc, with_type=False)})") from None
        # a plain device name (CPU, GPU.1) must be one OpenVINO has here; AUTO, MULTI:..., HETERO:...
        # are OpenVINO's to resolve
        # "GPU" names GPU.0 where OpenVINO lists GPU.0 and GPU.1; "GPU.1.0" is one tile of GPU.1
        plain = ":" not in device and device != "AUTO"
        if plain and not any(device == k or k.startswith(device + ".") or device.startswith(k + ".") for k in known):
            raise RuntimeInputError(f"OpenVINO has no device {show(device)} here (available: {', '.join(known) or 'none'})")
        try:  # any failure of OpenVINO here (the file, the compile) is the file's one-line error
            with tempfile.TemporaryDirectory() as tmp:
                source = self._without_defaults(path, optional, Path(tmp)) if optional else path
                model = core.read_model(str(source))
                if precision == "auto":
                    precision = self._auto_precision(model)
                    config["INFERENCE_PRECISION_HINT"] = precision
                self.compiled = core.compile_model(model, device, config)
            self.inputs = [self._spec(p) for p in model.inputs if p.get_any_name() not in self.defaults]
            self.outputs = [self._spec(p) for p in model.outputs]
            self.request = self.compiled.create_infer_request()
        except Exception as exc:
            raise ModelFormatError(f"OpenVINO cannot compile {path} ({first_line(exc, with_type=False)})") from None
        self.input_names = [i.name for i in self.inputs]
        self.output_names = [o.name for o in self.outputs]
        self.optional_names = set(self.defaults)
        self.precision = precision
        self._ov = ov
        self._lock = threading.Lock()

    def _auto_precision(self, model) -> str:
        """bf16 where the CPU computes it natively, except for an int8 file (``gankit export
        --int8``: its quantised layers run in int8 whatever the hint, its float rest stays fp32,
        as the benchmark measured it) and for a graph that makes discrete decisions
        (:data:`DECISION_OPS`), which bf16 rounding would flip."""
        if not cpu_has_bf16() or self.metadata.get("gankit.precision") == "int8":
            return "f32"
        decides = any(op.get_input_size() and op.get_input_element_type(0).is_real()
                      and (op.get_type_name() in DECISION_OPS
                           # a cast of a float to an integer or a bool (ONNX Cast) truncates or
                           # thresholds: a decision too
                           or (op.get_type_name() == "Convert" and op.get_output_element_type(0).is_integral()))
                      for op in model.get_ordered_ops())
        return "f32" if decides else "bf16"

    def _without_defaults(self, path: Path, names: list[str], tmp: Path) -> Path:
        """A copy of the file whose inputs ``names`` have no initializer; their values go to ``self.defaults``."""
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(path))
        # onnxruntime's rule: an initializer is an overridable default only when it is also a
        # graph input (a file whose defaults were folded into constants keeps them as constants)
        graph_inputs = {i.name for i in model.graph.input}
        keep = []
        for init in model.graph.initializer:
            if init.name in names and init.name in graph_inputs:
                self.defaults[init.name] = np.array(numpy_helper.to_array(init))  # an owned, writable copy
            else:
                keep.append(init)
        del model.graph.initializer[:]
        model.graph.initializer.extend(keep)
        out = tmp / "inputs.onnx"
        onnx.save(model, str(out))
        return out

    @staticmethod
    def _spec(port) -> TensorSpec:
        types = {"f32": "float32", "i64": "int64", "i32": "int32", "f64": "float64", "f16": "float16",
                 "u8": "uint8", "boolean": "bool"}
        et = port.get_element_type().get_type_name()
        ps = port.get_partial_shape()
        dims = None if ps.rank.is_dynamic else tuple(d.get_length() if d.is_static else None for d in ps)
        return TensorSpec(port.get_any_name(), types.get(et, et), dims)

    @property
    def providers(self) -> list[str]:
        return [f"OpenVINO CPU ({self.precision})"]

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        missing = [n for n in self.input_names if n not in feed]
        if missing:  # a left-out input would silently reuse the previous call's tensor
            raise RuntimeInputError(f"missing input {missing[0]!r} (the file takes {', '.join(self.input_names)})")
        with self._lock:  # one infer request per engine: calls from several threads take turns
            return self._run(feed)

    def _run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        # The inputs are lent to OpenVINO as they are (shared_memory: no copy) and only the first
        # output is copied out: request.infer(dict) copies every input and wraps every output,
        # which cost more than the whole batch-1 inference of the DCGAN generators (0.56 ms
        # against 0.36 ms per call for gan's; benchmarks/RESULTS.md). The request keeps only a
        # pointer: ``lent`` holds every array (a contiguous copy made here included) until
        # infer() has returned.
        ov = self._ov
        lent = []
        for name, value in self.defaults.items():
            if name not in feed:
                self.request.set_tensor(name, ov.Tensor(value, shared_memory=True))
        for name, value in feed.items():
            value = np.asarray(value)
            if not value.flags.c_contiguous:  # (np.ascontiguousarray would make a 0-d scalar 1-d)
                value = np.array(value, order="C")
            # OpenVINO shares only writable memory; a read-only array (a broadcast view) is copied
            tensor = ov.Tensor(value, shared_memory=bool(value.flags.writeable))
            lent.append((value, tensor))
            self.request.set_tensor(name, tensor)
        self.request.infer()
        del lent
        return self.request.get_output_tensor(0).data.copy()


ENGINE_OPTIONS = {"onnxruntime": ("optimized_path", "session_config"), "openvino": ("precision", "device")}


def openvino_installed() -> bool:
    """Whether OpenVINO imports here (a broken install counts as absent: ``auto`` then runs onnxruntime)."""
    try:
        import openvino  # noqa: F401
    except Exception:
        return False
    return True


def resolve_backend(backend: str, providers: Sequence[Any] | None = None, options: dict[str, Any] | None = None) -> str:
    """The engine ``backend`` names; for ``"auto"``, the one this machine and these arguments call for.

    ``auto`` is onnxruntime when it can use a GPU (its CUDA provider and a driver), when
    ``providers`` or onnxruntime's own options (``optimized_path``, ``session_config``) are
    given, or when OpenVINO is not installed; otherwise OpenVINO, at its automatic precision
    (bf16 on CPUs that compute bf16 natively, see ``OpenVINOEngine._auto_precision``). OpenVINO's
    options (``precision``, ``device``) are hints that apply when OpenVINO is chosen. On CPUs
    the gap is wide where a call has work: ``gankit restore`` of a 512x512 photo at x2 took 0.60 s
    through OpenVINO against 2.59 s through onnxruntime on a Xeon with AMX, 0.42 s against 1.61 s
    on a Zen 5 without (benchmarks/RESULTS.md, speeds v5 and v4). For one small call onnxruntime
    is as fast and loads sooner (68-104 ms against 393-524 ms for the built-in files, speed v5),
    so the Python default stays onnxruntime.
    """
    if backend != "auto":
        return backend
    if providers is not None or set(options or ()) & set(ENGINE_OPTIONS["onnxruntime"]) or not openvino_installed():
        return "onnxruntime"
    return "onnxruntime" if "CUDAExecutionProvider" in default_providers() else "openvino"


def open_engine(path: Path, backend: str, providers: Sequence[Any] | None, threads: int | None, **options: Any):
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise RuntimeInputError(f"unknown backend {show(backend)}; available: {', '.join(BACKENDS)}")
    if backend == "auto":
        backend = resolve_backend(backend, providers, options)
        if backend == "onnxruntime":  # OpenVINO's hints do not apply
            options = {k: v for k, v in options.items() if k not in ENGINE_OPTIONS["openvino"]}
    unknown = sorted(set(options) - set(ENGINE_OPTIONS[backend]))
    if unknown:
        allowed = ", ".join(ENGINE_OPTIONS[backend])
        raise RuntimeInputError(f"unknown option {show(unknown[0])} for backend {backend} (it takes: {allowed})")
    if backend == "onnxruntime":
        return OnnxRuntimeEngine(path, providers, threads, **options)
    if providers is not None:
        raise RuntimeInputError("providers= applies to the onnxruntime backend only")
    return OpenVINOEngine(path, threads, **options)


__all__ = ["BACKENDS", "DECISION_OPS", "TensorSpec", "OnnxRuntimeEngine", "OpenVINOEngine", "open_engine",
           "resolve_backend", "openvino_installed", "cpu_has_bf16", "read_onnx_metadata", "default_providers"]
