"""The hooks a gankit plugin can implement.

Every hook is named ``register_*`` and receives a callback (or the object to extend);
plugins call it as often as they like. Hooks only ever gain parameters: a plugin written
against an older gankit keeps working, because pluggy passes a hook implementation only
the arguments it names.

A plugin is a module (found through the ``gankit`` entry-point group) with functions
decorated by :data:`hookimpl`::

    from gankit import hookimpl

    @hookimpl
    def register_families(register):
        register(MyFamily())
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:  # pragma: no cover - typing only
    import typer

    from gankit.data import DatasetSpec
    from gankit.family import ModelFamily
    from gankit.losses import AdversarialLoss
    from gankit.regularizers import Regularizer

hookspec = pluggy.HookspecMarker("gankit")
hookimpl = pluggy.HookimplMarker("gankit")


@hookspec
def register_families(register: Callable[["ModelFamily"], None]) -> None:
    """Register model families (generator + discriminator + how to train and export them).

    Called once per process, the first time gankit needs the list of families
    (``gankit train``, ``gankit plugins``, ``gankit bench``...). Call
    ``register(family)`` for each :class:`gankit.family.ModelFamily` the plugin provides.
    Family names are global: a name registered by two plugins is an error naming both.
    """


@hookspec
def register_datasets(register: Callable[["DatasetSpec"], None]) -> None:
    """Register datasets that ``gankit train --data NAME`` can use.

    Called once per process, the first time a dataset is looked up. Call
    ``register(DatasetSpec(name=..., load=..., description=...))``; ``load(**options)``
    returns a :class:`gankit.data.Dataset`. The built-ins (``mnist5k``, ``photos``,
    ``folder:PATH``) are registered through this same hook.
    """


@hookspec
def register_losses(register: Callable[["AdversarialLoss"], None]) -> None:
    """Register adversarial losses that ``gankit train --loss NAME`` can use.

    Called once per process, the first time a loss is looked up by name. Call
    ``register(AdversarialLoss(name=..., d_loss=..., g_loss=...))`` (``from gankit import
    AdversarialLoss``); set ``gradient_penalty`` and ``n_critic`` for WGAN-style critics,
    and ``regularizers`` for penalty terms of the loss's own (WGAN-LP). The built-ins (``bce``, ``minimax``, ``hinge``, ``lsgan``, ``wgan-gp``) are
    registered through this same hook by gankit's core plugin.
    """


@hookspec
def register_regularizers(register: Callable[["Regularizer"], None]) -> None:
    """Register regularisers: loss terms on the D or G step that any family can switch on.

    Called once per process, the first time a run is set up (``gankit train``, the
    conformance kit). Call ``register(Regularizer(name=..., fn=..., phase="D"|"G",
    weight=lambda config: config.get("KEY", 0.0), every=...))``. A registered regulariser
    applies to every run whose config gives it a weight > 0, so its weight must be a
    function of the config (default 0), never a constant. The built-in WGAN-GP penalty
    (``gp``) and R1 (``r1``) are registered through this hook by gankit's core plugin;
    a name clash is an error naming both plugins. Terms that belong to one loss or one
    family are attached there instead (``AdversarialLoss.regularizers``,
    ``ModelFamily.regularizers``).
    """


@hookspec
def register_commands(app: "typer.Typer") -> None:
    """Add sub-commands to the ``gankit`` command line.

    Called once when the CLI starts, before arguments are parsed, with the root
    :class:`typer.Typer` app. Keep the implementation cheap (no torch import at this
    point): the command's own body may import what it needs.
    """


def _hook_names() -> list[str]:
    """Every hook defined here, in definition order (used by docs checks)."""
    return [name for name, obj in globals().items() if name.startswith("register_") and callable(obj)]


__all__: list[Any] = ["hookspec", "hookimpl", "register_families", "register_datasets", "register_losses",
                      "register_regularizers", "register_commands"]
