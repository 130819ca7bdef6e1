"""CUDA backends, used when a GPU is present (see benchmarks/gpu.sh): PyTorch eager, fp16
autocast and compiled; onnxruntime CUDA with IO binding and CUDA graphs (fp32 and an fp16
model); TensorRT when onnxruntime has it. Outputs stay on the GPU while timed."""

from __future__ import annotations

from typing import Callable

import numpy as np

from gankit.bench.cpu import Backend, TorchEager
from gankit.bench.models import BenchModel
from gankit.bench.quantize import fp16_model


class TorchCUDA(TorchEager):
    name, device = "pytorch cuda eager fp32", "cuda"

    def prepare(self, inputs):
        import torch

        run = super().prepare(inputs)
        t = {k: torch.from_numpy(v).cuda() for k, v in inputs.items()}
        net, autocast = self.net, self.autocast_context("cuda")

        def run_sync():  # output stays on the GPU; synchronise so the time is real
            with torch.inference_mode(), autocast:
                y = net(**t)
            torch.cuda.synchronize()
            return y

        run_sync.fetch = run  # type: ignore[attr-defined]
        return run_sync


class TorchCUDAfp16(TorchCUDA):
    name, precision = "pytorch cuda fp16 autocast", "fp16"
    autocast = "float16"


class TorchCUDACompile(TorchCUDA):
    name = "pytorch cuda torch.compile fp32"

    def wrap(self, net):
        import torch

        return torch.compile(net, mode="max-autotune")


class OrtCUDA(Backend):
    """onnxruntime CUDA EP, inputs and outputs bound on the GPU, CUDA graph replay."""

    kind, device = "onnx", "cuda"
    name = "onnxruntime cuda fp32 (io-binding, cuda graph)"
    fp16 = False
    provider = "CUDAExecutionProvider"

    def __init__(self, model, threads):
        super().__init__(model, threads)
        self.path = fp16_model(model) if self.fp16 else model.onnx_path
        if self.fp16:
            self.precision = "fp16"

    def prepare(self, inputs):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        opts = {"enable_cuda_graph": "1"} if self.provider == "CUDAExecutionProvider" else {"trt_fp16_enable": "1"}
        sess = ort.InferenceSession(str(self.path), so, providers=[(self.provider, opts)])
        binding = sess.io_binding()
        dev_inputs = {}
        for i in sess.get_inputs():
            v = inputs[i.name]
            if self.fp16 and v.dtype == np.float32:
                v = v.astype(np.float16)
            dev_inputs[i.name] = ort.OrtValue.ortvalue_from_numpy(v, "cuda", 0)
            binding.bind_ortvalue_input(i.name, dev_inputs[i.name])
        out_name = sess.get_outputs()[0].name
        ref = sess.run(None, {k: v.numpy() for k, v in dev_inputs.items()})[0]
        out = ort.OrtValue.ortvalue_from_shape_and_type(ref.shape, ref.dtype, "cuda", 0)
        binding.bind_ortvalue_output(out_name, out)

        def run():
            sess.run_with_iobinding(binding)
            binding.synchronize_outputs()
            return out

        run.fetch = lambda: (run(), out.numpy().astype(np.float32))[1]  # type: ignore[attr-defined]
        return run


class OrtCUDAfp16(OrtCUDA):
    name, fp16 = "onnxruntime cuda fp16 model (io-binding, cuda graph)", True


class OrtTensorRT(OrtCUDA):
    name, provider, precision = "onnxruntime tensorrt fp16", "TensorrtExecutionProvider", "fp16"


def cuda_backends() -> list[tuple[str, Callable[[BenchModel, int], Backend]]]:
    import onnxruntime as ort

    rows: list[tuple[str, Callable]] = [("pytorch cuda eager fp32", TorchCUDA), ("pytorch cuda fp16 autocast", TorchCUDAfp16),
                                        ("pytorch cuda torch.compile fp32", TorchCUDACompile)]
    avail = ort.get_available_providers()
    if "CUDAExecutionProvider" in avail:
        rows += [("onnxruntime cuda fp32 (io-binding, cuda graph)", OrtCUDA),
                 ("onnxruntime cuda fp16 model (io-binding, cuda graph)", OrtCUDAfp16)]
    if "TensorrtExecutionProvider" in avail:
        rows.append(("onnxruntime tensorrt fp16", OrtTensorRT))
    return rows
