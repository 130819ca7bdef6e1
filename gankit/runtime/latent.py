"""Latent-space tools on an exported generator: truncation, style mixing, latent walks. No torch.

Files exported by a family with optional inputs (``gankit.optional_inputs`` in the
metadata, e.g. ``stylegan``) take ``truncation`` (psi, float32 scalar, default 1: w <-
w_avg + psi (w - w_avg)), ``z2`` and ``crossover`` (int64 scalar: layers ``>= crossover``
take their style from z2; the default, ``gankit.num_layers``, means no mixing). Every
generate-family file - format 1 without optional inputs included - supports
:func:`interpolate`, a walk through z by spherical interpolation.

:class:`gankit.runtime.GankitModel` exposes these as ``generate(..., truncation=)``,
``mix(...)`` and ``interpolate(...)``.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from gankit.runtime.contract import optional_input_names
from gankit.runtime.errors import RuntimeInputError, show
from gankit.runtime.inputs import seeded_rng

MAX_BATCH = 256
# psi beyond this pushes w so far from the average that float32 activations overflow to NaN
# (1e300 did); StyleGAN users work in 0..1.5, and negative psi mirrors w through the average
MAX_TRUNCATION = 10.0
MAX_KEYS = 1000  # key latents of a walk: more than frames is pointless, and each is a z
MAX_PAD = 256  # pixels between the cells of a mixing grid


def optional_inputs(model) -> list[str]:
    """The file's inputs with defaults (``gankit.optional_inputs``); [] for earlier files."""
    return optional_input_names(model.metadata)


# gankit.num_layers and gankit.mix_crossover were range-checked at load
# (gankit.runtime.contract), wherever a file names z2 and crossover
def num_layers(model) -> int:
    """How many style layers the file's generator has (``gankit.num_layers``), 0 if it has none."""
    return int(model.metadata.get("gankit.num_layers", "0")) if "crossover" in optional_inputs(model) else 0


def mix_crossover(model) -> int:
    """The layer where the file's style-mixing grid switches to the column's styles."""
    return int(model.metadata.get("gankit.mix_crossover", max(1, num_layers(model) // 2)))


def _require(model, names: tuple[str, ...], what: str) -> None:
    missing = [n for n in names if n not in optional_inputs(model)]
    if missing and model.metadata.get("gankit.precision") == "int8":
        raise RuntimeInputError(f"{what} needs input(s) {', '.join(missing)}, which the int8 file {model.path.name} "
                                f"fixes at their defaults; export the run without --int8 for them")
    if missing:
        plugin = model.plugin or "this"
        raise RuntimeInputError(f"{what} needs a model with input(s) {', '.join(missing)}; {plugin} model "
                                f"{model.path.name} has none (export a stylegan model)")


def _number(value: Any) -> Any:
    """``value`` as a Python number if it is one (a 0-d array counts), else None; bools and
    strings that float() would parse are not numbers here."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    return value


def _check_generate(model) -> None:
    if model.task != "generate":
        raise RuntimeInputError(f"this is an {model.task} model; latent tools need a generate model")


def check_truncation(model, truncation: Any) -> float | None:
    """``truncation`` as a float (None = the file's default of 1), refusing what the file cannot do."""
    if truncation is None:
        return None
    if _number(truncation) is None:
        raise RuntimeInputError(f"truncation must be a number, got {show(truncation)}")
    psi = float(_number(truncation))
    if not math.isfinite(psi):
        raise RuntimeInputError(f"truncation must be finite, got {truncation!r}")
    if abs(psi) > MAX_TRUNCATION:
        raise RuntimeInputError(f"truncation must be from {-MAX_TRUNCATION:g} to {MAX_TRUNCATION:g} (1 = none, 0 = the "
                                f"average image), got {psi:g}")
    if psi != 1.0:  # psi = 1 is plain generation, which every file can do
        _require(model, ("truncation",), "truncation")
    return psi


def run_latent(model, z: np.ndarray, labels: np.ndarray | None = None, *, truncation: Any = None,
               z2: np.ndarray | None = None, crossover: int | None = None, batch_size: int = MAX_BATCH) -> np.ndarray:
    """float32 ``[N, C, H, W]`` in [-1, 1] from ``z`` with optional truncation and style mixing."""
    _check_generate(model)
    psi = check_truncation(model, truncation)
    z = np.ascontiguousarray(z, dtype=np.float32)
    if z.ndim != 2 or z.shape[1] != model.latent_dim:
        raise RuntimeInputError(f"z must have shape [N, {model.latent_dim}], got {list(z.shape)}")
    extra: dict[str, np.ndarray] = {}
    if psi is not None and "truncation" in optional_inputs(model):
        extra["truncation"] = np.asarray(psi, np.float32)
    if z2 is not None or crossover is not None:
        _require(model, ("z2", "crossover"), "style mixing")
        layers = num_layers(model)
        if crossover is None:
            crossover = layers
        given, crossover = crossover, _number(crossover)
        if crossover is None or not math.isfinite(crossover) or not float(crossover).is_integer() \
                or not 0 <= int(crossover) <= layers:
            raise RuntimeInputError(f"crossover must be a layer index in 0..{layers}, got {show(given)}")
        extra["crossover"] = np.asarray(int(crossover), np.int64)
        if z2 is not None:
            z2 = np.ascontiguousarray(z2, dtype=np.float32)
            if z2.shape != z.shape:
                raise RuntimeInputError(f"z2 must have the shape of z {list(z.shape)}, got {list(z2.shape)}")
    if model.num_classes and labels is None:
        raise RuntimeInputError("this model is conditional; pass labels")
    outs = []
    for i in range(0, len(z), batch_size):
        feed = {"z": z[i : i + batch_size], **extra}
        if z2 is not None:
            feed["z2"] = z2[i : i + batch_size]
        if model.num_classes:
            feed["label"] = np.ascontiguousarray(labels[i : i + batch_size], dtype=np.int64)
        outs.append(model._run(feed))  # backend failures and NaN outputs become gankit errors
    if not outs:
        return np.zeros((0, model.channels, model.height, model.width), np.float32)
    return np.concatenate(outs)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """float32 NCHW in [-1, 1] -> uint8 NHWC."""
    return np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def _count(value: Any, name: str, low: int = 1, high: int | None = None) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low:
        raise RuntimeInputError(f"{name} must be an integer >= {low}, got {show(value)}")
    if high is not None and value > high:
        raise RuntimeInputError(f"{name} must be at most {high}, got {show(value)}")
    return int(value)


def _one_label(model, n: int, label: Any) -> np.ndarray | None:
    """One class for every image (default 0) of a conditional model; None otherwise."""
    if label is not None and not np.ndim(label) == 0:
        raise RuntimeInputError("label must be one class (index or name) here")
    return model._labels(n, (0 if label is None else label) if model.num_classes else label)


def mix(model, rows: int = 4, cols: int = 6, *, crossover: int | None = None, truncation: Any = None,
        seed: int | None = None, label: Any = None, pad: int = 2) -> np.ndarray:
    """The style-mixing grid as one uint8 ``[H', W', C]`` image.

    Top row: the ``cols`` column sources; left column: the ``rows`` row sources; cell (r, c):
    the coarse styles (layers ``< crossover``) of row r with the fine styles of column c.
    ``crossover`` defaults to the file's ``gankit.mix_crossover`` (the coarse half of the
    resolutions). ``label``: the class of every image of a conditional model (default 0).
    """
    _check_generate(model)
    rows, cols, pad = _count(rows, "rows"), _count(cols, "cols"), _count(pad, "pad", 0, MAX_PAD)
    _require(model, ("z2", "crossover"), "style mixing")
    h, w, c = model.height, model.width, model.channels
    model._check_result_size((rows + 1) * (cols + 1), (h + pad) * (w + pad) * c * 4, "rows x cols")
    if crossover is None:
        crossover = mix_crossover(model)
    rng = seeded_rng(seed)
    zr = rng.standard_normal((rows, model.latent_dim)).astype(np.float32)
    zc = rng.standard_normal((cols, model.latent_dim)).astype(np.float32)
    n = rows * cols
    cells = run_latent(model, np.repeat(zr, cols, axis=0), _one_label(model, n, label), truncation=truncation,
                       z2=np.tile(zc, (rows, 1)), crossover=crossover)
    row_src = run_latent(model, zr, _one_label(model, rows, label), truncation=truncation)
    col_src = run_latent(model, zc, _one_label(model, cols, label), truncation=truncation)
    out = np.full(((rows + 1) * (h + pad) + pad, (cols + 1) * (w + pad) + pad, c), 255, np.uint8)

    def put(r: int, col: int, image: np.ndarray) -> None:
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        out[y : y + h, x : x + w] = image

    for j, im in enumerate(to_uint8(col_src)):
        put(0, j + 1, im)
    for i, im in enumerate(to_uint8(row_src)):
        put(i + 1, 0, im)
    for k, im in enumerate(to_uint8(cells)):
        put(k // cols + 1, k % cols + 1, im)
    return out


def slerp(a: np.ndarray, b: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    """Spherical interpolation between rows of ``a`` and ``b`` (Gaussian z keeps its norm on the way)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    t = np.asarray(t, np.float64).reshape(-1, 1)
    na, nb = np.linalg.norm(a, axis=-1, keepdims=True), np.linalg.norm(b, axis=-1, keepdims=True)
    cos = np.clip(np.sum(a * b, axis=-1, keepdims=True) / np.maximum(na * nb, 1e-12), -1.0, 1.0)
    omega = np.arccos(cos)
    so = np.sin(omega)
    near = so < 1e-6  # (anti)parallel: fall back to linear interpolation
    safe = np.where(near, 1.0, so)
    wa = np.where(near, 1 - t, np.sin((1 - t) * omega) / safe)
    wb = np.where(near, t, np.sin(t * omega) / safe)
    return (wa * a + wb * b).astype(np.float32)


MAX_GIF_FPS = 50
MIN_GIF_FPS = 0.01
MAX_FRAMES = 10_000  # a GIF of 10,000 frames is already hundreds of MB in memory


def walk(latent_dim: int, frames: int, keys: int = 4, seed: int | None = None) -> np.ndarray:
    """``frames`` z's [frames, latent_dim] on a closed loop through ``keys`` random key z's.

    Each stretch between two keys is a slerp eased with a smoothstep, so the walk slows
    into each key and the loop joins without a jump (frame ``frames`` would be frame 0).
    """
    frames, keys = _count(frames, "frames", 1, MAX_FRAMES), _count(keys, "keys", 2, MAX_KEYS)
    z = seeded_rng(seed).standard_normal((keys, latent_dim))
    pos = np.arange(frames) * keys / frames
    seg = np.floor(pos).astype(int)
    frac = pos - seg
    ease = frac * frac * (3 - 2 * frac)
    return np.concatenate([slerp(z[s : s + 1], z[(s + 1) % keys][None], e) for s, e in zip(seg, ease)])


def interpolate(model, frames: int = 48, *, keys: int = 4, seed: int | None = None, label: Any = None,
                truncation: Any = None) -> np.ndarray:
    """A smooth latent walk: uint8 ``[frames, H, W, C]`` for any generate-family model.

    The noise of a StyleGAN file is fixed in the file, so only z moves. ``label``: the class
    of every frame of a conditional model (default 0).
    """
    _check_generate(model)
    z = walk(model.latent_dim, frames, keys, seed)
    return to_uint8(run_latent(model, z, _one_label(model, len(z), label), truncation=truncation))


def save_gif(frames: np.ndarray, path, *, fps: float = 12.0, scale: int = 1) -> None:
    """Write uint8 ``[F, H, W, C]`` frames as a looping GIF (Pillow)."""
    from PIL import Image

    if _number(fps) is None:
        raise RuntimeInputError(f"fps must be a number, got {show(fps)}")
    if not MIN_GIF_FPS <= fps <= MAX_GIF_FPS:
        # GIF delays are whole hundredths of a second in 16 bits (at most 655 s), and viewers slow
        # anything under 2 to 10
        raise RuntimeInputError(f"fps must be from {MIN_GIF_FPS} to {MAX_GIF_FPS} (GIF frame delays), got {fps}")
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[0] < 1 or frames.shape[3] not in (1, 3) or frames.dtype != np.uint8:
        raise RuntimeInputError(f"frames must be uint8 [F >= 1, H, W, 1|3], got {frames.dtype} {list(frames.shape)}")
    scale = _count(scale, "scale", 1, 64)
    from pathlib import Path

    if isinstance(path, (str, os.PathLike)) and not Path(path).parent.is_dir():  # a file object is Pillow's to use
        raise RuntimeInputError(f"folder {Path(path).parent} does not exist")
    if scale > 1:
        frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    images = [Image.fromarray(f[..., 0] if f.shape[2] == 1 else f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(round(1000 / fps)), loop=0)
