"""Training penalties and regularisers (WGAN-GP, R1, mode seeking).

The adversarial objectives themselves live in :mod:`gankit.losses` (what plugins register);
they and the registry lookups are re-exported here for code that imports them from the
training package.
"""

from __future__ import annotations


from gankit.losses import BUILTIN_LOSSES, AdversarialLoss  # noqa: F401 - re-exported
from gankit.plugins import available_losses, get_loss  # noqa: F401 - re-exported


# -- penalties (the terms live in gankit.train.regularizers; kept importable from here) ------
from gankit.regularizers import gradient_penalty, r1_penalty  # noqa: E402,F401


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
