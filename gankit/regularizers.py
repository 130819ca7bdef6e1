"""Regularisers: extra loss terms on the discriminator (D) or generator (G) step.

A :class:`Regularizer` names a function of a :class:`RegularizerContext` (D, G, the real
and fake batches, labels, the step, the config) that returns a scalar to minimise, the step
it joins (``phase="D"`` or ``"G"``), its weight and how often it runs (``every``: lazy
regularisation as in StyleGAN2, where the weight is multiplied by the interval so the
average pull stays the same).

They come from three places, in this order each step:

1. registered through the ``register_regularizers`` hook: available to every family and
   switched on by their weight, which must therefore come from the config (off by
   default). The core registers the WGAN-GP gradient penalty (``gp``: weight
   ``gp_weight``, else the loss's ``gradient_penalty``) and R1 (``r1``: gamma in ``r1``,
   the term is gamma/2 * E|grad D(x)|^2) this way;
2. attached to the adversarial loss in use (``AdversarialLoss(regularizers=...)``);
3. attached to the family (``ModelFamily.regularizers``).

A regulariser whose weight is 0 for a run is never computed. Nothing here imports torch at
module level, nor the plugin registry: this module sits below it (the trainer's selection of a
run's regularisers is :func:`gankit.train.regularizers.active_regularizers`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal

from gankit.errors import UsageError
from gankit.hookspecs import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

Phase = Literal["D", "G"]


@dataclass
class RegularizerContext:
    """What a regulariser's function sees, for one D iteration or one G step.

    ``real``: the real batch in [-1, 1] (it requires grad on this iteration when a due
    regulariser says ``real_grad=True``); ``fake``: the generated batch (detached on the D
    step; on the G step it carries the graph back to G); ``labels``: one integer per image;
    ``g_inputs``: the generator's inputs for ``fake`` by name (``z``, ``label``, ``mask``...);
    ``d_real`` / ``d_fake``: D's logits for them from the step's own forward passes (``d_real``
    is None on the G step); ``step``: the generator step (0-based); ``iteration``: the
    D iteration counter (``step * n_critic + i``) on the D step, ``step`` on the G step;
    ``rng``: a seeded ``torch.Generator`` saved in checkpoints (draw randomness from it so
    resuming stays exact).
    """

    phase: Phase
    step: int
    iteration: int
    config: dict[str, Any]
    family: Any
    D: "nn.Module"
    G: "nn.Module"
    real: "torch.Tensor"
    fake: "torch.Tensor"
    labels: "torch.Tensor"
    g_inputs: dict[str, "torch.Tensor"]
    d_real: "torch.Tensor | None"
    d_fake: "torch.Tensor"
    rng: "torch.Generator"
    augment: Callable[["torch.Tensor"], "torch.Tensor"]
    # data-parallel training: this batch is rows first..first+N of a global batch of ``total``
    # (``(total, first)``; None in one process). Draw per-image randomness for the whole global
    # batch and keep these rows (:meth:`per_image_rand`), so it does not depend on the world size.
    rows: "tuple[int, int] | None" = None
    # and the generator inputs of that whole global batch (None in one process, where
    # ``g_inputs`` is the whole batch): for a regulariser that picks its own rows of the step
    global_g_inputs: "dict[str, torch.Tensor] | None" = None

    def per_image_rand(self, *shape: int) -> "torch.Tensor":
        """``torch.rand(N, *shape)`` from ``rng`` for this batch's images (see ``rows``)."""
        import torch

        n = self.real.shape[0]
        total, first = self.rows or (n, 0)
        return torch.rand(total, *shape, generator=self.rng)[first : first + n]

    def discriminate(self, images: "torch.Tensor") -> "torch.Tensor":
        """D's logits for ``images``, fed exactly as in training: the family's
        ``discriminator_inputs`` (labels, masks) and the run's ``--diffaug`` augmentation."""
        return self.D(*self.family.discriminator_inputs(self.augment(images), self.labels, self.g_inputs))


@dataclass(frozen=True)
class Regularizer:
    """One regularisation term.

    ``name``: logged under this name in ``metrics.jsonl`` (the unweighted term) and unique
    among a run's regularisers. ``fn(ctx)`` returns a scalar tensor. ``phase``: ``"D"``
    (added to the discriminator's loss on every D iteration it is due) or ``"G"`` (added
    to the generator's loss). ``weight``: a number, or a function ``config -> number`` that
    reads the family's or user's config (``--set KEY=VALUE``); 0 switches the term off.
    ``every``: run on every ``every``-th iteration only, with the weight multiplied by
    ``every`` (lazy regularisation); a number or a function of the config.
    ``config_keys``: the config keys the weight and interval read, declared with
    :class:`gankit.Key` so they are typed and settable (``--set KEY=VALUE``).
    ``real_grad``: the term differentiates D's output with respect to the real images
    (R1): the trainer makes ``ctx.real`` require grad before D's forward pass.
    """

    name: str
    fn: Callable[[RegularizerContext], "torch.Tensor"]
    phase: Phase = "D"
    weight: float | Callable[[dict[str, Any]], float] = 1.0
    every: int | Callable[[dict[str, Any]], int] = 1
    real_grad: bool = False
    description: str = ""
    # the config keys ``weight``/``every`` read ({"lp_weight": gankit.Key(float, 10.0, ge=0)}):
    # they join every run's schema, so ``--set lp_weight=5`` is typed and checked like any key
    config_keys: dict = field(default_factory=dict)

    def resolve(self, config: dict[str, Any]) -> "ActiveRegularizer | None":
        """This regulariser with its weight and interval for ``config``; None when its weight is 0."""
        raw = self.weight
        try:
            raw = self.weight(config) if callable(self.weight) else self.weight
            weight = float(raw or 0.0)
        except (TypeError, ValueError):  # a config value that is not a number
            weight = math.nan
        if not (math.isfinite(weight) and weight >= 0):
            shown = raw if not callable(raw) else "a value that is not a number"
            raise UsageError(f"regulariser {self.name!r}: weight must be a number >= 0, got {shown!r}")
        if weight == 0:
            return None
        every = self.every(config) if callable(self.every) else self.every
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise UsageError(f"regulariser {self.name!r}: every must be a whole number >= 1, got {every!r}")
        # lazy regularisation: a term applied every k-th iteration weighs k times as much
        return ActiveRegularizer(self, weight * every, every)


@dataclass(frozen=True)
class ActiveRegularizer:
    """A regulariser switched on for one run: its scaled weight and interval."""

    regularizer: Regularizer
    weight: float
    every: int

    @property
    def name(self) -> str:
        return self.regularizer.name

    def due(self, iteration: int) -> bool:
        return iteration % self.every == 0

    def __call__(self, ctx: RegularizerContext) -> "torch.Tensor":
        term = self.regularizer.fn(ctx)
        import torch

        if not isinstance(term, torch.Tensor) or term.dim() != 0:
            got = tuple(term.shape) if isinstance(term, torch.Tensor) else type(term).__name__
            from gankit.errors import GankitError

            raise GankitError(f"regulariser {self.name!r} returned {got}, expected a scalar tensor")
        return term


def validate(obj: Any) -> str:
    """Checks shared by the hook registry and the loss/family attachments."""
    from gankit.errors import GankitError

    if not isinstance(obj, Regularizer):
        raise GankitError(f"expected a gankit.Regularizer, got {type(obj).__name__}")
    if not isinstance(obj.name, str) or not obj.name.strip() or not callable(obj.fn):
        raise GankitError("a regulariser needs a name and a function fn(ctx)")
    if obj.phase not in ("D", "G"):
        raise GankitError(f"regulariser {obj.name!r}: phase must be 'D' or 'G', got {obj.phase!r}")
    return obj.name


# -- the built-in terms ----------------------------------------------------------------------
def gradient_penalty(critic: Callable, real, fake, rng=None, *, one_sided: bool = False, eps=None):
    """WGAN-GP: ``E[(|grad_x critic(x)| - 1)^2]`` at random interpolates of real and fake.

    ``one_sided=True`` gives WGAN-LP's Lipschitz penalty ``E[max(0, |grad| - 1)^2]``
    (Petzka et al. 2018), which only punishes slopes above 1.
    """
    import torch

    if eps is None:  # the interpolation weights [N, 1, ...], unless the caller drew them
        eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), generator=rng, device="cpu")
    eps = eps.to(real.device, real.dtype)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    excess = grad.flatten(1).norm(2, dim=1) - 1
    if one_sided:
        excess = excess.clamp_min(0)
    return (excess**2).mean()


def r1_penalty(d_real, real):
    """R1 (Mescheder et al. 2018): ``E[|grad_x D(x)|^2]`` on real images (``real`` must require grad)."""
    import torch

    (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
    return grad.flatten(1).pow(2).sum(1).mean()


def _gp_term(ctx: RegularizerContext):
    eps = ctx.per_image_rand(*([1] * (ctx.real.dim() - 1)))
    return gradient_penalty(ctx.discriminate, ctx.real, ctx.fake, eps=eps)


def _gp_weight(config: dict[str, Any]) -> float:
    # None in a run's config means "the loss's own weight": the trainer resolves it into
    # ``gp_weight`` before asking (gankit.train.regularizers.active_regularizers)
    return float(config.get("gp_weight") or 0.0)


def _r1_term(ctx: RegularizerContext):
    return r1_penalty(ctx.d_real, ctx.real)


def _r1_weight(config: dict[str, Any]) -> float:
    return 0.5 * float(config.get("r1", 0.0) or 0.0)  # r1 is gamma; the term is gamma/2 * E|grad D(x)|^2


GRADIENT_PENALTY = Regularizer("gp", _gp_term, "D", _gp_weight,
                               description="WGAN-GP gradient penalty (Gulrajani et al. 2017): weight gp_weight, "
                                           "else the loss's gradient_penalty")


def _r1_every(config: dict[str, Any]) -> int:
    return int(config.get("r1_every", 1) or 1)


R1 = Regularizer("r1", _r1_term, "D", _r1_weight, every=_r1_every, real_grad=True,
                 description="R1 penalty on real images (Mescheder et al. 2018): gamma in r1, every r1_every D steps")


@hookimpl
def register_regularizers(register):
    register(GRADIENT_PENALTY)
    register(R1)
