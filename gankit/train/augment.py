"""Differentiable augmentation (DiffAugment, Zhao et al. 2020), written for gankit.

The same random transform family is applied to every image the discriminator sees, real
and generated, and gradients flow through it to the generator, so D cannot memorise the
small training set yet G is never rewarded for producing augmented-looking images.
Policies: ``color`` (brightness, saturation, contrast), ``translation`` (shift up to 1/8
of the side, zero fill), ``cutout`` (zero one square of half the side). Randomness comes
from an explicit ``torch.Generator`` so training stays deterministic and resumable.
"""

from __future__ import annotations

from gankit.errors import UsageError

POLICIES = ("color", "translation", "cutout")


def parse_policy(spec: str | bool | None) -> tuple[str, ...]:
    """``"color,translation"`` -> ("color", "translation"); ``true``/``all`` -> all three."""
    if spec in (None, False, "", "none", "off", "false", 0):
        return ()
    if spec in (True, "all", "true", "on", 1):
        return POLICIES
    parts = tuple(p.strip() for p in str(spec).split(",") if p.strip())
    bad = [p for p in parts if p not in POLICIES]
    if bad:
        raise UsageError(f"unknown --diffaug policy {', '.join(bad)}; use any of {', '.join(POLICIES)} (comma-separated)")
    return parts


def _u(n, rng, device, dtype, rows):
    import torch

    total, lo = rows
    return torch.rand(total, 1, 1, 1, generator=rng)[lo : lo + n].to(device, dtype)


def _randint(low, high, n, rng, rows):
    import torch

    total, lo = rows
    return torch.randint(low, high, (total, 1, 1), generator=rng)[lo : lo + n]


def diff_augment(x, policy: tuple[str, ...], rng, rows: tuple[int, int] | None = None):
    """Augment a batch ``x`` [N, C, H, W] in [-1, 1]; differentiable with respect to ``x``.

    ``rows = (total, first)``: ``x`` is rows ``first..first+N`` of a global batch of ``total``
    (data-parallel training): the random draws are made for all ``total`` images and sliced,
    so an image is augmented the same way whatever the number of ranks.
    """
    import torch

    if not policy:
        return x
    n, c, h, w = x.shape
    rows = rows or (n, 0)
    dev, dt = x.device, x.dtype
    if "color" in policy:
        x = x + (_u(n, rng, dev, dt, rows) - 0.5)  # brightness
        if c > 1:
            mean = x.mean(dim=1, keepdim=True)
            x = (x - mean) * (_u(n, rng, dev, dt, rows) * 2) + mean  # saturation
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * (_u(n, rng, dev, dt, rows) + 0.5) + mean  # contrast
    if "translation" in policy:
        sh, sw = max(1, h // 8), max(1, w // 8)
        dy = _randint(-sh, sh + 1, n, rng, rows).to(dev)
        dx = _randint(-sw, sw + 1, n, rng, rows).to(dev)
        ys = torch.arange(h, device=dev).view(1, h, 1) + dy  # source row for each target row
        xs = torch.arange(w, device=dev).view(1, 1, w) + dx
        valid = ((ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)).unsqueeze(1).to(dt)
        idx = (ys.clamp(0, h - 1) * w + xs.clamp(0, w - 1)).view(n, 1, h * w).expand(n, c, h * w)
        x = x.flatten(2).gather(2, idx).view(n, c, h, w) * valid
    if "cutout" in policy:
        ch, cw = max(1, h // 2), max(1, w // 2)
        y0 = _randint(0, h - ch + 1, n, rng, rows).to(dev)
        x0 = _randint(0, w - cw + 1, n, rng, rows).to(dev)
        ys = torch.arange(h, device=dev).view(1, h, 1)
        xs = torch.arange(w, device=dev).view(1, 1, w)
        inside = (ys >= y0) & (ys < y0 + ch) & (xs >= x0) & (xs < x0 + cw)
        x = x * (~inside).unsqueeze(1).to(dt)
    return x
