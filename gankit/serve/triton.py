"""Write a Triton Inference Server model repository from exported gankit ``.onnx`` files.

Each model becomes ``REPO/NAME/config.pbtxt`` + ``REPO/NAME/1/model.onnx`` (``NAME`` = the
file's stem). The config is derived from the file itself: the gankit metadata fixes the
image sizes and latent size, the ONNX graph gives the input/output names and element
types, and every size the metadata leaves open (restore models' H and W) is ``-1``. The
batch axis is Triton's (``max_batch_size``), so it is not in ``dims``; inputs that are one
value per sample (``label`` ``[N]``) are declared ``dims: [1]`` with ``reshape { shape: [] }``,
Triton's documented form for rank-1 batched tensors.

Only onnx (no torch, no onnxruntime session) is needed: the file is copied, the config is text.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

from gankit.errors import UsageError, first_line

KINDS = {"gpu": "KIND_GPU", "cpu": "KIND_CPU"}
# ONNX TensorProto element types -> Triton data types (the ones an exported model can use)
DTYPES = {1: "TYPE_FP32", 2: "TYPE_UINT8", 3: "TYPE_INT8", 5: "TYPE_INT16", 6: "TYPE_INT32", 7: "TYPE_INT64",
          9: "TYPE_BOOL", 10: "TYPE_FP16", 11: "TYPE_FP64", 16: "TYPE_BF16"}
NAME_OK = re.compile(r"^[A-Za-z0-9_.\-]+$")


def _read(path: Path):
    import onnx

    if path.is_dir():
        if (path / "config.json").is_file():
            raise UsageError(f"{path} is a run directory; --triton takes exported .onnx files (gankit export {path} first)")
        raise UsageError(f"{path} is a folder, not a model file (give an .onnx file)")
    if not path.is_file():
        raise UsageError(f"model file not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
        raise UsageError(f"{path} is not a loadable ONNX model ({first_line(exc, with_type=False)})") from None
    meta = {p.key: p.value for p in model.metadata_props}
    if meta.get("gankit.format") != "1" or "gankit.task" not in meta:
        raise UsageError(f"{path} is not a gankit format-1 model (its metadata lacks gankit.format=1 / gankit.task)")
    if any(init.HasField("data_location") and init.data_location == 1 for init in model.graph.initializer):
        raise UsageError(f"{path} keeps weights in external files; Triton needs them inside model.onnx")
    return model, meta


def _graph_dims(value_info) -> list[int]:
    """Dims without the batch axis; -1 for symbolic sizes."""
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in list(dims)[1:]]


def _meta_dims(name: str, task: str, meta: dict[str, str]) -> list[int] | None:
    """What the gankit metadata says an input or output looks like (batch axis excluded)."""
    try:
        c, h, w = (int(meta[k]) for k in ("gankit.channels", "gankit.height", "gankit.width"))
    except (KeyError, ValueError):
        raise UsageError(f"malformed gankit metadata (channels/height/width): {meta}") from None
    if task == "restore":  # any input size; the output is the scale times larger, also open
        h = w = -1
    if name == "z":
        return [int(meta.get("gankit.latent_dim", "0"))]
    if name in ("label", "truncation"):
        return []
    if name == "mask":
        return [1, h, w]
    if name in ("image", "restored"):
        return [c, h, w]
    return None


def model_config(name: str, model, meta: dict[str, str], *, max_batch: int, kind: str, delay_us: int) -> str:
    """The ``config.pbtxt`` text for one model."""
    task = meta["gankit.task"]
    init_names = {i.name for i in model.graph.initializer}

    def entry(v) -> str:
        dtype = DTYPES.get(v.type.tensor_type.elem_type)
        if dtype is None:
            raise UsageError(f"{name}: {v.name} has ONNX element type {v.type.tensor_type.elem_type}, which Triton's onnxruntime backend does not take")
        dims = _meta_dims(v.name, task, meta)
        if dims is None:
            dims = _graph_dims(v)
        lines = [f'    name: "{v.name}"', f"    data_type: {dtype}"]
        if dims:
            lines.append(f"    dims: [ {', '.join(str(d) for d in dims)} ]")
        else:  # one value per sample: [N] in ONNX, dims [1] reshaped away in Triton
            lines += ["    dims: [ 1 ]", "    reshape: { shape: [ ] }"]
        return "  {\n" + "\n".join(lines) + "\n  }"

    inputs = [v for v in model.graph.input if v.name not in init_names]
    outputs = list(model.graph.output)
    other = "KIND_CPU" if kind == "KIND_GPU" else "KIND_GPU"
    return "\n".join([
        f"# Written by gankit {_version()} from {meta.get('gankit.plugin', '?')} ({task}) metadata.",
        f'name: "{name}"',
        'platform: "onnxruntime_onnx"',
        f"max_batch_size: {max_batch}",
        "input [\n" + ",\n".join(entry(v) for v in inputs) + "\n]",
        "output [\n" + ",\n".join(entry(v) for v in outputs) + "\n]",
        "# Triton merges concurrent requests up to max_batch_size, waiting at most this long.",
        "dynamic_batching {",
        f"  max_queue_delay_microseconds: {delay_us}",
        "}",
        f"# {kind} instance; a server without a GPU cannot load KIND_GPU models:",
        f"# change kind to {other} (or export with --triton-kind {'cpu' if other == 'KIND_CPU' else 'gpu'}).",
        "instance_group [",
        "  {",
        "    count: 1",
        f"    kind: {kind}",
        "  }",
        "]",
        "",
    ])


def write_repository(repo: Path, models: Sequence[Path], *, max_batch: int = 32, kind: str = "gpu",
                     delay_us: int = 5000, overwrite: bool = False) -> list[Path]:
    """Add one Triton model directory per ``.onnx`` file to ``repo``; returns the directories.

    Everything is checked before anything is written; each model directory is assembled
    under a temporary name and renamed into place, so a failure leaves no half model.
    """
    if kind not in KINDS:
        raise UsageError(f"--triton-kind must be gpu or cpu, got {kind!r}")
    if max_batch < 1:
        raise UsageError(f"--triton-max-batch must be a positive integer, got {max_batch}")
    if not models:
        raise UsageError("give the exported .onnx files to put in the Triton repository")
    if repo.exists() and not repo.is_dir():
        raise UsageError(f"{repo} exists and is not a directory")
    plans = []
    for path in models:
        path = Path(path)
        model, meta = _read(path)
        name = path.stem
        if not NAME_OK.match(name):
            raise UsageError(f"{path}: Triton model names take letters, digits, '.', '_' and '-' only")
        if any(p[0] == name for p in plans):
            raise UsageError(f"two models are named {name!r}; model names come from the file names and must differ")
        target = repo / name
        if target.exists() and not overwrite:
            raise UsageError(f"{target} already exists (pass --overwrite to replace it)")
        plans.append((name, path, model_config(name, model, meta, max_batch=max_batch, kind=KINDS[kind], delay_us=delay_us)))
    repo.mkdir(parents=True, exist_ok=True)
    if not os.access(repo, os.W_OK):
        raise UsageError(f"cannot write to {repo}")
    written = []
    for name, path, text in plans:
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=repo))
        try:
            (tmp / "1").mkdir()
            shutil.copyfile(path, tmp / "1" / "model.onnx")
            (tmp / "config.pbtxt").write_text(text)
            target = repo / name
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        written.append(repo / name)
    return written


def _version() -> str:
    from gankit import __version__

    return __version__
