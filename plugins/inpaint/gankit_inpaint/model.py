"""Inpainting generator (a small U-Net) and patch discriminator.

Generator: input = [image * (1 - mask), mask] -> 3x3 conv -> two stride-2 4x4 convs
(H/4) -> dilated 3x3 convs (receptive field covers the whole 28x28 / most of a 64x64
patch) -> two transposed-conv upsamplings with skip connections -> 3x3 conv -> tanh.
Convolutions are followed by BatchNorm (folded away at export).
The output is composited, ``mask * generated + (1 - mask) * image``, inside the model, so
the exported ONNX file keeps known pixels exactly. Only plain convolutions: it exports to
ONNX and quantises.

With ``coarse_fill="biharmonic"`` the hole is first filled by a classical, exportable
interpolation (a push-pull pyramid, Gortler et al. 1996, whose levels are then smoothed by
gradient steps on the thin-plate energy), and the U-Net sees that fill and predicts a residual on top of
it: it starts from a smooth guess and learns the texture and edges that interpolation
cannot make. On photo patches, where a hole mostly continues its surroundings, this is what
lifts the GAN above the biharmonic baseline (README).

Discriminator: a PatchGAN (Isola et al. 2017) on [image, mask]: one logit per patch.
"""

from __future__ import annotations

import torch
from torch import nn


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


def _block(conv: nn.Module, cout: int) -> nn.Sequential:
    """conv -> BatchNorm -> LeakyReLU. BatchNorm keeps activations at a fixed scale (without it
    they grew layer by layer until training blew up); the exporter folds it into the conv, so it
    costs nothing at inference."""
    return nn.Sequential(conv, nn.BatchNorm2d(cout), _act())


COARSE_FILLS = ("none", "biharmonic")


def _biharmonic_steps(filled, mask, steps, tau=1.0):
    """Gradient steps on the thin-plate energy |L u|^2 inside ``mask`` (mask may be soft).

    ``L u = box3x3(u) - u`` is a 9-point Laplacian (borders average only the pixels that
    exist), so ``L(L u)`` is a biharmonic operator; its eigenvalues lie in [0, 16/9], so a
    step of 1 is stable. Built from AveragePool, which every ONNX backend runs fast (a 5x5
    depthwise stencil ran several times slower in onnxruntime, RESULTS.md). Pixels outside the hole never
    change. A harmonic fill is flat at the hole's border; this one carries the
    surroundings' gradients and curvature into the hole, like
    ``skimage.restoration.inpaint_biharmonic``.
    """
    import torch.nn.functional as F

    step = tau * mask
    for _ in range(steps):
        lap = F.avg_pool2d(filled, 3, 1, 1, count_include_pad=False) - filled
        filled = filled - step * (F.avg_pool2d(lap, 3, 1, 1, count_include_pad=False) - lap)
    return filled


def push_pull_fill(image: torch.Tensor, mask: torch.Tensor, level_steps: int = 64, final_steps: int = 8) -> torch.Tensor:
    """Fill the holes (``mask`` = 1) of ``image`` from the known pixels around them.

    Push: average known pixels (and their weights) down a 2x2 pyramid until nothing is
    missing. Pull: going back up, each level keeps its own colour where it had known pixels
    and takes the coarser level's colour, bilinearly upsampled, where it did not.

    The pull runs ``level_steps`` thin-plate (biharmonic) smoothing steps on every coarser level of
    4x4 or more (over the pixels that level could not see) and ``final_steps`` at full size:
    a multigrid-style biharmonic fill, where the coarse levels settle the low frequencies
    cheaply. Known pixels are returned unchanged. Only
    pooling, resizing and fixed convolutions: exports to ONNX for any static image size.
    """
    import torch.nn.functional as F

    known = 1.0 - mask
    values, weights = [image * known], [known]
    while min(values[-1].shape[-2:]) > 1:
        # ceil_mode keeps odd sides; the ratio below cancels the pooling's divisor
        values.append(F.avg_pool2d(values[-1], 2, ceil_mode=True))
        weights.append(F.avg_pool2d(weights[-1], 2, ceil_mode=True))
    filled = values[-1] / weights[-1].clamp_min(1e-6)
    for v, w in zip(reversed(values[:-1]), reversed(weights[:-1])):
        up = F.interpolate(filled, size=v.shape[-2:], mode="bilinear", align_corners=False)
        own = v / w.clamp_min(1e-6)
        alpha = (w * 4.0).clamp(max=1.0)  # a pixel backed by a quarter of its cell or more keeps its own colour
        filled = alpha * own + (1 - alpha) * up
        if min(v.shape[-2:]) >= 4 and v.shape[-2:] != image.shape[-2:]:
            filled = _biharmonic_steps(filled, 1 - alpha, level_steps)
    filled = mask * filled + known * image
    return mask * _biharmonic_steps(filled, mask, final_steps) + known * image


def fill_holes(name: str, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The classical fill the U-Net refines: ``none`` (zeros in the hole) or ``biharmonic``
    (multigrid thin-plate: 64 steps on each coarser level, 8 at full size; how it compares with
    scikit-image's ``inpaint_biharmonic`` is in benchmarks/RESULTS.md)."""
    if name == "biharmonic":
        return push_pull_fill(image, mask)
    return image


class InpaintGenerator(nn.Module):
    def __init__(self, channels: int = 1, width: int = 16, dilations: tuple[int, ...] = (1, 2, 4),
                 coarse_fill: str = "none"):
        super().__init__()
        if coarse_fill not in COARSE_FILLS:
            raise ValueError(f"coarse_fill must be one of {', '.join(COARSE_FILLS)}; got {coarse_fill!r}")
        self.coarse_fill = coarse_fill
        w = width
        self.enc1 = nn.Sequential(nn.Conv2d(channels + 1, w, 3, 1, 1), _act())
        self.enc2 = _block(nn.Conv2d(w, 2 * w, 4, 2, 1, bias=False), 2 * w)
        self.enc3 = _block(nn.Conv2d(2 * w, 4 * w, 4, 2, 1, bias=False), 4 * w)
        self.mid = nn.Sequential(*[_block(nn.Conv2d(4 * w, 4 * w, 3, 1, d, dilation=d, bias=False), 4 * w) for d in dilations])
        self.up2 = _block(nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1, bias=False), 2 * w)
        self.dec2 = _block(nn.Conv2d(4 * w, 2 * w, 3, 1, 1, bias=False), 2 * w)
        self.up1 = _block(nn.ConvTranspose2d(2 * w, w, 4, 2, 1, bias=False), w)
        self.dec1 = _block(nn.Conv2d(2 * w, w, 3, 1, 1, bias=False), w)
        self.out = nn.Conv2d(w, channels, 3, 1, 1)
        if coarse_fill != "none":  # start as the interpolation itself; learn only what improves on it
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        known = image * (1 - mask)
        coarse = fill_holes(self.coarse_fill, known, mask)
        e1 = self.enc1(torch.cat([coarse, mask], dim=1))
        e2 = self.enc2(e1)
        h = self.mid(self.enc3(e2))
        h = self.dec2(torch.cat([self.up2(h), e2], dim=1))
        h = self.dec1(torch.cat([self.up1(h), e1], dim=1))
        if self.coarse_fill != "none":  # a residual on top of the interpolation
            generated = torch.clamp(coarse + self.out(h), -1.0, 1.0)
        else:
            generated = torch.tanh(self.out(h))
        return mask * generated + (1 - mask) * image


class PatchDiscriminator(nn.Module):
    def __init__(self, channels: int = 1, width: int = 32, layers: int = 2):
        super().__init__()
        mods, c = [], channels + 1
        for i in range(layers):
            cout = width * 2**i
            mods += [nn.Conv2d(c, cout, 4, 2, 1), _act()]
            c = cout
        mods.append(nn.Conv2d(c, 1, 3, 1, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([image, mask], dim=1))
