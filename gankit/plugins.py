"""The plugin manager: finds plugins, loads each in isolation, and keeps what they registered.

Plugins are modules listed under the ``gankit`` entry-point group; the built-in families
(``gan``, ``cgan``, ``inpaint``) are found exactly like a third-party one. The core's own
datasets, losses and regularisers are registered through the same hooks by
:mod:`gankit.builtin`. The names gankit's own plugins provide stay theirs: they are
collected first, and a third-party plugin registering one is marked as failed.

Every lookup by name goes through here (:func:`get_family`, :func:`load_dataset`,
:func:`get_loss`): the registered types (:mod:`gankit.family`, :mod:`gankit.data`,
:mod:`gankit.losses`) sit below this module and never import it, and the packages that
look things up (train, export, evaluate, bench, cli) sit above it.

Loading order and precedence (documented in ``docs/plugins.md``):

1. ``GANKIT_LOAD_PLUGINS`` (comma-separated names): if set, only these entry points load;
   set to an empty string, none do.
2. ``GANKIT_DISABLE_PLUGINS`` (comma-separated names): these never load, even if named in
   ``GANKIT_LOAD_PLUGINS``.
3. Each remaining entry point is imported and its hooks called inside its own
   ``try/except``: a failure is recorded against that plugin (``gankit plugins`` shows it)
   and everything else keeps working. ``GANKIT_STRICT_PLUGINS=1`` turns any such failure
   into an error, for plugin authors.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable

import pluggy

from gankit import builtin, hookspecs
from gankit.data import Dataset, DatasetSpec
from gankit.errors import GankitError, UsageError, first_line
from gankit.family import ModelFamily
from gankit.losses import AdversarialLoss

ENTRY_POINT_GROUP = "gankit"
CORE_PLUGIN = "core"
# gankit's own plugins (entry-point name -> module). They collect before any third-party
# plugin, so the names they provide stay theirs: a third-party plugin registering one of them
# is the one marked as failed, whatever its entry point sorts as.
BUILTIN_PLUGINS = {"gan": "gankit_gan", "cgan": "gankit_cgan", "inpaint": "gankit_inpaint"}


@dataclass
class PluginRecord:
    """What ``gankit plugins`` shows for one plugin."""

    name: str
    version: str = ""
    module: str = ""
    status: str = "loaded"  # loaded | error | disabled
    error: str = ""
    families: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    losses: list[str] = field(default_factory=list)
    regularizers: list[str] = field(default_factory=list)
    hooks: list[str] = field(default_factory=list)
    builtin: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "module": self.module,
            "status": self.status,
            "error": self.error,
            "families": self.families,
            "datasets": self.datasets,
            "losses": self.losses,
            "regularizers": self.regularizers,
            "hooks": self.hooks,
            "builtin": self.builtin,
        }


def _env_names(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


class PluginManager:
    """Holds the pluggy manager plus everything the plugins registered."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("gankit")
        self.pm.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}
        self._registries: dict[str, dict[str, tuple[Any, str]]] = {}
        self.strict = os.environ.get("GANKIT_STRICT_PLUGINS", "") not in ("", "0", "false", "no")

    # -- loading -----------------------------------------------------------------------
    def load(self) -> "PluginManager":

        self.register(builtin, name=CORE_PLUGIN, version=_dist_version("gankit"), builtin=True)
        only = _env_names("GANKIT_LOAD_PLUGINS")
        blocked = _env_names("GANKIT_DISABLE_PLUGINS") or set()
        eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
        for ep in sorted(eps, key=lambda e: (not _is_builtin(e.name, e.value), e.name)):
            if ep.name in self.records:
                continue  # the same entry point installed twice (e.g. editable + wheel)
            version = ep.dist.version if ep.dist is not None else ""
            if ep.name in blocked or (only is not None and ep.name not in only):
                why = "GANKIT_DISABLE_PLUGINS" if ep.name in blocked else "GANKIT_LOAD_PLUGINS"
                self.records[ep.name] = PluginRecord(ep.name, version, ep.value, "disabled", f"disabled by {why}")
                continue
            try:
                module = ep.load()
            except Exception as exc:  # a broken plugin must never break gankit
                self._fail(PluginRecord(ep.name, version, ep.value), exc)
                continue
            self.register(module, name=ep.name, version=version, builtin=_is_builtin(ep.name, ep.value))
        return self

    def register(self, plugin: Any, name: str, version: str = "", builtin: bool = False) -> PluginRecord:
        """Register a plugin object (a module or any object with hook implementations).

        ``builtin`` is for gankit's own plugins: their registrations are collected first.
        """
        record = PluginRecord(name, version, getattr(plugin, "__name__", type(plugin).__name__), builtin=builtin)
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:
            self._fail(record, exc)
            return record
        record.hooks = sorted(impl.name for impl in self.pm.get_hookcallers(plugin) or [])
        self.records[name] = record
        self._registries.clear()
        return record

    def unregister(self, name: str) -> None:
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin, name=name)
        self.records.pop(name, None)
        self._registries.clear()

    def _fail(self, record: PluginRecord, exc: BaseException) -> None:
        record.status = "error"
        record.error = first_line(exc)
        self.records[record.name] = record
        if self.strict:
            raise GankitError(f"plugin {record.name!r} failed to load: {record.error}") from exc
        if os.environ.get("GANKIT_DEBUG"):
            traceback.print_exception(exc)

    # -- collecting registrations --------------------------------------------------------
    def _collect(self, hook_name: str, validate: Callable[[Any], str], kind: str) -> dict[str, tuple[Any, str]]:
        """Call one ``register_*`` hook plugin by plugin so a failure stays with its plugin."""
        found: dict[str, tuple[Any, str]] = {}
        hook = getattr(self.pm.hook, hook_name)
        impls = hook.get_hookimpls()  # registration order; gankit's own plugins first, whatever the order
        order = {name: i for i, name in enumerate(self.records)}
        impls = sorted(impls, key=lambda im: (not getattr(self.records.get(im.plugin_name), "builtin", False),
                                              order.get(im.plugin_name, len(order))))
        for impl in impls:
            record = self.records.get(impl.plugin_name)
            if record is None or record.status != "loaded":
                continue
            staged: list[tuple[str, Any]] = []

            def register(obj: Any, _staged=staged) -> None:
                _staged.append((validate(obj), obj))

            try:
                impl.function(*[{"register": register}[a] for a in impl.argnames])
                for key, obj in staged:
                    if key in found:
                        first = found[key][1]
                        owner = " (a built-in name)" if getattr(self.records.get(first), "builtin", False) else ""
                        raise GankitError(f"{kind} {key!r} is registered by both plugin {first!r}{owner} and "
                                          f"plugin {impl.plugin_name!r}; {first!r} keeps it")
            except Exception as exc:
                self._fail(record, exc)
                continue
            for key, obj in staged:
                found[key] = (obj, impl.plugin_name)
        return found

    def _registry(self, field_name: str) -> dict[str, tuple[Any, str]]:
        """Collected once per manager (and again after register/unregister); also fills the
        records' ``families`` / ``datasets`` / ``losses`` lists."""
        if field_name not in self._registries:
            hook, validator, kind = _KINDS[field_name]
            self._registries[field_name] = {}  # re-entrant lookups during collection see an empty registry
            found = self._collect(hook, validator, kind)
            self._registries[field_name] = found
            for r in self.records.values():
                setattr(r, field_name, [k for k, (_, p) in found.items() if p == r.name])
        return self._registries[field_name]

    @property
    def families(self) -> dict[str, tuple[Any, str]]:
        return self._registry("families")

    @property
    def datasets(self) -> dict[str, tuple[Any, str]]:
        return self._registry("datasets")

    @property
    def losses(self) -> dict[str, tuple[Any, str]]:
        return self._registry("losses")

    @property
    def regularizers(self) -> dict[str, tuple[Any, str]]:
        return self._registry("regularizers")

    def collect_all(self) -> None:
        """Call every ``register_*`` hook, so every plugin's failures are recorded."""
        for field_name in _KINDS:
            self._registry(field_name)

    def failures(self, skip: str = "") -> str:
        """``"; plugins that failed to load: a (Error: why), b (...)"``, or "" when none did.

        Appended to every failed look-up: a family, loss or dataset that is missing because
        its plugin broke must not look like a typo.
        """
        self.collect_all()
        failed = [f"{r.name} ({r.error})" for r in self.records.values() if r.status == "error" and r.name != skip]
        return f"; plugins that failed to load: {', '.join(failed)}" if failed else ""

    def family(self, name: str):
        fams = self.families
        if name not in fams:
            known = ", ".join(sorted(fams)) or "none installed"
            hint = ""
            rec = self.records.get(name)
            if rec is not None and rec.status != "loaded":
                hint = f" (plugin {name!r} is {rec.status}: {rec.error})"
            raise UsageError(f"unknown plugin/family {name!r}{hint}; available: {known}{self.failures(skip=name)}")
        return fams[name][0]

    def register_commands(self, app: Any) -> None:
        for impl in self.pm.hook.register_commands.get_hookimpls():
            record = self.records.get(impl.plugin_name)
            if record is None or record.status != "loaded":
                continue
            try:
                impl.function(*[{"app": app}[a] for a in impl.argnames])
            except Exception as exc:
                self._fail(record, exc)


def _validate_family(obj: Any) -> str:
    if not isinstance(obj, ModelFamily):
        raise GankitError(f"register_families got {type(obj).__name__}, expected a gankit.family.ModelFamily")
    if not isinstance(obj.name, str) or not obj.name.strip():
        raise GankitError(f"a registered family ({type(obj).__name__}) has no name: set name = \"...\" on the class "
                          "or pass name=... to its constructor")
    for attr in ("defaults", "data_defaults"):
        value = getattr(obj, attr)
        if not isinstance(value, dict):
            hint = " (ModelFamily is a plain class, not a dataclass: write {attr} = {{...}})" if type(value).__name__ == "Field" else ""
            raise GankitError(f"family {obj.name!r}: {attr} must be a dict, got {type(value).__name__}{hint.format(attr=attr)}")
    if obj.task not in ("generate", "inpaint", "restore"):
        raise GankitError(f"family {obj.name!r} has unknown task {obj.task!r}")
    return obj.name


def _validate_dataset(obj: Any) -> str:
    if not isinstance(obj, DatasetSpec):
        raise GankitError(f"register_datasets got {type(obj).__name__}, expected a gankit.data.DatasetSpec")
    return obj.name


def _validate_loss(obj: Any) -> str:
    if not isinstance(obj, AdversarialLoss):
        raise GankitError(f"register_losses got {type(obj).__name__}, expected a gankit.losses.AdversarialLoss")
    if not obj.name or not callable(obj.d_loss) or not callable(obj.g_loss):
        raise GankitError("a registered loss needs a name, d_loss and g_loss")
    if int(obj.n_critic) < 1 or float(obj.gradient_penalty) < 0:
        raise GankitError(f"loss {obj.name!r}: n_critic must be >= 1 and gradient_penalty >= 0")
    from gankit.regularizers import validate

    for reg in obj.regularizers:
        try:
            validate(reg)
        except GankitError as exc:
            raise GankitError(f"loss {obj.name!r}: {exc}") from None
    return obj.name


def _validate_regularizer(obj: Any) -> str:
    from gankit.regularizers import Regularizer, validate

    if not isinstance(obj, Regularizer):
        raise GankitError(f"register_regularizers got {type(obj).__name__}, expected a gankit.Regularizer")
    validate(obj)
    if not callable(obj.weight):
        raise GankitError(f"regulariser {obj.name!r} is registered for every run, so its weight must come from the "
                          "config (weight=lambda config: config.get('KEY', 0.0)), not a constant; attach it to a "
                          "loss or family for a fixed weight")
    return obj.name


# PluginRecord field -> (hook that fills it, validator, kind named in errors)
_KINDS: dict[str, tuple[str, Callable[[Any], str], str]] = {
    "families": ("register_families", _validate_family, "family"),
    "datasets": ("register_datasets", _validate_dataset, "dataset"),
    "losses": ("register_losses", _validate_loss, "loss"),
    "regularizers": ("register_regularizers", _validate_regularizer, "regulariser"),
}


def _is_builtin(name: str, value: str) -> bool:
    """An entry point of gankit's own plugins (by name and module, so a namesake is not)."""
    return BUILTIN_PLUGINS.get(name) == value.split(":")[0].strip()


def _dist_version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return ""


_MANAGER: PluginManager | None = None


def get_manager() -> PluginManager:
    """The process-wide plugin manager, loaded on first use."""
    global _MANAGER
    if _MANAGER is None:
        _MANAGER = PluginManager().load()
    return _MANAGER


def reset() -> None:
    """Forget the loaded plugins (tests use this after changing the environment)."""
    global _MANAGER
    _MANAGER = None


def get_family(name: str):
    return get_manager().family(name)


def load_dataset(name: str, **options: Any) -> Dataset:
    """Resolve a dataset name (``mnist5k``, ``photos``, ``folder:PATH``, a plugin's) through the
    registry and load it."""
    specs = get_manager().datasets
    key, _, arg = name.partition(":")
    entry = specs.get(key)
    if entry is None or (entry[0].prefix and not arg) or (not entry[0].prefix and arg):
        known = ", ".join(s.name + (":PATH" if s.prefix else "") for s, _ in specs.values())
        raise UsageError(f"unknown dataset {name!r}; available: {known}{get_manager().failures()}")
    spec = entry[0]
    if spec.prefix:
        options["arg"] = arg
    return spec.load(**options)


def load_training_data(name: str, size: int | None = None) -> Dataset:
    """The dataset ``name`` for training, resized to ``size`` x ``size`` when given
    (``--image-size``); a dataset that cannot resize (``mnist5k``'s digits are 28x28) is
    refused rather than silently trained at its own size while the run records ``size``."""
    if size is None:
        return load_dataset(name)
    dataset = load_dataset(name, size=int(size))
    if dataset.shape[1:] != (size, size):
        h, w = dataset.shape[1:]
        raise UsageError(f"image_size {size}: dataset {name} is {h}x{w} and does not resize; image_size applies to "
                         "photos and folder data (a run that recorded it resumes with --set image_size=null --force)")
    return dataset


def load_dataset_like(name: str, height: int, width: int, image_size: int | None = None) -> Dataset:
    """The dataset ``name`` at the size a model was trained on, for evaluating or benchmarking
    it: ``image_size`` when the run recorded one (``--image-size``), else the data's own size,
    reloaded at the model's side when that differs (a photos or folder model trained at 128, an
    exported file that records its height but not the option). A dataset of one fixed size
    ignores the request, and the caller's shape check names the mismatch. Loaded once: asking a
    dataset for the side it has anyway gives what loading it plainly gives."""
    if image_size is None and height == width:
        image_size = height
    return load_dataset(name) if image_size is None else load_dataset(name, size=int(image_size))


def available_losses() -> dict[str, AdversarialLoss]:
    return {name: obj for name, (obj, _) in get_manager().losses.items()}


def get_loss(name: str) -> AdversarialLoss:
    losses = available_losses()
    if name not in losses:
        raise UsageError(f"unknown loss {name!r}; available: {', '.join(losses)}{get_manager().failures()}")
    return losses[name]
