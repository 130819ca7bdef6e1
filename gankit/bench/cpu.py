"""CPU backends: PyTorch eager / channels_last / bf16 autocast / torch.compile on the folded
module, onnxruntime fp32 and int8 on the exported file, OpenVINO when installed.

Each ``Backend.prepare(inputs)`` returns a zero-argument function that runs one forward pass
and returns float32 numpy."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from gankit.bench.models import BenchModel
from gankit.bench.quantize import quantize_int8

RunFn = Callable[[], np.ndarray]


class Backend:
    """A way to run a model. ``prepare(inputs)`` returns a zero-argument function that runs
    one forward pass on those inputs and returns the output as float32 numpy."""

    name = "?"
    precision = "fp32"
    kind = "pytorch"  # pytorch | onnx
    device = "cpu"

    def __init__(self, model: BenchModel, threads: int):
        self.model, self.threads = model, threads

    def prepare(self, inputs: dict[str, np.ndarray]) -> RunFn:  # pragma: no cover - interface
        raise NotImplementedError


class TorchEager(Backend):
    name, precision = "pytorch eager fp32", "fp32"
    channels_last = False
    autocast: str | None = None  # torch dtype name for torch.autocast, None = full precision

    def autocast_context(self, device: str):
        import contextlib

        import torch

        return torch.autocast(device, dtype=getattr(torch, self.autocast)) if self.autocast else contextlib.nullcontext()

    def __init__(self, model, threads):
        super().__init__(model, threads)
        import copy

        import torch

        self.net = copy.deepcopy(model.module).to(self.device)
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.net = self.wrap(self.net)

    def wrap(self, net):
        return net

    def prepare(self, inputs):
        import torch

        t = {}
        for k, v in inputs.items():
            x = torch.from_numpy(v).to(self.device)
            if self.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            t[k] = x
        net, autocast = self.net, self.autocast_context(self.device)

        def run():
            with torch.inference_mode():
                with autocast:  # one context object, entered once per call (never nested)
                    y = net(**t)
                return y.float().cpu().numpy()

        return run


class TorchChannelsLast(TorchEager):
    name, channels_last = "pytorch eager fp32 channels_last", True


class TorchBF16(TorchEager):
    name, precision, channels_last = "pytorch bf16 autocast channels_last", "bf16", True
    autocast = "bfloat16"


class TorchCompile(TorchEager):
    name = "pytorch torch.compile fp32"

    def wrap(self, net):
        import torch

        return torch.compile(net, dynamic=True)  # one compile serves every batch size


class OrtCPU(Backend):
    name, kind = "onnxruntime fp32", "onnx"
    providers = ("CPUExecutionProvider",)

    def __init__(self, model, threads, path: Path | None = None):
        super().__init__(model, threads)
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        src = path or model.onnx_path
        so.optimized_model_filepath = str(src.with_suffix(f".{self.tag()}.opt.onnx"))
        ort.InferenceSession(str(src), so, providers=list(self.providers))  # optimise once, saved to disk
        so2 = ort.SessionOptions()
        so2.log_severity_level = 3
        so2.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # already optimised
        so2.intra_op_num_threads, so2.inter_op_num_threads = threads, 1
        self.session = ort.InferenceSession(so.optimized_model_filepath, so2, providers=list(self.providers))

    def tag(self) -> str:
        return "fp32"

    def prepare(self, inputs):
        sess = self.session
        return lambda: sess.run(None, inputs)[0]


class OrtInt8(OrtCPU):
    name, precision = "onnxruntime int8 QDQ", "int8"

    def __init__(self, model, threads):
        super().__init__(model, threads, quantize_int8(model))

    def tag(self) -> str:
        return "int8"


class OpenVINO(Backend):
    kind = "onnx"

    def __init__(self, model, threads, precision: str = "f32"):
        super().__init__(model, threads)
        from gankit.runtime.engines import OpenVINOEngine

        # int8: OpenVINO reads the QDQ file (ConvTranspose included) and runs it in int8
        OpenVINOEngine.require()  # before quantising for a backend that cannot run
        path = quantize_int8(model, conv_transpose=True) if precision == "int8" else model.onnx_path
        self.engine = OpenVINOEngine(path, threads, precision="f32" if precision == "int8" else precision)
        self.precision = {"f32": "fp32", "bf16": "bf16", "f16": "fp16", "int8": "int8"}[precision]
        self.name = f"openvino {self.precision}" + (" QDQ" if precision == "int8" else "")

    def prepare(self, inputs):
        eng = self.engine
        return lambda: eng.run(inputs)


def cpu_backends(openvino_bf16: bool) -> list[tuple[str, Callable[[BenchModel, int], Backend]]]:
    rows: list[tuple[str, Callable]] = [
        ("pytorch eager fp32", TorchEager),
        ("pytorch eager fp32 channels_last", TorchChannelsLast),
        ("pytorch bf16 autocast channels_last", TorchBF16),
        ("pytorch torch.compile fp32", TorchCompile),
        ("onnxruntime fp32", OrtCPU),
        ("onnxruntime int8 QDQ", OrtInt8),
        ("openvino fp32", lambda m, t: OpenVINO(m, t, "f32")),
        ("openvino int8 QDQ", lambda m, t: OpenVINO(m, t, "int8")),
    ]
    if openvino_bf16:
        rows.append(("openvino bf16", lambda m, t: OpenVINO(m, t, "bf16")))
    return rows
