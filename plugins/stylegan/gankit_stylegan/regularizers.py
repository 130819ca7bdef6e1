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


def path_length_rows(rows: tuple[int, int] | None, n: int) -> tuple[int, int, int, float]:
    """The path-length pass's rows: ``(m, lo, hi, scale)``.

    One process: the first half of the batch, ``m = max(1, B // 2)`` rows (StyleGAN2's
    pl_batch_shrink). Data-parallel, the same ``m`` rows of the global batch are shared out
    over the S slices (ranks) of ``n`` rows: slice k takes rows ``[k*m//S, (k+1)*m//S)`` and
    scales its mean by ``(hi - lo) * S / m``, so the mean over the slices is the mean over the
    m rows however many slices there are (``scale`` is 1 in one process).
    """
    total, first = rows or (n, 0)
    slices, k = total // n, first // n
    m = max(1, total // 2)
    lo, hi = k * m // slices, (k + 1) * m // slices
    return m, lo, hi, (hi - lo) * slices / m


def _path_length(ctx):
    """E[(|J_w^T y| - a)^2]: J the Jacobian of the image w.r.t. w, y random image-space noise.

    Run on half the batch (StyleGAN2's pl_batch_shrink, :func:`path_length_rows`) with fresh
    w's from the step's z; y and the synthesis noise come from the draws for that whole half,
    sliced (from ``ctx.rng`` and torch's generator, both saved in checkpoints, so resuming
    stays exact and the numbers do not depend on the world size). The running mean ``a``
    (``pl_mean``) is updated from this slice's path lengths; the ranks' means are averaged at
    the end of the step.
    """
    import torch

    from gankit.train.distributed import batch_rows, draw_rows

    G = ctx.G
    m, lo, hi, scale = path_length_rows(ctx.rows, ctx.fake.shape[0])
    if hi == lo:  # more slices than path-length rows: this one has none
        return torch.zeros((), device=ctx.fake.device)
    inputs = ctx.global_g_inputs if ctx.global_g_inputs is not None else ctx.g_inputs
    z = inputs["z"][lo:hi]
    label = inputs.get("label")
    with batch_rows(m, lo, hi - lo):
        w = G.mapping(z, None if label is None else label[lo:hi])
        ws = w.unsqueeze(1).repeat(1, G.num_layers, 1)
        img = G.synthesis(ws)
        h, wd = img.shape[2], img.shape[3]
        y = draw_rows(hi - lo, lambda k: torch.randn((k, *img.shape[1:]), generator=ctx.rng))
    y = y.to(img.device, img.dtype) / math.sqrt(h * wd)
    (grad,) = torch.autograd.grad((img * y).sum(), ws, create_graph=True)
    lengths = grad.square().sum(2).mean(1).sqrt()
    with torch.no_grad():
        G.pl_mean.copy_(G.pl_mean.lerp(lengths.detach().float().mean(), 0.01))  # fp32 under bf16 autocast too
    term = (lengths - G.pl_mean).square().mean()
    return term if scale == 1 else term * scale


LAZY_R1 = Regularizer(
    "r1_lazy", _r1, "D", weight=lambda c: 0.5 * float(c.get("r1_gamma", 0.0) or 0.0),
    every=lambda c: int(c.get("r1_every", 16)), real_grad=True,
    description="lazy R1 on real images (StyleGAN2): gamma in r1_gamma, every r1_every D iterations")
PATH_LENGTH = Regularizer(
    "path_length", _path_length, "G", weight=lambda c: float(c.get("pl_weight", 0.0) or 0.0),
    every=lambda c: int(c.get("pl_every", 4)),
    description="path-length regularisation of G (StyleGAN2): weight pl_weight, every pl_every steps")
