"""Adversarial losses. Each maps discriminator logits to a D loss and a G loss.

``bce`` (non-saturating, the default), ``minimax`` (the original saturating form),
``hinge`` and ``lsgan`` (least squares). Further losses are registered in :data:`LOSSES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from gankit.errors import UsageError


@dataclass(frozen=True)
class GANLoss:
    name: str
    d_loss: Callable  # (real_logits, fake_logits) -> scalar
    g_loss: Callable  # (fake_logits) -> scalar
    description: str = ""


def _bce_d(real, fake):
    import torch.nn.functional as F

    return F.softplus(-real).mean() + F.softplus(fake).mean()  # -log D(x) - log(1 - D(G(z)))


def _bce_g(fake):
    import torch.nn.functional as F

    return F.softplus(-fake).mean()  # -log D(G(z)): the non-saturating form


def _minimax_g(fake):
    import torch.nn.functional as F

    return -F.softplus(fake).mean()  # log(1 - D(G(z))), minimised


def _hinge_d(real, fake):
    import torch.nn.functional as F

    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def _hinge_g(fake):
    return -fake.mean()


def _ls_d(real, fake):
    return 0.5 * ((real - 1) ** 2).mean() + 0.5 * (fake**2).mean()


def _ls_g(fake):
    return 0.5 * ((fake - 1) ** 2).mean()


LOSSES: dict[str, GANLoss] = {
    "bce": GANLoss("bce", _bce_d, _bce_g, "non-saturating binary cross-entropy (Goodfellow et al.)"),
    "minimax": GANLoss("minimax", _bce_d, _minimax_g, "original saturating minimax objective"),
    "hinge": GANLoss("hinge", _hinge_d, _hinge_g, "hinge loss (Lim & Ye; SAGAN, BigGAN)"),
    "lsgan": GANLoss("lsgan", _ls_d, _ls_g, "least squares (Mao et al.)"),
}


def get_loss(name: str) -> GANLoss:
    if name not in LOSSES:
        raise UsageError(f"unknown loss {name!r}; available: {', '.join(LOSSES)}")
    return LOSSES[name]
