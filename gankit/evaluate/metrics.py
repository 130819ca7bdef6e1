"""Metric functions: Frechet distance, class entropy, PSNR, SSIM. numpy/scipy/scikit-image."""

from __future__ import annotations

import warnings

import numpy as np


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets ``[N, D]`` (Heusel et al. 2017)."""
    from scipy import linalg

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # a small ridge keeps sqrtm well defined when some features are constant (dead ReLUs)
    eps = np.eye(len(s1)) * 1e-6
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
    covmean = np.real(covmean)
    fd = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
    return max(fd, 0.0)


def class_entropy(predictions: np.ndarray, num_classes: int) -> float:
    """Normalised entropy of the predicted-class histogram: 1.0 = every class equally often,
    0.0 = one class only. (Not the "coverage" of Naeem et al. 2020, which measures how much of
    the real distribution the samples reach; records before this name used the key ``coverage``.)"""
    if num_classes <= 1:
        return 1.0
    counts = np.bincount(np.asarray(predictions, dtype=np.int64), minlength=num_classes).astype(np.float64)
    p = counts / max(counts.sum(), 1)
    nz = p[p > 0]
    return max(0.0, float(-(nz * np.log(nz)).sum() / np.log(num_classes)))  # max: no "-0.0"


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB (scikit-image's, in float64); ``inf`` for identical or
    empty inputs, where scikit-image would divide by zero."""
    from skimage.metrics import peak_signal_noise_ratio

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.size == 0 or np.array_equal(a, b):
        return float("inf")
    return float(peak_signal_noise_ratio(a, b, data_range=data_range))
