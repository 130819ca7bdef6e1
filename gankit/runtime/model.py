"""Loading an exported model and running it: :func:`load` and :class:`GankitModel`.

Nothing is trusted: at load the file's metadata is parsed and range-checked, the graph's
inputs and outputs are compared with the contract, and one batch-1 probe run must give the
image shape the metadata promises (:mod:`gankit.runtime.contract`). Every public method checks
its arguments' types and ranges and refuses NaN and infinity, so a caller only ever sees
:class:`RuntimeInputError` (fix the arguments) or :class:`ModelFormatError` (the file is bad).
"""

from __future__ import annotations

import os
import re
import time
from typing import Any, Sequence

import numpy as np

from gankit.errors import first_line
from gankit.images import nchw_to_hwc_uint8
from gankit.runtime.contract import MAX_SIDE, check_graph, check_optional_inputs, fits, parse_metadata, probe
from gankit.runtime.engines import BACKENDS, ENGINE_OPTIONS, default_providers, open_engine, resolve_backend
from gankit.runtime.errors import ModelFormatError, RuntimeInputError, show
from gankit.runtime.inputs import (CODECS, as_image, as_mask, asarray, caller_dtype, flag, image_shape, in_range, is_pil,
                                   model_path, pil_images, real_array, seeded_rng, whole)

MAX_BATCH = 256
# how onnxruntime's and OpenVINO's allocators report running out of memory
_OUT_OF_MEMORY = re.compile(r"Failed to allocate memory|bad_alloc|out of memory", re.IGNORECASE)
MAX_THREADS = 4096
# What one call may return (bytes of the result array). Beyond this a request is refused up
# front instead of failing half-way in an allocation (or being killed by the OOM killer).
MAX_RESULT_BYTES = 2 << 30
# restore's defaults. A 256-pixel tile keeps one run's activations small (a 64-channel conv
# layer over a 288x288 window is 21 MB in float32, x16 at scale 4) while the context overhead
# stays modest ((256 + 2*16)^2 / 256^2 = 1.27x the pixels of an untiled run); 16 pixels of
# context cover the receptive field of a restore generator of up to 16 stacked 3x3 convolutions
# at input resolution (each adds one pixel per side); deeper models want a larger tile_pad.
RESTORE_TILE = 256
RESTORE_TILE_PAD = 16
RESTORE_BATCH = 4
MAX_TILE_PAD = 1024


def load(path: str | os.PathLike, *, providers: Sequence[Any] | None = None, threads: int | None = None,
         backend: str = "onnxruntime", **options: Any) -> "GankitModel":
    """Open an exported gankit ``.onnx`` file.

    ``backend``: ``"onnxruntime"`` (default: fp32, the numbers the exporter checked against
    PyTorch), ``"openvino"`` (installed with gankit on Linux x86-64/aarch64, Windows x64 and
    Apple silicon; elsewhere ``pip install gankit[openvino]``; bf16 on CPUs with AMX or AVX-512
    bf16 unless the graph makes discrete decisions, else fp32; ``precision="f32"|"bf16"``
    forces one), or ``"auto"``: onnxruntime on a GPU or when ``providers`` or onnxruntime's
    options are given, else OpenVINO where installed (several times faster on CPUs where a call
    has work, e.g. a photo to restore). Under ``auto`` a file that OpenVINO cannot compile, or
    whose probe run fails there, opens in onnxruntime instead (``m.fallback_reason`` says why);
    ``m.backend`` says which engine runs. OpenVINO runs one call at a time per model (calls
    from several threads take turns), where onnxruntime runs them side by side.
    ``providers``: onnxruntime execution providers (default: :func:`default_providers`).
    ``threads``: intra-op threads (default: the backend's choice, one per physical core).
    Raises :class:`ModelFormatError` for a missing, non-ONNX or non-gankit file, or one that
    breaks the file contract; :class:`RuntimeInputError` for a bad argument.
    """
    return GankitModel(path, providers=providers, threads=threads, backend=backend, **options)


class GankitModel:
    """An exported generator, inpainting or restore model, checked and ready to run."""

    def __init__(self, path: str | os.PathLike, *, providers: Sequence[Any] | None = None, threads: int | None = None,
                 backend: str = "onnxruntime", **options: Any):
        if not isinstance(backend, str) or backend not in BACKENDS:
            raise RuntimeInputError(f"unknown backend {show(backend)}; available: {', '.join(BACKENDS)}")
        if threads is not None:
            threads = whole("threads", threads, 1, MAX_THREADS)
        self.path = model_path(path)
        if self.path.is_dir():
            raise ModelFormatError(f"{self.path} is a folder, not a model file (give an .onnx file)")
        if not self.path.is_file():
            raise ModelFormatError(f"model file not found: {self.path}")
        # why "auto" left OpenVINO for onnxruntime ("" when it did not): a file OpenVINO cannot
        # compile, or whose graph or probe run it reads differently, still runs
        self.fallback_reason = ""
        chosen = resolve_backend(backend, providers, options)
        openvino_hints = {k: v for k, v in options.items() if k in ENGINE_OPTIONS["openvino"]}
        if backend == "auto" and chosen == "onnxruntime":  # OpenVINO's hints do not apply
            options = {k: v for k, v in options.items() if k not in openvino_hints}
        try:
            self._open(chosen, providers, threads, options)
        except ModelFormatError as exc:
            if backend != "auto" or chosen != "openvino":
                raise
            self.fallback_reason = str(exc)
            self._open("onnxruntime", providers, threads, {k: v for k, v in options.items() if k not in openvino_hints})
        info = self.info
        self.task, self.plugin = info.task, info.plugin
        self.latent_dim, self.num_classes, self.class_names = info.latent_dim, info.num_classes, list(info.class_names)
        self.channels, self.height, self.width = info.channels, info.height, info.width
        self.input_names = list(self.engine.input_names)
        self.output_name = self.engine.output_names[0]

    def _open(self, backend: str, providers, threads, options: dict[str, Any]) -> None:
        """Open the engine, check the graph against the metadata and probe it with one run."""
        self.engine = open_engine(self.path, backend, providers, threads, **options)
        self.backend = self.engine.name  # what "auto" chose
        self.session = getattr(self.engine, "session", None)  # the onnxruntime session, when that is the backend
        self.metadata: dict[str, str] = dict(self.engine.metadata)
        self.info = parse_metadata(self.metadata, self.path)
        check_graph(self.info, self.engine.inputs, self.engine.outputs, self.path)
        check_optional_inputs(self.metadata, getattr(self.engine, "optional_names", None), self.path)
        t0 = time.perf_counter()
        probe(self.info, self.engine.run, self.path)
        self.probe_ms = (time.perf_counter() - t0) * 1e3

    @property
    def providers(self) -> list[str]:
        """The providers the session really uses (after any fallback)."""
        return self.engine.providers

    @property
    def scale(self) -> int:
        """Output side / input side: 2 or 4 for super-resolution, 1 for denoising etc. (1 unless restore)."""
        return self.info.scale

    @property
    def degradation(self) -> str:
        """What a restore model was trained to undo (``sr2``, ``noise``, ... or a family's own words; "" if not said)."""
        return self.info.degradation

    @property
    def size_multiple(self) -> int:
        """A restore model's input H and W must be multiples of this (the runtime pads to it)."""
        return self.info.size_multiple

    def __repr__(self) -> str:
        shape = f"{self.channels}x{self.height}x{self.width}"
        cls = f", {self.num_classes} classes" if self.num_classes else ""
        if self.task == "restore":
            cls = f", x{self.scale}" + (f" {self.degradation}" if self.degradation else "")
        return f"GankitModel({self.path.name}: {self.plugin} {self.task} {shape}{cls}, {self.backend}: {self.providers})"

    # -- running -------------------------------------------------------------------------
    def _require(self, task: str) -> None:
        if self.task != task:
            use = {"generate": "this is a generator; use generate()", "inpaint": "this is an inpainting model; use inpaint()",
                   "restore": "this is a restore model; use restore()"}[self.task]
            raise RuntimeInputError(use)

    def _run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """One engine call; the backend's failures and non-finite outputs become gankit errors
        (a NaN is never passed on, nor cast to a pixel value)."""
        try:
            out = self.engine.run(feed)
        except MemoryError:
            raise RuntimeInputError("out of memory running the model; use a smaller batch_size (restore: or tile)") from None
        except Exception as exc:
            if _OUT_OF_MEMORY.search(str(exc)):  # the engine's allocator, not the file, gave up
                raise RuntimeInputError("out of memory running the model; use a smaller batch_size "
                                        "(restore: or tile)") from None
            raise ModelFormatError(f"{self.path} failed to run ({first_line(exc, with_type=False)})") from None
        if not np.isfinite(out).all():
            raise ModelFormatError(f"{self.path} produced NaN or infinite values for finite inputs")
        return out

    def _check_result_size(self, n: int, item_bytes: int, what: str) -> None:
        if not fits(n, item_bytes, MAX_RESULT_BYTES):
            per_call = MAX_RESULT_BYTES // item_bytes
            raise RuntimeInputError(f"{what}={show(n)} is too many for one call: at most {per_call} "
                                    f"{self.channels}x{self.height}x{self.width} images ({MAX_RESULT_BYTES >> 30} GiB); "
                                    "split the request")

    # -- generate ------------------------------------------------------------------------
    def _label_index(self, lab: Any) -> int:
        if isinstance(lab, str):
            if lab not in self.class_names:
                shown = ", ".join(self.class_names[:12]) + (", ..." if len(self.class_names) > 12 else "")
                raise RuntimeInputError(f"unknown class name {show(lab)}; classes: {shown or '(none named)'}")
            return self.class_names.index(lab)
        if isinstance(lab, (bool, np.bool_)):
            raise RuntimeInputError(f"label {lab!r} is not an integer class index")
        if isinstance(lab, (int, np.integer)):
            value = int(lab)
        elif isinstance(lab, (float, np.floating)) and np.isfinite(lab) and float(lab).is_integer():
            value = int(lab)
        else:
            raise RuntimeInputError(f"label {show(lab)} is not an integer class index or class name")
        if not 0 <= value < self.num_classes:
            raise RuntimeInputError(f"label {show(value)} out of range: this model has classes 0..{self.num_classes - 1}")
        return value

    def _labels(self, n: int, labels: Any) -> np.ndarray | None:
        """int64 ``[n]`` class indices from one label, a sequence of ``n`` or None (cycle through classes)."""
        if not self.num_classes:
            if labels is not None:
                raise RuntimeInputError("this model is unconditional; it takes no labels")
            return None
        if labels is None:
            return (np.arange(n) % self.num_classes).astype(np.int64)
        if isinstance(labels, (str, int, float, np.generic)):
            return np.full(n, self._label_index(labels.item() if isinstance(labels, np.generic) else labels), np.int64)
        if isinstance(labels, np.ndarray) and labels.ndim == 0:
            return np.full(n, self._label_index(labels.item()), np.int64)
        if isinstance(labels, np.ndarray):
            if labels.ndim != 1:
                raise RuntimeInputError(f"labels must be one class or a flat sequence, got an array of shape {list(labels.shape)}")
            if len(labels) != n:
                raise RuntimeInputError(f"got {len(labels)} labels for {n} images")
            if labels.dtype.kind in "iu":  # the common case, checked without a Python loop
                if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
                    bad = labels[(labels < 0) | (labels >= self.num_classes)][0]
                    raise RuntimeInputError(f"label {int(bad)} out of range: this model has classes 0..{self.num_classes - 1}")
                return labels.astype(np.int64)
            items = labels.tolist()
        elif isinstance(labels, (list, tuple, range)):
            items = labels
        else:
            raise RuntimeInputError(f"labels must be a class index or name, or a list of them, got {type(labels).__name__}")
        try:
            count = len(items)
        except OverflowError:  # range(10**30)
            count = -1
        if count != n:
            raise RuntimeInputError(f"got {count if count >= 0 else 'too many'} labels for {n} images")
        return np.fromiter((self._label_index(x) for x in items), dtype=np.int64, count=n)

    def _generate_batch(self, z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        feed = {"z": z}
        if labels is not None:
            feed["label"] = labels
        return self._run(feed)

    def run_raw(self, z: Any, labels: Any = None, batch_size: int = MAX_BATCH) -> np.ndarray:
        """float32 ``[N, C, H, W]`` in [-1, 1] from noise ``z`` ``[N, latent_dim]`` (and ``labels`` ``[N]``,
        required for a conditional model). NaN and infinity are refused."""
        self._require("generate")
        batch_size = whole("batch_size", batch_size, 1)
        z = real_array("z", z, (None, self.latent_dim), lambda n: self._check_result_size(
            n, 4 * self.channels * self.height * self.width, "len(z)"))
        n = len(z)
        if self.num_classes and labels is None:
            raise RuntimeInputError(f"this model is conditional: run_raw needs labels (int64 [N], 0..{self.num_classes - 1})")
        lab = self._labels(n, labels)
        out = np.empty((n, self.channels, self.height, self.width), np.float32)
        for i in range(0, n, batch_size):
            out[i : i + batch_size] = self._generate_batch(z[i : i + batch_size], None if lab is None else lab[i : i + batch_size])
        return out

    def generate(self, n: int, labels: Any = None, seed: int | None = None, *, as_pil: bool = False,
                 batch_size: int = MAX_BATCH, truncation: float | None = None):
        """``n`` images as uint8 ``[n, H, W, C]`` (or a list of PIL images with ``as_pil=True``).

        ``labels``: one class (index or name) for all, a sequence of ``n``, or None (cycles
        through the classes for a conditional model). ``seed`` (a non-negative integer) fixes
        the noise. Noise is drawn and run ``batch_size`` images at a time, so memory holds the
        result and one batch; one call returns at most ``MAX_RESULT_BYTES`` of images.
        ``truncation``: psi for files with a truncation input (stylegan); None = the file's 1.
        """
        self._require("generate")
        n = whole("n", n, 1)
        batch_size = whole("batch_size", batch_size, 1)
        as_pil = flag("as_pil", as_pil)
        rng = seeded_rng(seed)
        self._check_result_size(n, self.channels * self.height * self.width, "n")
        lab = self._labels(n, labels)
        images = np.empty((n, self.height, self.width, self.channels), np.uint8)
        for i in range(0, n, batch_size):
            k = min(batch_size, n - i)
            # drawn per batch: the same stream as one (n, latent_dim) draw, without holding it all
            z = rng.standard_normal((k, self.latent_dim)).astype(np.float32)
            lab_k = None if lab is None else lab[i : i + k]
            if truncation is None:
                raw = self._generate_batch(z, lab_k)
            else:  # the file's optional truncation input (gankit.runtime.latent checks it has one)
                from gankit.runtime.latent import run_latent

                raw = run_latent(self, z, lab_k, truncation=truncation, batch_size=k)
            images[i : i + k] = nchw_to_hwc_uint8(raw)
        return pil_images(images) if as_pil else images

    def mix(self, rows: int = 4, cols: int = 6, **options: Any) -> np.ndarray:
        """Style-mixing grid (coarse styles from the rows, fine from the columns): see :func:`gankit.runtime.latent.mix`."""
        from gankit.runtime.latent import mix

        return mix(self, rows, cols, **options)

    def interpolate(self, frames: int = 48, **options: Any) -> np.ndarray:
        """A smooth latent walk, uint8 ``[frames, H, W, C]``: see :func:`gankit.runtime.latent.interpolate`."""
        from gankit.runtime.latent import interpolate

        return interpolate(self, frames, **options)

    # -- inpaint -------------------------------------------------------------------------
    def run_raw_inpaint(self, images: Any, masks: Any, batch_size: int = MAX_BATCH) -> np.ndarray:
        """float32 NCHW in [-1, 1] from images NCHW in [-1, 1] and masks N1HW in [0, 1] (1 = missing).
        Values outside those ranges, NaN and infinity are refused."""
        self._require("inpaint")
        batch_size = whole("batch_size", batch_size, 1)
        c, h, w = self.channels, self.height, self.width
        images = real_array("images", images, (None, c, h, w),
                             lambda n: self._check_result_size(n, 4 * c * h * w, "len(images)"))
        masks = real_array("masks", masks, (len(images), 1, h, w))
        in_range("images", images, -1.0, 1.0)
        in_range("masks", masks, 0.0, 1.0)
        out = np.empty((len(images), c, h, w), np.float32)
        for i in range(0, len(images), batch_size):
            m = masks[i : i + batch_size]
            out[i : i + batch_size] = self._run({"image": images[i : i + batch_size] * (1 - m), "mask": m})
        return out

    def inpaint(self, image: Any, mask: Any, *, as_pil: bool = False, batch_size: int = 64):
        """Fill the masked pixels of one image of any size.

        ``image``: a PIL image of any mode, or an array ``[H, W]`` / ``[H, W, C]`` (C = 1, 3 or 4)
        whose dtype says its range: uint8 0..255, uint16 0..65535, float in [0, 1] (other
        integer dtypes must hold 0..255). The result has the same dtype and layout (an
        ``[H, W]`` array gives ``[H, W]``; a PIL image gives ``[H, W, C]``: ``I;16`` uint16,
        ``F`` float32, ``LA``/``RGBA``/transparent palette images RGBA).
        ``mask``: ``[H, W]`` bool/integer/float array or PIL image; true, nonzero (0/1 masks of
        any integer type), else above 127 (8-bit) or above half range (uint16, float) = missing.
        Known pixels come back unchanged (float64 ones too: a result in another dtype than the
        runtime's uint8, uint16 or float32 is converted back, and known pixels copied from the
        caller's own array). Images larger than the model are processed in overlapping model-sized
        tiles (only tiles that touch a hole are run; overlapping predictions are averaged);
        smaller ones are padded by reflection. A colour image through a grayscale model is
        restored channel by channel; alpha passes through untouched.
        """
        from gankit.runtime.tiles import inpaint_any_size

        self._require("inpaint")
        batch_size = whole("batch_size", batch_size, 1)
        as_pil = flag("as_pil", as_pil)
        back = caller_dtype(image)

        def check_size(h: int, w: int, c: int) -> None:  # image, prediction and result in float32
            if not fits(h * w, 4 * max(c, self.channels) * 3, MAX_RESULT_BYTES):
                raise RuntimeInputError(f"a {w}x{h} image exceeds what one inpaint call may hold "
                                        f"({MAX_RESULT_BYTES >> 30} GiB); inpaint it in parts")

        check_size(*image_shape(image))  # before as_image's copy: a huge view must not be converted first
        img = as_image(image)
        check_size(*img.shape)  # inputs with no shape of their own (lists)
        flat = not is_pil(image) and np.ndim(image) == 2  # [H, W] in, [H, W] out, as restore()
        msk = as_mask(mask)
        if msk.shape != img.shape[:2]:
            raise RuntimeInputError(f"mask is {msk.shape[1]}x{msk.shape[0]} but image is {img.shape[1]}x{img.shape[0]}; they must match")
        alpha = img[..., 3] if img.shape[2] == 4 else None
        rgb = img[..., :3] if img.shape[2] == 4 else img
        encode, decode = CODECS[rgb.dtype.name]

        def fill(a: np.ndarray) -> np.ndarray:
            return decode(inpaint_any_size(self, encode(a), msk, batch_size))

        if self.channels == 1 and rgb.shape[2] == 3:
            out = np.concatenate([fill(rgb[..., c : c + 1]) for c in range(3)], axis=2)
        elif self.channels == 3 and rgb.shape[2] == 1:
            out = fill(np.repeat(rgb, 3, axis=2)).mean(axis=2, keepdims=True)
            out = out.astype(np.float32) if rgb.dtype == np.float32 else \
                np.clip(np.rint(out), 0, np.iinfo(rgb.dtype).max).astype(rgb.dtype)
        else:
            out = fill(rgb)
        out = np.where(msk[..., None], out, rgb)  # known pixels exactly as given
        if alpha is not None:
            out = np.concatenate([out, alpha[..., None]], axis=2)
        if back is not None:  # the caller's dtype, known pixels and all of alpha from the caller's own array
            given = np.asarray(image).reshape(out.shape)
            out = np.where(msk[..., None], out.astype(back), given)
            if alpha is not None:
                out[..., 3] = given[..., 3]
        if as_pil:
            return pil_images(out[None])[0]
        return out[..., 0] if flat else out

    # -- restore -------------------------------------------------------------------------
    def run_raw_restore(self, images: Any, batch_size: int = MAX_BATCH) -> np.ndarray:
        """float32 ``[N, C, s*H, s*W]`` in [-1, 1] from images ``[N, C, H, W]`` in [-1, 1], H and W
        multiples of ``size_multiple`` (no tiling, no padding: the graph as it is)."""
        self._require("restore")
        batch_size = whole("batch_size", batch_size, 1)
        c, m, s = self.channels, self.size_multiple, self.scale
        a = asarray("images", images)
        if a.ndim != 4 or a.shape[1] != c:
            raise RuntimeInputError(f"images must have shape [N, {c}, H, W], got {list(a.shape)}")
        n, _, h, w = a.shape
        if h < 1 or w < 1 or h % m or w % m:
            raise RuntimeInputError(f"images are {h}x{w}; this model needs H and W to be positive multiples of {m}")
        self._check_restore_size(n, h, w, "len(images)")
        images = real_array("images", a, (None, c, h, w))
        in_range("images", images, -1.0, 1.0)
        out = np.empty((n, c, s * h, s * w), np.float32)
        for i in range(0, n, batch_size):
            out[i : i + batch_size] = self._run_restore(images[i : i + batch_size])
        return out

    def _run_restore(self, batch: np.ndarray) -> np.ndarray:
        """One engine call on a tile batch; the output must be exactly ``scale`` times larger."""
        out = self._run({"image": batch})
        n, c, h, w = batch.shape
        want = (n, c, self.scale * h, self.scale * w)
        if out.shape != want:
            raise ModelFormatError(f"{self.path} gave {list(out.shape)} for input {list(batch.shape)}; "
                                   f"its gankit.scale {self.scale} promises {list(want)}")
        return out

    def _check_restore_size(self, n: int, h: int, w: int, what: str) -> None:
        s = self.scale
        if not fits(n * h * w, 4 * self.channels * s * s, MAX_RESULT_BYTES):
            raise RuntimeInputError(f"{what}={n} images of {h}x{w} restored x{s} exceed {MAX_RESULT_BYTES >> 30} GiB "
                                    "in one call; split the request")

    def restore(self, image: Any, tile: int | None = None, tile_pad: int | None = None, *,
                batch_size: int = RESTORE_BATCH, as_pil: bool | None = None):
        """Restore one image of any size (upscaled ``scale`` times for super-resolution models).

        ``image``: a PIL image of any mode, or an array ``[H, W]`` / ``[H, W, C]`` (C = 1, 3 or 4)
        whose dtype says its range: uint8 0..255, uint16 0..65535, float in [0, 1] (other
        integer dtypes must hold 0..255). The result has the same dtype and channel layout with
        H and W times ``scale`` (``[H, W]`` gives ``[sH, sW]``); a PIL image gives a PIL image (``as_pil`` overrides).
        ``tile``: the side, in input pixels, of the tiles the image is cut into (default 256; 0
        = the whole image in one run); each tile runs with ``tile_pad`` pixels of neighbouring
        context per side (default 16, reflected at the image border) and only its own region of
        the output is kept, so tiles meet without seams where ``tile_pad`` covers the model's
        receptive field. For a model with ``size_multiple`` m, the image is extended to a multiple
        of m and tile and tile_pad are rounded up to multiples of m, so every tile sees the model's
        m x m block grid where a whole-image run does. ``batch_size``: model rows per call. A colour
        image through a grayscale model is restored channel by channel; a gray image through a
        colour model as gray RGB, then averaged back; alpha passes through (resized bicubically
        when ``scale`` > 1). A model loaded at bf16 (OpenVINO's automatic
        precision on CPUs with native bf16) keeps about 8 significant bits, so load with
        ``precision="f32"`` to restore 16-bit or float images at their depth, as ``gankit
        restore`` does.
        """
        from gankit.runtime.tiles import resize_plane, restore_any_size, restore_geometry

        self._require("restore")
        tile = RESTORE_TILE if tile is None else whole("tile", tile, 0, MAX_SIDE)
        tile_pad = RESTORE_TILE_PAD if tile_pad is None else whole("tile_pad", tile_pad, 0, MAX_TILE_PAD)
        batch_size = whole("batch_size", batch_size, 1, MAX_BATCH)
        pil_in = is_pil(image)
        as_pil = pil_in if as_pil is None else flag("as_pil", as_pil)
        s = self.scale

        def check_size(h: int, w: int, c: int) -> None:  # the float32 result
            if not fits(h * w, 4 * s * s * max(c, self.channels), MAX_RESULT_BYTES):
                raise RuntimeInputError(f"a {w}x{h} image restored x{s} exceeds the {MAX_RESULT_BYTES >> 30} GiB one "
                                        "call may return; restore it in parts")

        check_size(*image_shape(image))  # before as_image's copy: a huge float64 view must not be converted first
        back = caller_dtype(image)
        img = as_image(image)
        check_size(*img.shape)  # inputs with no shape of their own (lists)
        flat = not pil_in and img.ndim == 3 and np.ndim(image) == 2  # [H, W] in, [sH, sW] out
        h, w = img.shape[:2]
        # context beyond the image's own side is only the image reflected again and again; it
        # grew every window (a tile_pad of 1024 on a 20x30 image asked for 2055^2 windows and
        # the OOM killer ended the process)
        tile_pad = min(tile_pad, max(h, w))
        geometry = restore_geometry(h, w, tile, tile_pad, self.size_multiple)
        wh, ww = geometry.window
        # model rows per call: a gray model takes each colour channel as a row of its own
        per_window = img.shape[2] - (img.shape[2] == 4) if self.channels == 1 else 1
        rows = min(max(batch_size, per_window), geometry.count * per_window)
        if not fits(rows * wh * ww, 4 * s * s * self.channels, MAX_RESULT_BYTES):
            raise RuntimeInputError(f"{rows} windows of {wh}x{ww} (tile={tile}, tile_pad={tile_pad}) restored x{s} "
                                    f"exceed the {MAX_RESULT_BYTES >> 30} GiB one model call may return; "
                                    "use a smaller tile or batch_size")
        alpha = img[..., 3] if img.shape[2] == 4 else None
        rgb = img[..., :3] if img.shape[2] == 4 else img
        encode, decode = CODECS[rgb.dtype.name]

        def run(x: np.ndarray) -> np.ndarray:
            return decode(restore_any_size(self._run_restore, encode(x), channels=self.channels, scale=s, tile=tile,
                                           pad=tile_pad, multiple=self.size_multiple, batch_size=batch_size))

        if self.channels == 3 and rgb.shape[2] == 1:
            out = run(np.repeat(rgb, 3, axis=2)).mean(axis=2, keepdims=True)
            out = out.astype(np.float32) if rgb.dtype == np.float32 else \
                np.clip(np.rint(out), 0, np.iinfo(rgb.dtype).max).astype(rgb.dtype)
        else:  # a 1-channel model takes each colour channel as a batch row (restore_any_size)
            out = run(rgb)
        if alpha is not None:
            out = np.concatenate([out, resize_plane(alpha, s)[..., None]], axis=2)
        if back is not None:
            out = out.astype(back)
        if as_pil:
            return pil_images(out[None])[0]
        return out[..., 0] if flat else out


__all__ = ["load", "GankitModel", "default_providers", "BACKENDS", "MAX_BATCH", "MAX_RESULT_BYTES", "RESTORE_TILE",
           "RESTORE_TILE_PAD"]
