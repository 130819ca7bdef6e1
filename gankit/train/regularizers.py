"""Which regularisers a run uses (the definitions are in :mod:`gankit.regularizers`)."""

from __future__ import annotations

from typing import Any

from gankit.regularizers import (  # noqa: F401 - re-exported for the trainer and older imports
    GRADIENT_PENALTY, R1, ActiveRegularizer, Regularizer, RegularizerContext, gradient_penalty, r1_penalty, validate,
)


def active_regularizers(family: Any, loss: Any, config: dict[str, Any]) -> list[ActiveRegularizer]:
    """The run's regularisers with a weight > 0, in order: registered, the loss's, the family's."""
    from gankit.errors import GankitError
    from gankit.plugins import get_manager

    candidates = [(reg, f"plugin {plugin!r}") for reg, plugin in get_manager().regularizers.values()]
    candidates += [(reg, f"loss {loss.name!r}") for reg in getattr(loss, "regularizers", ())]
    candidates += [(reg, f"family {family.name!r}") for reg in getattr(family, "regularizers", ())]
    # gp_weight None (the default) means the loss's own weight (10 for wgan-gp, 0 otherwise)
    view = dict(config)
    if view.get("gp_weight") is None:
        view["gp_weight"] = float(getattr(loss, "gradient_penalty", 0.0) or 0.0)
    active: list[ActiveRegularizer] = []
    owners: dict[str, str] = {}
    for reg, owner in candidates:
        try:
            validate(reg)
        except GankitError as exc:
            raise GankitError(f"{owner}: {exc}") from None
        if reg.name in owners:
            raise GankitError(f"regulariser {reg.name!r} comes from both {owners[reg.name]} and {owner}; rename one")
        owners[reg.name] = owner
        on = reg.resolve(view)
        if on is not None:
            active.append(on)
    return active
