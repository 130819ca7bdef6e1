"""torch -> ONNX: the exporter.

``export_run(run_dir)`` rebuilds the run's generator from its newest checkpoint (the EMA
weights when the run kept them), prepares it for inference (eval mode, spectral-norm
parametrisations removed, BatchNorm folded into the convolution or linear layer before it),
exports it with the ``torch.export``-based ONNX exporter (dynamic batch axis, opset 18),
writes gankit's metadata, runs ``onnx.checker``, and compares onnxruntime against PyTorch
on fresh random inputs at two batch sizes. A file is only written (atomically) when every
output matches within 1e-4; otherwise the export fails and says which output and by how much.

The file contract is documented in DESIGN.md and README ("The ONNX file").
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from gankit import __version__
from gankit.errors import GankitError, UsageError

OPSET = 18
TOLERANCE = 1e-4
PARITY_BATCHES = (1, 5)


class ExportError(GankitError):
    """The export failed (unsupported op, checker error, or parity mismatch)."""


def load_run_generator(run_dir: str | os.PathLike, family=None):
    """(family, config, generator in eval mode, step) from a run directory's newest checkpoint.

    ``family`` defaults to the installed family named in the run's config.
    """
    from gankit.plugins import get_family
    from gankit.train import checkpoint as ckpt
    from gankit.train.run import RunDir

    run = RunDir(run_dir)
    config = run.read_config()
    if family is None:
        family = get_family(config.get("plugin", "?"))
    latest = ckpt.latest(run.checkpoints)
    if latest is None:
        raise UsageError(f"{run.path} has no readable checkpoint")
    G = family.build_generator(config)
    state = latest.module_state("G_ema") if latest.has("G_ema") else latest.module_state("G")
    try:
        G.load_state_dict(state)
    except RuntimeError as exc:
        raise UsageError(f"checkpoint {latest.path} does not fit the {family.name} generator: {str(exc).splitlines()[0]}") from None
    return family, config, G.eval(), latest.step


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
    """The ``metadata_props`` of an exported file (DESIGN.md's contract, plus provenance)."""
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


def export_generator(family, config: dict[str, Any], generator, out: str | os.PathLike, *,
                     extra_metadata: dict[str, str] | None = None, tolerance: float = TOLERANCE) -> Path:
    """Export ``generator`` to ``out`` (atomically) or raise :class:`ExportError`."""
    import warnings

    import onnx
    import torch

    out = Path(out)
    module = prepare_for_export(family.export_module(generator, config))
    example = _example_inputs(family, config, 2, seed=0)
    # parity alone would pass a generator whose images do not match the metadata's shape
    from gankit.train.contract import check_export_generator

    check_export_generator(family, config, module, example)
    names = list(example.keys())
    output_name = family.output_name
    batch = torch.export.Dim("batch", min=1, max=65536)
    dynamic = tuple({0: batch} if example[n].dim() else None for n in names)  # scalars have no batch axis
    try:
        with warnings.catch_warnings(), _quiet():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                _Named(module, names), tuple(example.values()), None, input_names=names, output_names=[output_name],
                opset_version=OPSET, dynamo=True, dynamic_shapes=dynamic, external_data=False, optimize=True,
            )
    except Exception as exc:
        raise ExportError(f"torch.onnx.export failed for {family.name}: {_first_line(exc)}") from None
    model = program.model_proto
    _add_input_defaults(model, family.export_input_defaults(config))
    meta = {**metadata(family, config), **(extra_metadata or {})}
    del model.metadata_props[:]
    for k, v in meta.items():
        p = model.metadata_props.add()
        p.key, p.value = k, v
    model.producer_name = "gankit"
    model.producer_version = __version__
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise ExportError(f"onnx.checker rejected the exported {family.name} model: {_first_line(exc)}") from None
    data = model.SerializeToString()
    check_parity(family, config, module, data, tolerance=tolerance)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


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
    runs = [(b, _example_inputs(family, config, b, seed=1000 + i)) for i, b in enumerate(batches)]
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


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *, overwrite: bool = False) -> Path:
    """``gankit export``: a run directory's generator -> ``exported/<run>.onnx``."""
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else Path("exported") / f"{run_dir.resolve().name}.onnx"
    if out.suffix != ".onnx":
        raise UsageError(f"export target {out} should end in .onnx")
    if out.exists() and not overwrite:
        raise UsageError(f"{out} already exists (pass --overwrite to replace it)")
    family, config, G, step = load_run_generator(run_dir)
    return export_generator(family, config, G, out, extra_metadata={"gankit.step": str(step), "gankit.run": run_dir.name})


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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return f"{type(exc).__name__}: {line}"[:300]
