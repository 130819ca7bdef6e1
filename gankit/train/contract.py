"""One forward pass that checks a family's networks against the data before any work is done.

A generator that makes 32x32 images for 28x28 data, or a discriminator that returns a
scalar, trains without an error and exports a file whose metadata lies. The trainer (before
the first step), the exporter (before tracing) and the conformance kit run these checks, so
a broken family fails at once, in one line that names the family and the module.

The pass runs in eval mode under ``no_grad`` on a throwaway random generator, so it changes
no weights, no BatchNorm statistics and no training random stream: seeded results stay
identical.
"""

from __future__ import annotations

from typing import Any

from gankit.errors import GankitError


class FamilyContractError(GankitError):
    """A family's network does not keep the shapes the core relies on (exit code 1)."""

    def __init__(self, message: str, stage: str, got: Any = None):
        super().__init__(message)
        self.stage, self.got = stage, got


def _module_name(module: Any) -> str:
    cls = type(module)
    return f"{cls.__qualname__} ({cls.__module__})"


def _shape(value: Any) -> str:
    import torch

    if isinstance(value, torch.Tensor):
        return "a scalar" if value.dim() == 0 else f"shape {list(value.shape)}"
    return f"a {type(value).__name__}"


def check_generator_output(family: Any, generator: Any, out: Any, expected: tuple[int, ...]) -> None:
    """``out`` must be a float tensor of exactly ``expected`` = (N, C, H, W)."""
    import torch

    if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(expected):
        raise FamilyContractError(
            f"family {family.name!r}: generator {_module_name(generator)} returned {_shape(out)}, expected "
            f"{list(expected)} (batch, channels, height, width of the data)", "generator",
            tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__)


def check_discriminator_output(family: Any, discriminator: Any, out: Any, batch: int) -> None:
    """``out`` must be a tensor with the batch first: one logit per image (or per patch)."""
    import torch

    if not isinstance(out, torch.Tensor) or out.dim() == 0 or out.shape[0] != batch:
        raise FamilyContractError(
            f"family {family.name!r}: discriminator {_module_name(discriminator)} returned {_shape(out)} for a batch "
            f"of {batch}; it must return one logit per image (or per patch) with the batch first, e.g. [{batch}]",
            "discriminator", tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__)


def _forward(family: Any, module: Any, role: str, *args: Any, **kwargs: Any) -> Any:
    try:
        return module(*args, **kwargs)
    except Exception as exc:  # a shape mismatch inside the module, a wrong input name...
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise FamilyContractError(f"family {family.name!r}: {role} {_module_name(module)} failed on a batch of the "
                                  f"data: {type(exc).__name__}: {msg}", role, type(exc).__name__) from None


def check_models(family: Any, config: dict[str, Any], G: Any, D: Any | None, real: Any, labels: Any) -> None:
    """One eval-mode forward pass of G (and D on G's output) on ``real``'s batch."""
    import torch

    g_mode, d_mode = G.training, D.training if D is not None else False
    rng = torch.Generator().manual_seed(0)  # its own stream: training's noise is untouched
    cpu_state = torch.get_rng_state()  # and the global one, for a family that draws from it
    try:
        G.eval()
        if D is not None:
            D.eval()
        with torch.no_grad():
            g_in = family.generator_inputs(real, labels, config, rng)
            g_in = {k: v.to(real.device) for k, v in g_in.items()}
            fake = _forward(family, G, "generator", **g_in)
            check_generator_output(family, G, fake, tuple(real.shape))
            if D is not None:
                logits = _forward(family, D, "discriminator", *family.discriminator_inputs(fake, labels, g_in))
                check_discriminator_output(family, D, logits, real.shape[0])
    finally:
        torch.set_rng_state(cpu_state)
        G.train(g_mode)
        if D is not None:
            D.train(d_mode)


def check_export_generator(family: Any, config: dict[str, Any], module: Any, example: dict[str, Any]) -> None:
    """The module about to be exported makes images of the run's shape from ``example`` inputs."""
    import torch

    batch = next(iter(example.values())).shape[0]
    expected = (batch, int(config["channels"]), int(config["height"]), int(config["width"]))
    with torch.no_grad():
        out = _forward(family, module, "generator", **example)
    check_generator_output(family, module, out, expected)
