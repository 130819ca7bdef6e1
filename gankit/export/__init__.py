"""torch -> ONNX: the exporter.

``export_run(run_dir)`` rebuilds the run's generator from its newest checkpoint (the EMA
weights when the run kept them), prepares it for inference (eval mode, spectral-norm
parametrisations removed, BatchNorm folded into the convolution or linear layer before it),
exports it with the ``torch.export``-based ONNX exporter (dynamic batch axis, opset 18),
writes gankit's metadata, runs ``onnx.checker``, and compares onnxruntime against PyTorch
on fresh random inputs at two batch sizes. A file is only written (atomically) when every
output matches within 1e-4; otherwise the export fails and says which output and by how much.

The file contract is documented in the README ("The ONNX file").
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from gankit import __version__
from gankit.errors import INTERRUPTED, GankitError, first_line
from gankit.fileio import atomic_write_bytes
from gankit.train.run import load_run_generator

OPSET = 18
TOLERANCE = 1e-4
PARITY_BATCHES = (1, 5)


class ExportError(GankitError):
    """The export failed (unsupported op, checker error, or parity mismatch)."""


def prepare_for_export(module):
    """Eval mode, spectral norm removed, BatchNorm folded into the preceding conv/linear."""
    import copy

    import torch
    from torch import nn
    from torch.nn.utils import fusion, parametrize

    module = copy.deepcopy(module).eval()
    for m in module.modules():
        if parametrize.is_parametrized(m):
            for name in list(m.parametrizations.keys()):
                parametrize.remove_parametrizations(m, name, leave_parametrized=True)
        if hasattr(m, "weight_orig") and hasattr(m, "weight_u"):  # old-style spectral_norm hook
            torch.nn.utils.remove_spectral_norm(m)
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules.keys())
        for a, b in zip(names, names[1:]):
            first, second = seq._modules[a], seq._modules[b]
            if isinstance(second, (nn.BatchNorm2d, nn.BatchNorm1d)) and second.track_running_stats:
                if isinstance(first, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(second, nn.BatchNorm2d):
                    seq._modules[a] = fusion.fuse_conv_bn_eval(first, second, transpose=isinstance(first, nn.ConvTranspose2d))
                    seq._modules[b] = nn.Identity()
                elif isinstance(first, nn.Linear) and isinstance(second, nn.BatchNorm1d):
                    seq._modules[a] = fusion.fuse_linear_bn_eval(first, second)
                    seq._modules[b] = nn.Identity()
    return module


def metadata(family, config: dict[str, Any]) -> dict[str, str]:
    """The ``metadata_props`` of an exported file (the README's file contract, plus provenance)."""
    return {
        "gankit.format": "1",
        "gankit.plugin": family.name,
        "gankit.task": family.task,
        "gankit.latent_dim": str(int(config.get("latent_dim", 0) or 0)) if family.task == "generate" else "0",
        "gankit.num_classes": str(int(config.get("num_classes", 0) or 0)),
        "gankit.class_names": json.dumps(list(config.get("class_names") or [])),
        "gankit.channels": str(int(config["channels"])),
        "gankit.height": str(int(config["height"])),
        "gankit.width": str(int(config["width"])),
        "gankit.value_range": "-1,1",
        "gankit.version": __version__,
        "gankit.data": str(config.get("data", "")),
        "gankit.inputs": ",".join(family.export_inputs(config, 1).keys()),
        "gankit.output": family.output_name,
        # inputs with a default in the file (format 1 readers feed only gankit.inputs and get the defaults)
        **({"gankit.optional_inputs": ",".join(optional)} if (optional := list(family.export_input_defaults(config))) else {}),
        **family.export_metadata(config),
    }


def _torchlib_table_once() -> None:
    """Let torch.onnx.export build its ATen-to-ONNX table from a list computed once per process.

    Every export rebuilds the table, and onnxscript's ``get_torchlib_ops`` re-reads and re-parses
    the source of about 500 torchlib functions to list them: a 2-step cgan run exports in 1.26 s
    instead of 1.80 s (median of 5, machine G, benchmarks/overheads.py), for every export after
    the first in a process (the bench, serve's tests, the test suite). The list depends only on
    the installed onnxscript (torch copies it into a fresh table each time). The names are
    onnxscript's private framework API, one module per torch release, read by torch as
    attributes: each such module's function is wrapped; a call with arguments, or a module that
    is missing, goes through unchanged. Torchlib functions registered after the first export of a
    process would not be seen (gankit registers none)."""
    import importlib
    import pkgutil

    try:
        import onnxscript._framework_apis as apis
    except ImportError:
        return
    for info in pkgutil.iter_modules(apis.__path__):
        if not info.name.startswith("torch_"):
            continue
        try:
            module = importlib.import_module(f"{apis.__name__}.{info.name}")
        except ImportError:
            continue
        original = getattr(module, "get_torchlib_ops", None)
        if callable(original) and not getattr(original, "_gankit_once", False):
            module.get_torchlib_ops = _once(original)


def _once(fn):
    cache: list = []

    def wrapper(*args, **kwargs):
        if args or kwargs:  # not how torch 2.6-2.13 call it: no cache for a call we do not know
            return fn(*args, **kwargs)
        if not cache:
            cache.append(fn())
        return list(cache[0])

    wrapper._gankit_once = True
    wrapper.__wrapped__ = fn
    return wrapper


def export_generator(family, config: dict[str, Any], generator, out: str | os.PathLike, *,
                     extra_metadata: dict[str, str] | None = None, tolerance: float = TOLERANCE) -> Path:
    """Export ``generator`` to ``out`` (atomically) or raise :class:`ExportError`."""
    import warnings

    import onnx
    import torch

    out = Path(out)
    # what training samples and evaluates: parity is checked against this, not against the
    # folded copy, so a mistake in BatchNorm folding or spectral-norm removal cannot pass
    reference = family.export_module(generator, config).eval()
    module = prepare_for_export(reference)
    example = _example_inputs(family, config, 2, seed=0)
    # parity alone would pass a generator whose images do not match the metadata's shape
    from gankit.train.contract import check_export_generator

    check_export_generator(family, config, module, example)
    names = list(example.keys())
    output_name = family.output_name
    batch = torch.export.Dim("batch", min=1, max=65536)
    dynamic = tuple({0: batch} if example[n].dim() else None for n in names)  # scalars have no batch axis
    if family.task == "restore":  # fully convolutional: any input size (the file contract's height/width)
        dynamic = ({0: batch, 2: torch.export.Dim("height", min=1, max=65536),
                    3: torch.export.Dim("width", min=1, max=65536)},) + dynamic[1:]
    try:
        _torchlib_table_once()
        with warnings.catch_warnings(), _quiet():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                _Named(module, names), tuple(example.values()), None, input_names=names, output_names=[output_name],
                opset_version=OPSET, dynamo=True, dynamic_shapes=dynamic, external_data=False, optimize=True,
            )
    except Exception as exc:
        if INTERRUPTED.is_set():  # torch.export wraps the KeyboardInterrupt of a Ctrl-C in its own error
            raise KeyboardInterrupt from None
        raise ExportError(f"torch.onnx.export failed for {family.name}: {first_line(exc)}") from None
    model = program.model_proto
    portable_reshapes(model)
    if family.task == "restore":
        _name_output_axes(model, output_name)
    _add_input_defaults(model, family.export_input_defaults(config))
    set_metadata(model, {**metadata(family, config), **(extra_metadata or {})})
    model.producer_name = "gankit"
    model.producer_version = __version__
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise ExportError(f"onnx.checker rejected the exported {family.name} model: {first_line(exc)}") from None
    data = model.SerializeToString()
    check_parity(family, config, reference, data, tolerance=tolerance)
    if INTERRUPTED.is_set():  # Ctrl-C that a library swallowed on the way: write nothing
        raise KeyboardInterrupt
    return atomic_write_bytes(out, data)


def portable_reshapes(model) -> int:
    """Clear ``allowzero=1`` on Reshapes to a constant shape without zeros; returns how many.

    torch's exporter marks every Reshape ``allowzero=1`` (a 0 in the shape means a 0-sized
    dimension rather than "copy the input's"). Where the shape is a constant with no 0 the two
    readings agree, and consumers that do not implement ``allowzero`` (onnx2torch, older
    runtimes) then load the file. Reshapes to computed shapes keep the attribute.
    """
    from onnx import numpy_helper

    constants = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = node.attribute[0].t
    changed = 0
    for node in model.graph.node:
        if node.op_type != "Reshape" or node.domain not in ("", "ai.onnx") or len(node.input) < 2:
            continue
        allow = [a for a in node.attribute if a.name == "allowzero"]
        shape = constants.get(node.input[1])
        if not allow or allow[0].i == 0 or shape is None or (numpy_helper.to_array(shape) == 0).any():
            continue
        node.attribute.remove(allow[0])
        changed += 1
    return changed


def _name_output_axes(model, output_name: str) -> None:
    """The contract's names for a restore output's size: ``out_height``/``out_width`` (the exporter writes e.g. ``2*height``)."""
    for out in model.graph.output:
        if out.name == output_name:
            dims = out.type.tensor_type.shape.dim
            for i, name in ((2, "out_height"), (3, "out_width")):
                if len(dims) > i and not dims[i].dim_value:
                    dims[i].dim_param = name
    del model.graph.value_info[:]  # intermediate shapes in the old symbols: onnxruntime infers them again


def _restore_sizes(family, config, inputs: dict[str, Any], i: int) -> dict[str, Any]:
    """A restore model's parity input at another, non-square size (run ``i``): dynamic H and W must really work."""
    if family.task != "restore" or i == 0:
        return inputs
    import torch

    m = int(family.export_metadata(config).get("gankit.size_multiple", "1") or 1)
    image = inputs["image"]
    n, c, h, w = image.shape
    g = torch.Generator().manual_seed(2000 + i)
    return {**inputs, "image": torch.rand(n, c, h + m, w + 3 * m, generator=g) * 2 - 1}


def check_parity(family, config, module, model_bytes: bytes, *, tolerance: float = TOLERANCE,
                 batches: tuple[int, ...] = PARITY_BATCHES) -> dict[str, float]:
    """Compare onnxruntime (CPU) with PyTorch on fresh random inputs; raise on a mismatch."""
    import numpy as np
    import onnxruntime as ort
    import torch

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
    worst: dict[str, float] = {}
    runs = [(b, _restore_sizes(family, config, _example_inputs(family, config, b, seed=1000 + i), i))
            for i, b in enumerate(batches)]
    defaults = family.export_input_defaults(config)
    if defaults:  # and once with the contract's inputs only: the file's defaults must match PyTorch's
        runs.append((batches[-1], family.export_inputs(config, batches[-1], seed=1000 + len(batches))))
    for b, inputs in runs:
        with torch.no_grad():
            ref = module(**inputs)
        refs = ref if isinstance(ref, (tuple, list)) else (ref,)
        got = sess.run(None, {k: v.numpy() for k, v in inputs.items()})
        for meta_out, r, g in zip(sess.get_outputs(), refs, got):
            r = r.detach().float().numpy()
            if r.shape != g.shape:
                raise ExportError(f"parity: output {meta_out.name!r} has shape {list(g.shape)} in ONNX, {list(r.shape)} in PyTorch (batch {b})")
            diff = float(np.max(np.abs(r - g))) if r.size else 0.0
            worst[meta_out.name] = max(worst.get(meta_out.name, 0.0), diff)
            if not diff <= tolerance:
                raise ExportError(f"parity: output {meta_out.name!r} differs from PyTorch by {diff:.3g} (max abs, batch {b}) > {tolerance:g}")
    return worst


def set_metadata(model, meta: dict[str, str]) -> None:
    """Replace an ONNX model's ``metadata_props`` with ``meta`` (in its order)."""
    del model.metadata_props[:]
    for k, v in meta.items():
        p = model.metadata_props.add()
        p.key, p.value = k, v


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *, overwrite: bool = False,
               int8: bool = False) -> Path:
    """``gankit export``: a run directory's generator -> ``exported/<run>.onnx`` (with ``int8``:
    ``exported/<run>-int8.onnx``, see :func:`export_int8`)."""
    from gankit.fileio import check_output
    from gankit.train.run import remove_stale_temporaries

    run_dir = Path(run_dir)
    name = run_dir.resolve().name + ("-int8" if int8 else "")
    out = Path(out) if out is not None else Path("exported") / f"{name}.onnx"
    check_output(out, overwrite=overwrite, suffix=".onnx")  # before ~20 s of export work
    remove_stale_temporaries(out.parent)
    family, config, G, step = load_run_generator(run_dir)
    meta = {"gankit.step": str(step), "gankit.run": run_dir.name}
    if int8:
        return export_int8(family, config, G, out, extra_metadata=meta)
    return export_generator(family, config, G, out, extra_metadata=meta)


# An int8 file whose outputs are this far from the fp32 file's on held-out inputs is broken,
# not merely coarse: the built-in families' int8 files measure 28-45 dB (hole pixels only for
# inpainting; `gankit export --int8` prints the figure).
INT8_MIN_PSNR_DB = 20.0


def export_int8(family, config: dict[str, Any], generator, out: str | os.PathLike, *,
                extra_metadata: dict[str, str] | None = None) -> Path:
    """The fp32 export (parity-checked as always), quantised to int8 QDQ with ranges from the
    run's training data (:mod:`gankit.export.quantize`), loaded by the runtime (the file
    contract and a probe run) and written atomically to ``out`` only when its outputs on inputs
    the calibration did not see reach :data:`INT8_MIN_PSNR_DB` against the fp32 file's, through
    onnxruntime and through OpenVINO where installed (the lower counts). The PSNR is recorded
    in the file (``gankit.int8_psnr_db``); the judge's metrics through the file are one
    ``gankit evaluate`` away."""
    import tempfile

    import onnx

    from gankit import runtime
    from gankit.export.quantize import calibration_batches, quantize_int8
    from gankit.plugins import load_dataset
    from gankit.train.config import data_choice

    out = Path(out)
    dataset = None
    if family.task in ("inpaint", "restore") and config.get("data"):
        data, size = data_choice(family, config)  # the size the run trained at (--image-size)
        dataset = load_dataset(data, **({"size": size} if size is not None else {}))
    with tempfile.TemporaryDirectory(prefix="gankit-int8-") as tmp:
        fp32 = export_generator(family, config, generator, Path(tmp) / "fp32.onnx", extra_metadata=extra_metadata)
        q = quantize_int8(fp32, Path(tmp) / "int8.onnx", calibration_batches(family, config, dataset))
        runtime.load(q, providers=["CPUExecutionProvider"])  # the contract holds for the int8 file too
        held_out = calibration_batches(family, config, dataset, batches=1, seed=7)[0]
        score = _int8_psnr(fp32, q, held_out)
        if not score >= INT8_MIN_PSNR_DB:
            raise ExportError(f"the int8 {family.name} file reaches only {score:.1f} dB PSNR against the fp32 one on "
                              f"held-out inputs (at least {INT8_MIN_PSNR_DB:g} dB required); export it in fp32")
        model = onnx.load(str(q))
        p = model.metadata_props.add()
        p.key, p.value = "gankit.int8_psnr_db", f"{score:.2f}"
        if INTERRUPTED.is_set():
            raise KeyboardInterrupt
        return atomic_write_bytes(out, model.SerializeToString())


def _int8_psnr(fp32: Path, q: Path, feed: dict[str, Any]) -> float:
    """PSNR (data range 2) of the int8 file's outputs against the fp32 file's, the lower of
    onnxruntime's and OpenVINO's. An inpainting file pastes the known pixels back, identical in
    both files, so only the hole's pixels are scored there."""
    import numpy as np

    from gankit.evaluate.metrics import psnr

    ref = _ort_session(fp32).run(None, feed)[0]
    outs = [_ort_session(q).run(None, feed)[0]]
    try:
        import openvino as ov
    except ImportError:
        ov = None
    if ov is not None:  # the backend the file is for: it must compile and agree there too
        try:
            compiled = ov.Core().compile_model(str(q), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
            outs.append(np.asarray(compiled(feed)[0]))
        except Exception as exc:
            raise ExportError(f"OpenVINO cannot run the int8 file: {first_line(exc)}") from None
    hole = np.broadcast_to(feed["mask"] > 0.5, ref.shape) if "mask" in feed else np.ones(ref.shape, bool)
    return min(float(min(psnr(o[hole], ref[hole], data_range=2.0), 999.0)) for o in outs)


def _ort_session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _example_inputs(family, config, batch: int, seed: int) -> dict[str, Any]:
    """The contract's inputs, then the family's optional ones (those with a default in the file)."""
    inputs = dict(family.export_inputs(config, batch, seed=seed))
    optional = family.export_optional_inputs(config, batch, seed=seed)
    missing = sorted(set(optional) ^ set(family.export_input_defaults(config)))
    if missing or set(optional) & set(inputs):
        raise ExportError(f"{family.name}: optional inputs and their defaults must name the same new inputs "
                          f"(mismatch: {', '.join(missing or sorted(set(optional) & set(inputs)))})")
    return {**inputs, **optional}


def _add_input_defaults(model, defaults: dict[str, Any]) -> None:
    """Give graph inputs a default: an initializer with the input's name (ONNX IR >= 4 lets a
    caller override it; onnxruntime lists such inputs under get_overridable_initializers)."""
    import numpy as np
    from onnx import numpy_helper

    if not defaults:
        return
    inputs = {i.name: i for i in model.graph.input}
    for name, value in defaults.items():
        if name not in inputs:
            raise ExportError(f"optional input {name!r} is not an input of the exported graph")
        value = np.asarray(value)
        dims = inputs[name].type.tensor_type.shape.dim
        if value.ndim and dims and dims[0].dim_param:
            # a default of batch 1 that broadcasts against batch N (e.g. an unused z2): its batch
            # axis gets its own symbol, or onnxruntime plans buffers as if both were the same size
            dims[0].dim_param = f"{name}_batch"
        model.graph.initializer.append(numpy_helper.from_array(value, name))
    # the exporter's intermediate shapes say every batch axis is "batch"; let onnxruntime infer them
    del model.graph.value_info[:]


def _Named(module, names):
    """Wrap a generator so it takes its inputs positionally, in the contract's order."""
    import torch

    class Named(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = module

    if len(names) == 1:
        Named.forward = lambda self, a: self.inner(**{names[0]: a})
    elif len(names) == 2:
        Named.forward = lambda self, a, b: self.inner(**{names[0]: a, names[1]: b})
    else:  # a family's optional inputs follow the contract's one or two
        import inspect

        def forward(self, *args):
            return self.inner(**dict(zip(names, args)))

        # torch.export matches dynamic_shapes against the signature: one named parameter per input
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        forward.__signature__ = inspect.Signature([inspect.Parameter(n, kind) for n in ("self", *names)])
        Named.forward = forward
    return Named()


class _quiet:
    """Silence the exporter's progress prints on stdout (our CLI prints its own)."""

    def __enter__(self):
        import contextlib
        import io
        import logging

        logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # e.g. "torchvision is not installed"
        self._cm = contextlib.redirect_stdout(io.StringIO())
        self._cm.__enter__()

    def __exit__(self, *exc):
        self._cm.__exit__(*exc)
        return False


