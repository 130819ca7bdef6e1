"""Adversarial losses: the objects the ``register_losses`` hook registers. Each maps
discriminator logits to a D loss and a G loss.

Built in (registered by gankit's core plugin through the same hook a plugin would use):
``bce`` (non-saturating, the default), ``minimax`` (the original saturating form),
``hinge``, ``lsgan`` (least squares) and ``wgan-gp`` (Wasserstein critic with a gradient
penalty and several critic steps per generator step). ``--loss NAME`` picks one; the lookup
by name is :func:`gankit.plugins.get_loss`.

This module sits below :mod:`gankit.plugins` (which validates what is registered) and
imports nothing of gankit's but the hook marker, so the registry never depends on the
training package that uses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from gankit.hookspecs import hookimpl


@dataclass(frozen=True)
class AdversarialLoss:
    """One adversarial objective.

    ``d_loss(real_logits, fake_logits)`` and ``g_loss(fake_logits)`` return scalars to
    minimise. ``gradient_penalty`` > 0 switches on the core's WGAN-GP regulariser ``gp``
    (that weight times ``(|grad D(x_hat)| - 1)^2`` on random interpolates of real and fake;
    ``--set gp_weight=W`` overrides it); ``regularizers``: further :class:`gankit.Regularizer`
    terms that come with this loss (e.g. WGAN-LP's one-sided penalty); ``config_keys``: the
    config keys this loss or its regularisers read, as :class:`gankit.Key` (typed and settable);
    ``n_critic`` discriminator updates run per generator update. ``saturated_below``: a D loss
    under this value means the discriminator has won (used to warn; None = no such notion).
    """

    name: str
    d_loss: Callable
    g_loss: Callable
    description: str = ""
    gradient_penalty: float = 0.0
    n_critic: int = 1
    saturated_below: float | None = None
    regularizers: tuple = ()
    config_keys: dict = field(default_factory=dict)


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


def _mean_neg(fake):
    return -fake.mean()


def _ls_d(real, fake):
    return 0.5 * ((real - 1) ** 2).mean() + 0.5 * (fake**2).mean()


def _ls_g(fake):
    return 0.5 * ((fake - 1) ** 2).mean()


def _wasserstein_d(real, fake):
    return fake.mean() - real.mean()  # the critic maximises E[D(x)] - E[D(G(z))]


BUILTIN_LOSSES = (
    AdversarialLoss("bce", _bce_d, _bce_g, "non-saturating binary cross-entropy (Goodfellow et al. 2014)",
                    saturated_below=0.02),
    AdversarialLoss("minimax", _bce_d, _minimax_g, "original saturating minimax objective (Goodfellow et al. 2014)",
                    saturated_below=0.02),
    AdversarialLoss("hinge", _hinge_d, _mean_neg, "hinge loss (Lim & Ye 2017; SAGAN, BigGAN)", saturated_below=0.02),
    AdversarialLoss("lsgan", _ls_d, _ls_g, "least squares (Mao et al. 2017)", saturated_below=0.005),
    AdversarialLoss("wgan-gp", _wasserstein_d, _mean_neg, "Wasserstein critic + gradient penalty 10, 5 critic steps "
                    "(Gulrajani et al. 2017)", gradient_penalty=10.0, n_critic=5),
)


@hookimpl
def register_losses(register):
    for loss in BUILTIN_LOSSES:
        register(loss)
