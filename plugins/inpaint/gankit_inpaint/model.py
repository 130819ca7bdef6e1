"""Inpainting generator (a small U-Net) and patch discriminator.

Generator: input = [image * (1 - mask), mask] -> 3x3 conv -> two stride-2 4x4 convs
(H/4) -> dilated 3x3 convs (receptive field covers the whole 28x28 / most of a 64x64
patch) -> two transposed-conv upsamplings with skip connections -> 3x3 conv -> tanh. Convolutions are followed by BatchNorm (folded away at export).
The output is composited, ``mask * generated + (1 - mask) * image``, inside the model, so
the exported ONNX file keeps known pixels exactly. Only plain convolutions: it exports to
ONNX and quantises.

Discriminator: a PatchGAN (Isola et al. 2017) on [image, mask]: one logit per patch.
"""

from __future__ import annotations

import torch
from torch import nn


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


def _block(conv: nn.Module, cout: int) -> nn.Sequential:
    """conv -> BatchNorm -> LeakyReLU. BatchNorm keeps activations at a fixed scale (without it
    they grew ~100x per layer and training blew up near step 750); the exporter folds it into
    the conv, so it costs nothing at inference."""
    return nn.Sequential(conv, nn.BatchNorm2d(cout), _act())


class InpaintGenerator(nn.Module):
    def __init__(self, channels: int = 1, width: int = 16, dilations: tuple[int, ...] = (1, 2, 4)):
        super().__init__()
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

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        known = image * (1 - mask)
        e1 = self.enc1(torch.cat([known, mask], dim=1))
        e2 = self.enc2(e1)
        h = self.mid(self.enc3(e2))
        h = self.dec2(torch.cat([self.up2(h), e2], dim=1))
        h = self.dec1(torch.cat([self.up1(h), e1], dim=1))
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
