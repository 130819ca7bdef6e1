"""``gankit project``: find the style vector w whose image reproduces a given picture.

The optimiser follows StyleGAN2's projector (Karras et al. 2020, appendix D): start from the
average w, optimise it with Adam under a learning rate that warms up and then falls along a
cosine, and add exploration noise to w, scaled by the spread of random w's, that fades out
over the first three quarters of the steps. Without downloadable perceptual weights (LPIPS,
VGG) the distance is the pixel MSE, which suits small images such as digits; the result is a
w, not a pixel copy, so everything the generator does with styles (mixing, truncation) works
on it. ``w+`` (``wplus``) gives each layer its own w: closer reconstructions, less typical w's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from gankit.errors import UsageError


@dataclass
class Projection:
    w: Any  # torch.Tensor [num_layers, w_dim] (every row the same unless w+)
    image: Any  # torch.Tensor [1, C, H, W] in [-1, 1]
    psnr_db: float  # of the projection against the target
    start_psnr_db: float  # of the average w's image against the target


def psnr(a, b) -> float:
    """PSNR in dB of two [-1, 1] tensors, on the [0, 1] scale."""
    mse = float(((a - b) / 2).pow(2).mean())
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def fit_image(pixels: np.ndarray, channels: int, height: int, width: int):
    """A [1, C, H, W] float tensor in [-1, 1] from uint8 pixels [h, w, c] (any size and channel count):
    resized with Lanczos to the generator's size, colour to grey by luminance, grey repeated to colour."""
    import torch
    from PIL import Image

    if channels not in (1, 3):
        raise UsageError(f"project supports grey or colour generators, not {channels} channels")
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 3):
        raise UsageError(f"expected a grey or colour image, got pixels of shape {pixels.shape}")
    im = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
    im = im.convert("L" if channels == 1 else "RGB")
    if im.size != (width, height):
        im = im.resize((width, height), Image.Resampling.LANCZOS)
    a = np.asarray(im, np.float32) / 127.5 - 1
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(a))[None]


def project(space, target, *, steps: int = 300, lr: float = 0.1, wplus: bool = False, seed: int = 0,
            noise_scale: float = 0.05) -> Projection:
    """Optimise w so that ``space.synthesize`` reproduces ``target`` [1, C, H, W] in [-1, 1]."""
    import torch

    if steps < 1:
        raise UsageError(f"--steps must be at least 1, got {steps}")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        samples = space.sample_w(2000, gen)
        w_std = float(((samples - space.w_avg) ** 2).sum(1).mean().sqrt())  # spread of w, for the noise
        start = space.synthesize(space.w_avg.expand(1, space.num_layers, -1))
    layers = space.num_layers if wplus else 1
    w = space.w_avg.detach().clone().expand(1, layers, -1).contiguous().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr, betas=(0.9, 0.999))
    for t in range(steps):
        frac = t / steps
        # warm up over the first 5%, cosine down over the last 25% (StyleGAN2's projector schedule)
        ramp = min(1.0, (1.0 - frac) / 0.25)
        ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
        ramp *= min(1.0, frac / 0.05)
        for g in opt.param_groups:
            g["lr"] = lr * ramp
        noise = w_std * noise_scale * max(0.0, 1.0 - frac / 0.75) ** 2
        w_in = w + torch.randn(w.shape, generator=gen) * noise
        img = space.synthesize(w_in.expand(1, space.num_layers, -1))
        loss = (img - target).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        ws = w.detach().expand(1, space.num_layers, -1)
        image = space.synthesize(ws)
    return Projection(ws[0].clone(), image, psnr(image, target), psnr(start, target))


def variations(space, w, n: int, seed: int = 0, crossover: int | None = None):
    """Images [n, C, H, W] with the projected w's coarse styles (layers below ``crossover``,
    default half the layers) and random w's fine styles: the picture's pose and shape, new strokes."""
    import torch

    cut = space.num_layers // 2 if crossover is None else crossover
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        other = space.sample_w(n, gen)[:, None, :].expand(n, space.num_layers, -1)
        mine = w[None].expand(n, -1, -1)
        layer = torch.arange(space.num_layers).view(1, -1, 1)
        return space.synthesize(torch.where(layer < cut, mine, other))
