"""Stabilisers that work for every family: spectral norm on D, EMA of G.

(The losses' penalties, gradient penalty and R1, live in :mod:`gankit.train.losses`;
differentiable augmentation in :mod:`gankit.train.augment`.)
"""

from __future__ import annotations


def has_spectral_norm(module) -> bool:
    from torch.nn.utils import parametrize

    for m in module.modules():
        if parametrize.is_parametrized(m) or hasattr(m, "weight_orig"):
            return True
    return False


def apply_spectral_norm(module):
    """Spectral normalisation (Miyato et al. 2018) on every conv and linear layer of ``module``.

    A discriminator that already uses spectral norm (the family applied it) is left alone.
    """
    from torch import nn

    if has_spectral_norm(module):
        return module
    for m in list(module.modules()):
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)):
            nn.utils.parametrizations.spectral_norm(m)
    return module


def ema_decay_at(step: int, decay: float) -> float:
    """EMA decay with warm-up: average over about the steps seen so far, then settle at ``decay``."""
    return min(decay, (1 + step) / (10 + step))


def ema_update(ema_model, model, decay: float) -> None:
    """``ema = decay * ema + (1 - decay) * model`` for parameters; buffers (BatchNorm statistics) copied
    (the trainer recomputes them for the averaged weights before saving: ``refresh_ema_statistics``)."""
    import torch

    with torch.no_grad():
        for pe, p in zip(ema_model.parameters(), model.parameters()):
            pe.lerp_(p, 1 - decay)
        for be, b in zip(ema_model.buffers(), model.buffers()):
            be.copy_(b)


def standing_statistics(G, batches) -> None:
    """Recompute ``G``'s BatchNorm running statistics from its own activations on ``batches``.

    Averaged (EMA) weights with the live generator's running statistics do not match: the
    statistics belong to other weights. As BigGAN's "standing statistics" do, run ``G`` in
    training mode over a few fixed batches (input dicts) with a cumulative average, then
    return it to eval mode. Nothing to do for a generator without BatchNorm.
    """
    import torch

    norms = [m for m in G.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the batches below
    G.train()
    with torch.no_grad():
        for inputs in batches:
            G(**inputs)
    for m, mom in zip(norms, momenta):
        m.momentum = mom
    G.eval()
