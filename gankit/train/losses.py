"""Training penalties and regularisers (WGAN-GP, R1, mode seeking).

The adversarial objectives themselves live in :mod:`gankit.losses` (what plugins register);
they and the registry lookups are re-exported here for code that imports them from the
training package.
"""

from __future__ import annotations

from typing import Callable

from gankit.losses import BUILTIN_LOSSES, AdversarialLoss  # noqa: F401 - re-exported
from gankit.plugins import available_losses, get_loss  # noqa: F401 - re-exported


# -- penalties -----------------------------------------------------------------------------
def gradient_penalty(critic: Callable, real, fake, rng=None):
    """WGAN-GP: ``E[(|grad_x critic(x)| - 1)^2]`` at random interpolates of real and fake."""
    import torch

    eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), generator=rng, device="cpu").to(real.device, real.dtype)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def r1_penalty(d_real, real):
    """R1 (Mescheder et al. 2018): ``E[|grad_x D(x)|^2]`` on real images (``real`` must require grad)."""
    import torch

    (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
    return grad.flatten(1).pow(2).sum(1).mean()


def mode_seeking(fake, z, labels=None, eps: float = 1e-5):
    """Mode-seeking regulariser (Mao et al., MSGAN, CVPR 2019), to be minimised by G.

    Two samples drawn for the same condition should differ about as much as their latent
    codes do: the loss is ``1 / (mean_pairs(|G(z1) - G(z2)|_1 / |z1 - z2|_1) + eps)`` over every
    pair in the batch with equal ``labels`` (all pairs when ``labels`` is None). A generator
    that ignores z (intra-class collapse) pays for it.
    """
    import torch

    n = fake.shape[0]
    d_img = torch.cdist(fake.flatten(1), fake.flatten(1), p=1) / fake[0].numel()
    d_z = torch.cdist(z.flatten(1), z.flatten(1), p=1) / z[0].numel()
    pair = torch.ones(n, n, dtype=torch.bool, device=fake.device).triu(1)
    if labels is not None:
        pair &= labels[:, None] == labels[None, :]
    if not bool(pair.any()):
        return fake.new_zeros(())
    ratio = (d_img[pair] / d_z[pair].clamp_min(eps)).mean()
    return 1.0 / (ratio + eps)
