"""The judge: a small CNN classifier trained on a dataset's train split.

It gives every evaluation two things: a predicted class (conditional accuracy, class
coverage) and a 128-d feature vector (Frechet distance). Training is deterministic (fixed
seed, single data order) and the weights are cached on disk, keyed by the dataset's name,
shape and a hash of its training images, so two evaluations of two models use the very same
judge, identified by the SHA-256 of its weights file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from gankit.data import Dataset, to_float
from gankit.fileio import atomic_path, cache_dir

JUDGE_VERSION = "1"
EPOCHS = 6


def _data_key(dataset: Dataset) -> str:
    h = hashlib.sha256()
    h.update(dataset.x_train.tobytes())
    h.update(dataset.y_train.tobytes())
    c, hh, w = dataset.shape
    return f"{dataset.name.replace('/', '_').replace(':', '_')[-40:]}-{c}x{hh}x{w}-{h.hexdigest()[:12]}-v{JUDGE_VERSION}"


def _build(channels: int, size: int, num_classes: int):
    import torch
    from torch import nn

    class JudgeNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                nn.Flatten(), nn.Linear(64 * 16, 128), nn.ReLU(),
            )
            self.head = nn.Linear(128, num_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.features(x))

    return JudgeNet()


class Judge:
    """A trained judge: ``predict`` and ``features`` on float images in [-1, 1]."""

    def __init__(self, net, path: Path):
        self.net = net.eval()
        self.path = Path(path)
        self.sha256 = hashlib.sha256(self.path.read_bytes()).hexdigest()

    def _run(self, x: np.ndarray, batch: int = 500) -> tuple[np.ndarray, np.ndarray]:
        import torch

        feats, logits = [], []
        with torch.no_grad():
            for i in range(0, len(x), batch):
                t = torch.from_numpy(np.ascontiguousarray(x[i : i + batch], dtype=np.float32))
                f = self.net.features(t)
                feats.append(f.numpy())
                logits.append(self.net.head(f).numpy())
        return np.concatenate(feats).astype(np.float64), np.concatenate(logits)

    def features_and_predictions(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f, logits = self._run(x)
        return f, logits.argmax(1)


def train_judge(dataset: Dataset, seed: int = 0):
    """Train the judge from scratch (deterministic on CPU for a given dataset and seed)."""
    import torch
    import torch.nn.functional as F

    c, h, _ = dataset.shape
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = _build(c, h, max(dataset.num_classes, 1))
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        x = torch.from_numpy(to_float(dataset.x_train))
        y = torch.from_numpy(dataset.y_train)
        g = torch.Generator().manual_seed(seed)
        for _ in range(EPOCHS):
            perm = torch.randperm(len(x), generator=g)
            for i in range(0, len(x), 64):
                idx = perm[i : i + 64]
                xb = x[idx]
                # light augmentation (1-px shifts) so the judge generalises beyond the train pixels
                dx, dy = torch.randint(-1, 2, (2,), generator=g).tolist()
                xb = torch.roll(xb, shifts=(dy, dx), dims=(2, 3))
                loss = F.cross_entropy(net(xb), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    return net.eval()


def load_judge(dataset: Dataset, retrain: bool = False) -> Judge:
    """The cached judge for ``dataset``, trained and written atomically on first use."""
    from safetensors.torch import load_file, save_file

    c, h, _ = dataset.shape
    path = cache_dir("judge") / f"{_data_key(dataset)}.safetensors"
    if path.is_file() and not retrain:
        net = _build(c, h, max(dataset.num_classes, 1))
        try:
            net.load_state_dict(load_file(str(path)))
            return Judge(net, path)
        except Exception:
            pass  # a damaged cache entry: train again
    net = train_judge(dataset)
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp), metadata={"dataset": dataset.name})
    return Judge(net, path)
