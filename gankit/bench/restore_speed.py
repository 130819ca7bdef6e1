"""Restore throughput on a whole photo: what ``gankit restore`` does to a 512x512 image (the
runtime, its tiles and their context included), against the same generator in PyTorch on the
same photo, and against OpenCV's bicubic resize as the floor; plus the seams the tiles leave.

The photo is scikit-image's ``astronaut`` (512x512 RGB, never in gankit's training data); a x2
model makes it 1024x1024. Speeds are output megapixels per second; times are medians of
``repeats`` calls after one warm-up (none in a smoke run). PyTorch runs the generator the exporter saw (BatchNorm
folded, eval mode) eager and channels-last in fp32 (and bf16 autocast where the CPU has bf16),
each on the whole photo in one call and through the runtime's own tiling code; the best of all
of them is the baseline of ``gankit restore``'s default path (``auto``: OpenVINO, whose
automatic precision is bf16 on such CPUs), the best fp32 way that of ``--backend onnxruntime``
(fp32), so no ratio flatters the file by picking PyTorch's worse layout, tiling or precision. The runs are sequential (a few seconds each), not
interleaved as the per-call timings are."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np


def median_seconds(fn: Callable[[], Any], repeats: int, warmup: bool = True) -> float:
    if warmup:  # session arenas, first-run allocations
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_photo(channels: int) -> np.ndarray:
    from skimage import data

    photo = data.astronaut()  # 512x512 RGB uint8
    return np.asarray(photo.mean(axis=2).round(), np.uint8) if channels == 1 else photo


def seams(tiled: np.ndarray, whole: np.ndarray, scale: int, tile: int) -> dict[str, int]:
    """Largest |tiled - untiled| (uint8 levels) on the two rows/columns either side of each tile
    border, against the largest elsewhere: a seam shows as a border maximum above the inside one.
    ``tiled`` and ``whole`` are the same photo restored with tiles of ``tile`` and without."""
    tiled, whole = tiled.astype(np.int16), whole.astype(np.int16)
    diff = np.abs(tiled - whole).max(axis=-1) if tiled.ndim == 3 else np.abs(tiled - whole)
    photo = diff.shape[0] // scale, diff.shape[1] // scale
    border = np.zeros(diff.shape, bool)
    s = scale
    for k in range(tile, photo[0], tile):
        border[s * k - 1 : s * k + 1] = True
    for k in range(tile, photo[1], tile):
        border[:, s * k - 1 : s * k + 1] = True
    return {"seam_max_diff_at_borders": int(diff[border].max()) if border.any() else -1,
            "seam_max_diff_inside": int(diff[~border].max())}


def torch_rows(module, m, photo: np.ndarray, tile: int, pad: int, repeats: int, out_px: int,
               warmup: bool = True) -> dict[str, Any]:
    """The generator in PyTorch on the same photo: fp32 eager and channels-last, and bf16
    autocast channels-last where the CPU computes bf16 natively, each whole and tiled."""
    import copy

    import torch

    from gankit.runtime.tiles import restore_any_size
    from gankit.sysinfo import cpu_has_bf16

    hwc = photo.astype(np.float32) / 127.5 - 1  # the runtime's encoding: [-1, 1]
    hwc = hwc[:, :, None] if hwc.ndim == 2 else hwc
    rows: dict[str, Any] = {}
    variants = [("eager", torch.contiguous_format, False), ("channels_last", torch.channels_last, False)]
    if cpu_has_bf16():
        variants.append(("bf16_channels_last", torch.channels_last, True))
    for layout, fmt, bf16 in variants:
        net = copy.deepcopy(module).to(memory_format=fmt)  # the caller's module stays as it was

        def run_batch(x: np.ndarray, net=net, fmt=fmt, bf16=bf16) -> np.ndarray:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                t = torch.from_numpy(np.ascontiguousarray(x, np.float32)).contiguous(memory_format=fmt)
                return net(image=t).float().contiguous().numpy()

        whole = median_seconds(lambda: run_batch(hwc.transpose(2, 0, 1)[None]), repeats, warmup)
        tiled = median_seconds(lambda: restore_any_size(run_batch, hwc, channels=m.channels, scale=m.scale, tile=tile,
                                                        pad=pad, multiple=m.size_multiple), repeats, warmup)
        rows[f"torch_{layout}_untiled_s"] = round(whole, 3)
        rows[f"torch_{layout}_tiled_s"] = round(tiled, 3)
    fp32 = {k: v for k, v in rows.items() if "bf16" not in k}
    best = min((v, k) for k, v in fp32.items())
    rows["torch_best"] = best[1].removeprefix("torch_").removesuffix("_s")
    rows["torch_best_s"] = best[0]
    rows["torch_best_mp_per_s"] = round(out_px / best[0] / 1e6, 2)
    any_best = min((v, k) for k, v in rows.items() if k.endswith("tiled_s"))
    rows["torch_best_any"] = any_best[1].removeprefix("torch_").removesuffix("_s")
    rows["torch_best_any_s"] = any_best[0]
    return rows


def restore_throughput(path: Path, *, threads: int, repeats: int = 3, module=None, tile: int | None = None,
                       tile_pad: int | None = None, warmup: bool = True) -> dict[str, Any]:
    """One record: ``gankit restore``'s code path on the photo with its default backend
    (``auto``: OpenVINO where installed, on the CPU) and with ``--backend onnxruntime`` (fp32),
    untiled, OpenCV bicubic, and with ``module`` (the exporter's view of the generator)
    PyTorch's best ways; seams of the default path."""
    import cv2

    import gankit.runtime as gr
    from gankit.runtime.engines import openvino_installed

    # everything on the CPU: on a GPU machine "auto" would put the file on CUDA against PyTorch on the CPU
    ort = gr.load(path, threads=threads, providers=["CPUExecutionProvider"])
    default = ort
    if openvino_installed():  # what "auto" picks on a CPU ("auto" itself would pick CUDA on a GPU machine)
        try:
            default = gr.load(path, threads=threads, backend="openvino")
        except gr.ModelFormatError:  # as "auto" falls back
            default = ort
    m = default
    photo = bench_photo(m.channels)
    tile = gr.model.RESTORE_TILE if tile is None else tile
    pad = gr.model.RESTORE_TILE_PAD if tile_pad is None else tile_pad
    out_px = photo.shape[0] * photo.shape[1] * m.scale**2
    # the timed calls' own results are what the seam check compares
    restored: dict[int, np.ndarray] = {}

    def restore(t: int) -> None:
        restored[t] = m.restore(photo, tile=t, tile_pad=pad)

    tiled_s = median_seconds(lambda: restore(tile), repeats, warmup)
    whole_s = median_seconds(lambda: restore(0), repeats, warmup)
    cv2.setNumThreads(threads)
    size = (photo.shape[1] * m.scale, photo.shape[0] * m.scale)
    bicubic_s = median_seconds(lambda: cv2.resize(photo, size, interpolation=cv2.INTER_CUBIC), max(repeats, 20))
    rec: dict[str, Any] = {
        "scale": m.scale, "input": list(photo.shape), "threads": threads, "tile": tile, "tile_pad": pad,
        "backend": m.backend, "providers": m.providers,
        "gankit_restore_s": round(tiled_s, 3), "gankit_restore_mp_per_s": round(out_px / tiled_s / 1e6, 2),
        "runtime_untiled_s": round(whole_s, 3), "runtime_untiled_mp_per_s": round(out_px / whole_s / 1e6, 2),
        "opencv_bicubic_s": round(bicubic_s, 5), "opencv_bicubic_mp_per_s": round(out_px / bicubic_s / 1e6, 1),
    }
    if default is not ort:  # the same command with `--backend onnxruntime`: fp32, the exporter's numbers
        ort_s = median_seconds(lambda: ort.restore(photo, tile=tile, tile_pad=pad), repeats, warmup)
        rec.update(onnxruntime_restore_s=round(ort_s, 3), onnxruntime_restore_mp_per_s=round(out_px / ort_s / 1e6, 2))
    if module is not None:
        rec.update(torch_rows(module, m, photo, tile, pad, repeats, out_px, warmup))
        # against PyTorch's best in any precision: the default path's precision may be bf16
        # (with no bf16 on the CPU, PyTorch's best in any precision is its best fp32)
        rec["ratio_vs_torch"] = round(rec["torch_best_any_s"] / rec["gankit_restore_s"], 2)  # the reported times
        if "onnxruntime_restore_s" in rec:  # fp32 against fp32
            rec["onnxruntime_ratio_vs_torch"] = round(rec["torch_best_s"] / rec["onnxruntime_restore_s"], 2)
    rec.update(seams(restored[tile], restored[0], m.scale, tile))
    return rec
