"""Pseudo-labels for unconditional training: k-means clusters of the training images.

A conditional GAN learns a multi-modal distribution far better than an unconditional one (its
discriminator compares like with like, and its generator need not morph one mode into another
along a continuous z). Without labels, clusters of the data can stand in for them: the
self-conditioned GAN of Liu et al. (CVPR 2020) clusters the discriminator's features; we
cluster the images once, before training (principal components of the pixels, then k-means),
which is deterministic, cheap, and uses nothing but the training images.

At sampling time nothing changes for the user: the generator reads the cluster from its own
``z`` (the first entry, cut at the normal quantiles of the cluster sizes), so ``z ~ N(0, I)``
picks each cluster as often as it occurs in the data and the exported graph still takes ``z`` only.
"""

from __future__ import annotations

import hashlib

import numpy as np

PCA_DIMS = 50  # principal components kept before k-means
MIN_PER_CLUSTER = 25  # fewer training images per cluster than this: fewer clusters (a small folder)
MAX_VALUES = 1024  # larger images are average-pooled (2x2, 4x4, ...) to at most this many values first
FIT_LIMIT = 10_000  # images used to fit the components and the centroids (all are assigned)
RESTARTS = 4  # k-means runs from different seeds; the tightest is kept

_CACHE: dict[tuple, np.ndarray] = {}


def usable_clusters(k: int, n_images: int) -> int:
    """The cluster count a run gets: ``k``, capped so each cluster has ``MIN_PER_CLUSTER`` images
    on average; 0 (no clusters) when that leaves fewer than 2."""
    k = min(k, n_images // MIN_PER_CLUSTER)
    return k if k >= 2 else 0


def cluster_labels(x_train: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """One cluster index in ``0..k-1`` per image (uint8 NCHW images; deterministic, memoised in
    the process and kept on disk under ``GANKIT_CACHE``: 2.4 s of every gan training process's
    start on mnist5k, machine G)."""
    x = np.ascontiguousarray(x_train)
    key = (hashlib.sha1(x.reshape(-1).view(np.uint8)).hexdigest(), x.shape, k, seed)
    if key not in _CACHE:
        path = _disk_path(key)
        labels = _read_labels(path, len(x), k)
        if labels is None:
            labels = _kmeans(_pooled(x), k, seed)
            _write_labels(path, labels)
        _CACHE[key] = labels
    return _CACHE[key].copy()


def _disk_path(key: tuple):
    """The cache file for ``key``, named by everything the labels depend on: the images, k, the
    seed, this module's constants and the numpy and scipy that computed them."""
    import scipy

    from gankit.fileio import cache_dir

    recipe = repr((key, PCA_DIMS, MAX_VALUES, FIT_LIMIT, RESTARTS, np.__version__, scipy.__version__)).encode()
    return cache_dir("clusters") / f"{hashlib.sha256(recipe).hexdigest()[:24]}.npy"


def _read_labels(path, n: int, k: int) -> np.ndarray | None:
    """The cached labels, or None when absent or not what they should be (then they are recomputed)."""
    try:
        labels = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    ok = labels.shape == (n,) and labels.dtype == np.int64 and (n == 0 or 0 <= labels.min() <= labels.max() < k)
    return labels if ok else None


def _write_labels(path, labels: np.ndarray) -> None:
    from gankit.fileio import atomic_path

    try:
        with atomic_path(path, suffix=".npy") as tmp:
            np.save(tmp, labels, allow_pickle=False)
    except OSError:  # a read-only or full cache: the labels are simply computed again next time
        pass


def _pooled(x: np.ndarray) -> np.ndarray:
    """Images as float rows in [0, 1], average-pooled by a power of 2 to at most MAX_VALUES values
    (k-means groups by overall shape and colour, which a 16x16 thumbnail keeps; MNIST is kept whole)."""
    n, c, h, w = x.shape
    f = 1
    while c * (h // f) * (w // f) > MAX_VALUES and h % (2 * f) == 0 and w % (2 * f) == 0:
        f *= 2
    x = x.astype(np.float32) / 255.0
    if f > 1:
        x = x.reshape(n, c, h // f, f, w // f, f).mean(axis=(3, 5))
    return x.reshape(n, -1)


def _kmeans(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    from scipy.cluster.vq import kmeans2

    rng = np.random.default_rng(seed)
    fit = x[rng.choice(len(x), FIT_LIMIT, replace=False)] if len(x) > FIT_LIMIT else x
    mean = fit.mean(0)
    _, _, vt = np.linalg.svd(fit - mean, full_matrices=False)
    basis = vt[: min(PCA_DIMS, vt.shape[0])].T
    p_fit, p_all = (fit - mean) @ basis, (x - mean) @ basis
    best, best_inertia = None, np.inf
    for r in range(RESTARTS):
        start = _kmeans_pp(p_fit, k, np.random.default_rng([seed, r]))
        centroids, labels = kmeans2(p_fit, start, minit="matrix", iter=30)
        inertia = float(((p_fit - centroids[labels]) ** 2).sum())
        if inertia < best_inertia and len(np.unique(labels)) == k:
            best, best_inertia = centroids, inertia
    if best is None:  # every restart left a cluster empty (many duplicate images)
        raise ValueError(f"k-means found fewer than {k} distinct clusters in this data; use --set clusters=N with a smaller N, or 0")
    d = (p_all**2).sum(1)[:, None] - 2 * p_all @ best.T + (best**2).sum(1)[None, :]
    return d.argmin(1).astype(np.int64)


def _kmeans_pp(data: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding, drawing exactly what scipy's ``kmeans2(minit="++")`` draws (so the
    clusters, and every run trained on them, are unchanged) but keeping each point's distance to
    its nearest chosen centroid as it goes: scipy recomputes the distances to all chosen centroids
    at every pick, O(k^2 n) instead of O(k n), which was 4 of a gan run's first 5 seconds
    (120 clusters of mnist5k: 1.04 s against 0.12 s per restart, machine G)."""
    from scipy.spatial.distance import cdist

    init = np.empty((k, data.shape[1]))
    nearest = None
    for i in range(k):
        if i == 0:
            idx = int(rng.integers(data.shape[0]))
        else:
            d = cdist(init[i - 1 : i], data, metric="sqeuclidean")[0]
            nearest = d if nearest is None else np.minimum(nearest, d)
            idx = int(np.searchsorted((nearest / nearest.sum()).cumsum(), rng.uniform()))
        init[i] = data[idx]
    return init


def slice_starts(sizes) -> np.ndarray:
    """Where each cluster's slice of [0, 1] begins (and, last, where the final one ends): the
    normal CDF of z[:, 0] falls in cluster c's slice [starts[c], starts[c + 1])."""
    return np.concatenate([[0.0], np.cumsum(np.asarray(sizes, dtype=np.float64))])


def cluster_sizes(labels: np.ndarray, k: int) -> list[float]:
    """Fraction of the images in each cluster (what the generator samples them by)."""
    return [round(float(f), 6) for f in np.bincount(labels, minlength=k) / len(labels)]
