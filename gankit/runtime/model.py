"""Loading an exported model and running it: :func:`load` and :class:`GankitModel`."""

from __future__ import annotations

import ctypes
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from gankit.runtime.errors import ModelFormatError, RuntimeInputError

from gankit.runtime.engines import BACKENDS, open_engine  # noqa: E402
REQUIRED_KEYS = ("gankit.format", "gankit.task", "gankit.channels", "gankit.height", "gankit.width")
MAX_BATCH = 256


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


def load(path: str | os.PathLike, *, providers: Sequence[Any] | None = None, threads: int | None = None,
         backend: str = "onnxruntime", **options: Any) -> "GankitModel":
    """Open an exported gankit ``.onnx`` file.

    ``backend``: ``"onnxruntime"`` (default) or ``"openvino"`` (``pip install gankit[openvino]``;
    bf16 on CPUs with AMX, else fp32; ``precision="f32"|"bf16"`` forces one).
    ``providers``: onnxruntime execution providers (default: :func:`default_providers`).
    ``threads``: intra-op threads (default: the backend's choice, one per physical core).
    Raises :class:`ModelFormatError` for a missing, non-ONNX or non-gankit file.
    """
    if backend not in BACKENDS:
        raise RuntimeInputError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
    if threads is not None and int(threads) <= 0:
        raise RuntimeInputError(f"threads must be positive, got {threads}")
    return GankitModel(path, providers=providers, threads=threads, backend=backend, **options)


class GankitModel:
    """An exported generator or inpainting model, ready to run."""

    def __init__(self, path: str | os.PathLike, *, providers: Sequence[Any] | None = None, threads: int | None = None,
                 backend: str = "onnxruntime", **options: Any):
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelFormatError(f"model file not found: {self.path}")
        self.engine = open_engine(self.path, backend, providers, threads, **options)
        self.backend = backend
        self.session = getattr(self.engine, "session", None)  # the onnxruntime session, when that is the backend
        self.metadata: dict[str, str] = dict(self.engine.metadata)
        missing = [k for k in REQUIRED_KEYS if k not in self.metadata]
        if missing:
            raise ModelFormatError(f"{self.path} is not a gankit model (metadata lacks {', '.join(missing)})")
        if self.metadata["gankit.format"] != "1":
            raise ModelFormatError(f"{self.path} uses gankit format {self.metadata['gankit.format']}; this runtime reads format 1")
        try:
            self.task = self.metadata["gankit.task"]
            self.plugin = self.metadata.get("gankit.plugin", "")
            self.latent_dim = int(self.metadata.get("gankit.latent_dim", "0"))
            self.num_classes = int(self.metadata.get("gankit.num_classes", "0"))
            self.class_names = json.loads(self.metadata.get("gankit.class_names", "[]"))
            self.channels = int(self.metadata["gankit.channels"])
            self.height = int(self.metadata["gankit.height"])
            self.width = int(self.metadata["gankit.width"])
        except (ValueError, json.JSONDecodeError) as exc:
            raise ModelFormatError(f"{self.path} has malformed gankit metadata ({exc})") from None
        if self.task not in ("generate", "inpaint"):
            raise ModelFormatError(f"{self.path} has unknown gankit task {self.task!r}")
        self.input_names = list(self.engine.input_names)
        expected = ["image", "mask"] if self.task == "inpaint" else (["z", "label"] if self.num_classes else ["z"])
        if self.input_names != expected:
            raise ModelFormatError(f"{self.path} has inputs {self.input_names}, a gankit {self.task} model has {expected}")
        self.output_name = self.engine.output_names[0]

    @property
    def providers(self) -> list[str]:
        """The providers the session really uses (after any fallback)."""
        return self.engine.providers

    def __repr__(self) -> str:
        shape = f"{self.channels}x{self.height}x{self.width}"
        cls = f", {self.num_classes} classes" if self.num_classes else ""
        return f"GankitModel({self.path.name}: {self.plugin} {self.task} {shape}{cls}, {self.backend}: {self.providers})"

    # -- generate ------------------------------------------------------------------------
    def _labels(self, n: int, labels: Any) -> np.ndarray | None:
        if not self.num_classes:
            if labels is not None:
                raise RuntimeInputError("this model is unconditional; it takes no labels")
            return None
        if labels is None:
            return (np.arange(n) % self.num_classes).astype(np.int64)
        if isinstance(labels, str) or np.ndim(labels) == 0:
            labels = [labels] * n
        resolved = []
        for lab in labels:
            if isinstance(lab, str):
                if lab not in self.class_names:
                    raise RuntimeInputError(f"unknown class name {lab!r}; classes: {', '.join(self.class_names)}")
                lab = self.class_names.index(lab)
            if isinstance(lab, (bool, np.bool_)) or not float(lab).is_integer():
                raise RuntimeInputError(f"label {lab!r} is not an integer class index")
            resolved.append(int(lab))
        arr = np.asarray(resolved, dtype=np.int64)
        if len(arr) != n:
            raise RuntimeInputError(f"got {len(arr)} labels for {n} images")
        if len(arr) and (arr.min() < 0 or arr.max() >= self.num_classes):
            bad = int(arr[(arr < 0) | (arr >= self.num_classes)][0])
            raise RuntimeInputError(f"label {bad} out of range: this model has classes 0..{self.num_classes - 1}")
        return arr

    def run_raw(self, z: np.ndarray, labels: np.ndarray | None = None, batch_size: int = MAX_BATCH) -> np.ndarray:
        """float32 ``[N, C, H, W]`` in [-1, 1] from noise ``z`` ``[N, latent_dim]`` (and labels)."""
        if self.task != "generate":
            raise RuntimeInputError("this is an inpainting model; use inpaint()")
        z = np.ascontiguousarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise RuntimeInputError(f"z must have shape [N, {self.latent_dim}], got {list(z.shape)}")
        outs = []
        for i in range(0, len(z), batch_size):
            feed = {"z": z[i : i + batch_size]}
            if self.num_classes:
                feed["label"] = np.ascontiguousarray(labels[i : i + batch_size], dtype=np.int64)
            outs.append(self.engine.run(feed))
        if not outs:
            return np.zeros((0, self.channels, self.height, self.width), np.float32)
        return np.concatenate(outs)

    def generate(self, n: int, labels: Any = None, seed: int | None = None, *, as_pil: bool = False,
                 batch_size: int = MAX_BATCH, truncation: float | None = None):
        """``n`` images as uint8 ``[n, H, W, C]`` (or a list of PIL images with ``as_pil=True``).

        ``labels``: one class (index or name) for all, a sequence of ``n``, or None (cycles
        through the classes for a conditional model). ``seed`` fixes the noise.
        ``truncation``: psi for files with a truncation input (stylegan); None = the file's 1.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
            raise RuntimeInputError(f"n must be a positive integer, got {n!r}")
        if batch_size <= 0:
            raise RuntimeInputError(f"batch_size must be positive, got {batch_size}")
        lab = self._labels(int(n), labels)
        z = np.random.default_rng(seed).standard_normal((int(n), self.latent_dim)).astype(np.float32)
        if truncation is None:
            raw = self.run_raw(z, lab, batch_size)
        else:
            from gankit.runtime.latent import run_latent

            raw = run_latent(self, z, lab, truncation=truncation, batch_size=batch_size)
        images = _to_uint8_hwc(raw)
        return _as_pil(images) if as_pil else images

    def mix(self, rows: int = 4, cols: int = 6, **options: Any) -> np.ndarray:
        """Style-mixing grid (coarse styles from the rows, fine from the columns): see :func:`gankit.runtime.latent.mix`."""
        from gankit.runtime.latent import mix

        return mix(self, rows, cols, **options)

    def interpolate(self, frames: int = 48, **options: Any) -> np.ndarray:
        """A smooth latent walk, uint8 ``[frames, H, W, C]``: see :func:`gankit.runtime.latent.interpolate`."""
        from gankit.runtime.latent import interpolate

        return interpolate(self, frames, **options)

    # -- inpaint -------------------------------------------------------------------------
    def run_raw_inpaint(self, images: np.ndarray, masks: np.ndarray, batch_size: int = MAX_BATCH) -> np.ndarray:
        """float32 NCHW in [-1, 1] from images NCHW in [-1, 1] and masks N1HW (1 = missing)."""
        if self.task != "inpaint":
            raise RuntimeInputError("this is a generator; use generate()")
        images = np.ascontiguousarray(images, dtype=np.float32)
        masks = np.ascontiguousarray(masks, dtype=np.float32)
        want = (self.channels, self.height, self.width)
        if images.ndim != 4 or tuple(images.shape[1:]) != want:
            raise RuntimeInputError(f"images must have shape [N, {want[0]}, {want[1]}, {want[2]}], got {list(images.shape)}")
        if masks.shape != (images.shape[0], 1, self.height, self.width):
            raise RuntimeInputError(f"masks must have shape [N, 1, {self.height}, {self.width}], got {list(masks.shape)}")
        outs = []
        for i in range(0, len(images), batch_size):
            m = masks[i : i + batch_size]
            outs.append(self.engine.run({"image": images[i : i + batch_size] * (1 - m), "mask": m}))
        return np.concatenate(outs) if outs else np.zeros((0, *want), np.float32)

    def inpaint(self, image: Any, mask: Any, *, as_pil: bool = False, batch_size: int = 64):
        """Fill the masked pixels of one image of any size.

        ``image``: uint8 ``[H, W]``, ``[H, W, C]`` (C = 1, 3 or 4) or a PIL image; ``mask``:
        ``[H, W]`` bool/uint8 or PIL, nonzero = missing. Known pixels come back unchanged.
        Images larger than the model are processed in overlapping model-sized tiles (only
        tiles that touch a hole are run; overlapping predictions are averaged); smaller ones
        are padded by reflection. A colour image through a grayscale model is restored
        channel by channel; alpha passes through untouched.
        """
        from gankit.runtime.tiles import inpaint_any_size

        img = _as_uint8_image(image)
        msk = _as_mask(mask)
        if msk.shape != img.shape[:2]:
            raise RuntimeInputError(f"mask is {msk.shape[1]}x{msk.shape[0]} but image is {img.shape[1]}x{img.shape[0]}; they must match")
        alpha = img[..., 3] if img.shape[2] == 4 else None
        rgb = img[..., :3] if img.shape[2] == 4 else img
        if self.channels == 1 and rgb.shape[2] == 3:
            planes = [inpaint_any_size(self, rgb[..., c : c + 1], msk, batch_size) for c in range(3)]
            out = np.concatenate(planes, axis=2)
        elif self.channels == 3 and rgb.shape[2] == 1:
            out = inpaint_any_size(self, np.repeat(rgb, 3, axis=2), msk, batch_size).mean(axis=2, keepdims=True)
            out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
        else:
            out = inpaint_any_size(self, rgb, msk, batch_size)
        out = np.where(msk[..., None], out, rgb)  # known pixels exactly as given
        if alpha is not None:
            out = np.concatenate([out, alpha[..., None]], axis=2)
        if as_pil:
            return _as_pil(out[None])[0]
        return out


def _to_uint8_hwc(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def _as_pil(images: np.ndarray):
    from PIL import Image

    return [Image.fromarray(im[..., 0] if im.shape[2] == 1 else im) for im in images]


def _as_uint8_image(image: Any) -> np.ndarray:
    if hasattr(image, "mode") and hasattr(image, "size"):  # PIL
        im = image
        if im.mode not in ("L", "RGB", "RGBA"):
            im = im.convert("RGBA" if "A" in im.mode or im.mode == "P" else "RGB")
        image = np.asarray(im)
    a = np.asarray(image)
    if a.dtype == bool or a.dtype.kind not in "ui" and a.dtype.kind != "f":
        raise RuntimeInputError(f"image must be a uint8 array or PIL image, got dtype {a.dtype}")
    if a.dtype.kind == "f":
        raise RuntimeInputError("image must be uint8 (0..255); convert float images first")
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise RuntimeInputError(f"image must be [H, W] or [H, W, 1|3|4], got shape {list(a.shape)}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise RuntimeInputError("image is empty")
    if a.max(initial=0) > 255 or a.min(initial=0) < 0:
        raise RuntimeInputError("image values must lie in 0..255")
    return a.astype(np.uint8)


def _as_mask(mask: Any) -> np.ndarray:
    if hasattr(mask, "mode") and hasattr(mask, "size"):
        mask = np.asarray(mask.convert("L"))
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[..., 0]
    if m.ndim != 2:
        raise RuntimeInputError(f"mask must be [H, W], got shape {list(m.shape)}")
    if m.dtype.kind == "f":
        if not np.isfinite(m).all():
            raise RuntimeInputError("mask contains non-finite values")
        return m > 0.5
    return m != 0 if m.dtype == bool or m.max(initial=0) <= 1 else m > 127
