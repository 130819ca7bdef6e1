"""The StyleGAN2 regularisers, as gankit :class:`~gankit.Regularizer` terms.

- ``r1_lazy`` (D): R1 on real images, gamma in ``r1_gamma``, computed every ``r1_every``-th
  D iteration with its weight multiplied by the interval (lazy regularisation).
- ``path_length`` (G): StyleGAN2's path-length regulariser, weight ``pl_weight`` (0 = off),
  every ``pl_every``-th step. The running mean of the path lengths is the generator's
  ``pl_mean`` buffer, so it is checkpointed and a resumed run continues exactly.
"""

from __future__ import annotations

import math

from gankit.train.regularizers import Regularizer, r1_penalty


def _r1(ctx):
    return r1_penalty(ctx.d_real, ctx.real)


def _path_length(ctx):
    """E[(|J_w^T y| - a)^2]: J the Jacobian of the image w.r.t. w, y random image-space noise.

    Run on half the batch (StyleGAN2's pl_batch_shrink) with fresh w's from the step's z; the
    noise comes from ``ctx.rng`` (saved in checkpoints) so resuming stays exact.
    """
    import torch

    G = ctx.G
    n = max(1, ctx.fake.shape[0] // 2)
    z = ctx.g_inputs["z"][:n]
    label = ctx.g_inputs.get("label")
    w = G.mapping(z, None if label is None else label[:n])
    ws = w.unsqueeze(1).repeat(1, G.num_layers, 1)
    img = G.synthesis(ws)
    h, wd = img.shape[2], img.shape[3]
    y = torch.randn(img.shape, generator=ctx.rng).to(img.device, img.dtype) / math.sqrt(h * wd)
    (grad,) = torch.autograd.grad((img * y).sum(), ws, create_graph=True)
    lengths = grad.square().sum(2).mean(1).sqrt()
    with torch.no_grad():
        G.pl_mean.copy_(G.pl_mean.lerp(lengths.mean(), 0.01))
    return (lengths - G.pl_mean).square().mean()


LAZY_R1 = Regularizer(
    "r1_lazy", _r1, "D", weight=lambda c: 0.5 * float(c.get("r1_gamma", 0.0) or 0.0),
    every=lambda c: int(c.get("r1_every", 16)), real_grad=True,
    description="lazy R1 on real images (StyleGAN2): gamma in r1_gamma, every r1_every D iterations")
PATH_LENGTH = Regularizer(
    "path_length", _path_length, "G", weight=lambda c: float(c.get("pl_weight", 0.0) or 0.0),
    every=lambda c: int(c.get("pl_every", 4)),
    description="path-length regularisation of G (StyleGAN2): weight pl_weight, every pl_every steps")
