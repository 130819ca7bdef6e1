"""Building a run's :class:`~gankit.config.Config` from every source, in one place.

Sources, later ones winning: the family's ``defaults``, its ``data_defaults`` for the data,
a config file (TOML, or a run's own ``config.json``), ``--set KEY=VALUE``, the command's
options. An option and a ``--set`` of the same key that disagree are refused rather than
one silently winning. The data name and image size are resolved first (they decide which
``data_defaults`` apply and what is loaded); the rest is validated against the family's
schema, then the keys derived from the data and the family are added.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import dataclasses

from gankit.config import CORE_KEYS, DERIVED_KEYS, MISSING, Config, Key, Schema, type_of
from gankit.errors import UsageError


def read_config_file(path: str | Path, dropped: list[str] | None = None) -> dict[str, Any]:
    """Keys from ``FILE.toml`` or a run's ``config.json`` (derived keys of a run's config dropped).

    A run's config.json is read as that run ran (:func:`as_recorded`, as resume reads it), and
    the keys its family no longer takes are left out and appended to ``dropped`` (the caller
    warns about those the family does not derive again, such as gan's cluster_sizes)."""
    path = Path(path)
    if path.is_dir() and (path / "config.json").is_file():
        path = path / "config.json"  # a run directory stands for its config
    if not path.is_file():
        raise UsageError(f"config file not found: {path}")
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            with open(path, "rb") as fh:
                values = tomllib.load(fh)
        elif path.suffix.lower() == ".json":
            values = json.loads(path.read_text())
        else:
            raise UsageError(f"config file {path} should end in .toml or .json")
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # TOMLDecodeError and JSONDecodeError are ValueErrors
        raise UsageError(f"unreadable config file {path}: {' '.join(str(exc).split())}") from None
    if not isinstance(values, dict):
        raise UsageError(f"config file {path} must hold a table of keys")
    nested = [k for k, v in values.items() if isinstance(v, dict)]
    if nested:
        raise UsageError(f"config file {path}: tables are not supported ({', '.join(nested)}); write KEY = VALUE lines")
    if "config_hash" in values:  # a run's own config.json: what it derived is derived again
        values = {k: v for k, v in values.items() if k not in DERIVED_KEYS or k == "plugin"}
        if "plugin" in values:
            # and so is what its family's prepare_data derived from the data and saved beside
            # the keys (gan's cluster_sizes, restore's scale): not settable keys, so dropped as the
            # resume path drops them, where a hand-written file with such a key is refused
            from gankit.plugins import get_family

            family = get_family(str(values["plugin"]))
            if dropped is not None:
                known = schema_for(family).keys
                dropped.extend(k for k in values if k not in known and k != "plugin")
            values = {"plugin": values["plugin"], **as_recorded(family, values)}
        # sample_every and save_every left unset are derived from steps and recorded as values; a
        # recorded value equal to what was derived is taken as derived, so `--config RUN --steps N`
        # samples and saves on N's schedule rather than on the old run's. A value someone chose that
        # happens to equal the derived one cannot be told apart: it follows N too
        steps, sample = values.get("steps"), values.get("sample_every")
        if isinstance(steps, int) and sample == derived_sample_every(steps):
            del values["sample_every"]
            if values.get("save_every") == sample:
                del values["save_every"]
    return values


def derived_sample_every(steps: int) -> int:
    """``sample_every`` when not given: five samples (and checkpoints) over the run."""
    return max(1, steps // 5)


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``["steps=5", "lr_decay=[1,2]"]`` -> values (JSON where it parses, else the string)."""
    out: dict[str, Any] = {}
    for item in items:
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise UsageError(f"--set expects KEY=VALUE, got {item!r}")
        if key in out:
            raise UsageError(f"--set {key} given twice")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def merge_sources(file_values: Mapping[str, Any], sets: Mapping[str, Any],
                  options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """File < --set < options, with a conflict between --set and an option refused.

    Returns the merged overrides and, per key, where it came from (for error messages).
    """
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for k, v in file_values.items():
        merged[k], sources[k] = v, "config file: "
    for k, v in sets.items():
        merged[k], sources[k] = v, "--set "
    for k, v in options.items():
        if v is None:
            continue
        if k in sets and sets[k] != v:
            raise UsageError(f"{k} given twice with different values: --set {k}={sets[k]!r} and its option ({v!r})")
        merged[k], sources[k] = v, ""
    return merged, sources


def data_choice(family, overrides: Mapping[str, Any]) -> tuple[str, int | None]:
    """The data name and image size a run will use (needed before the data is loaded)."""
    data = overrides.get("data") or (family.defaults or {}).get("data") or "mnist5k"
    if not isinstance(data, str):
        raise UsageError(f"data must be a name (mnist5k, photos, folder:PATH), got {data!r}")
    size = overrides.get("image_size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or not 4 <= size <= 4096):
        raise UsageError(f"image_size must be a whole number from 4 to 4096, got {size!r}")
    return data, size


def build_config(family, dataset, *, data: str | None = None, seed: int | None = None, device: str | None = None,
                 overrides: Mapping[str, Any] | None = None, sources: Mapping[str, str] | None = None) -> Config:
    """The validated, frozen config of a run of ``family`` on ``dataset`` (already loaded).

    ``overrides`` are the merged user values (:func:`merge_sources`); ``data``/``seed``/``device``
    are shorthands for the same keys, kept for callers that build a config directly.
    """
    schema = schema_for(family)
    # None from a caller means "not given", except for keys where null is a value (lr_decay: off)
    over = {k: v for k, v in (overrides or {}).items()
            if v is not None or (k in schema.keys and schema.keys[k].nullable)}
    for k, v in (("data", data), ("seed", seed), ("device", device)):
        if v is not None:
            over[k] = v
    over.pop("plugin", None)
    data_name = over.get("data") or schema.keys["data"].default
    values = schema.defaults()
    values.update((getattr(family, "data_defaults", None) or {}).get(data_name, {}))
    values.update(over)
    checked = schema.validate(values, sources)
    c, h, w = dataset.shape
    if h != w:
        raise UsageError(f"only square images are supported, dataset {data_name} has {h}x{w}")
    labelled = family.condition == "label"
    checked.update(
        plugin=family.name, task=family.task, condition=family.condition, channels=c, height=h, width=w,
        num_classes=dataset.num_classes if labelled else 0, class_names=list(dataset.class_names) if labelled else [],
    )
    checked.update(family.prepare_data(dataset, Config(checked)) or {})
    if checked["sample_every"] is None:
        checked["sample_every"] = derived_sample_every(checked["steps"])
    if checked["save_every"] is None:
        checked["save_every"] = checked["sample_every"]
    return Config(checked)


def refuse_user_nulls(family, overrides: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    """A null written in ``--set`` (or ``pipeline.train(overrides=...)``, which counts as ``--set``)
    or a config file for a key that takes none is refused: it used to mean "the default", silently.
    None from an option, or from ``build_config`` called without sources, still means "not given"."""
    keys = schema_for(family).keys
    for k, v in overrides.items():
        if v is None and k in keys and not keys[k].nullable and sources.get(k) in ("--set ", "config file: "):
            kind = getattr(keys[k].resolved_type(), "__name__", "a value")
            raise UsageError(f"{sources[k]}{k}: null is not a value of this key ({kind}); leave it out for the default")


def check_resume_options(resume: bool, force: bool, out: Any) -> None:
    """The options that only make sense together, checked before any rank or data is started."""
    if resume and out is None:
        raise UsageError("--resume needs --out RUN_DIR")
    if force and not resume:
        raise UsageError("--force applies to --resume (it accepts a changed config); a new run needs no --force")


def settable(family, key: str) -> bool:
    return key in schema_for(family).keys


def unrecorded_defaults(family) -> dict[str, Any]:
    """What a run did for a key its config.json does not record (the key did not exist yet when
    it was made): the core's default for a core key, which keeps the behaviour from before the key
    existed, even where the family has since chosen another default (restore's
    ``precision = "auto"`` would turn an old fp32 run into bf16); the family's own default for
    its own keys. Never a ``data_defaults`` value."""
    schema = schema_for(family)
    return {k: (CORE_KEYS[k].default if k in CORE_KEYS else spec.default) for k, spec in schema.keys.items()}


def as_recorded(family, saved: Mapping[str, Any]) -> dict[str, Any]:
    """The settable keys of a run's saved config as that run ran: the values it records, and for
    a key it predates the value it had then (:func:`unrecorded_defaults`). Derived keys and keys
    this gankit no longer takes are left out. How resume and ``--config RUN_DIR`` read a run."""
    legacy = unrecorded_defaults(family)
    recorded = {k: saved[k] for k in legacy if k in saved and k not in DERIVED_KEYS}
    return {**{k: v for k, v in legacy.items() if k not in saved and k not in DERIVED_KEYS and v is not MISSING},
            **recorded}


def changed_keys(family, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Keys whose value differs between a run's saved config and its resume (volatile ones aside).

    A key missing from an older run's config counts as :func:`unrecorded_defaults` says, so a run
    made before a key existed resumes as long as the key keeps that value.
    """
    schema = schema_for(family)
    volatile = schema.volatile() | {"config_hash", "world_size"}
    defaults = unrecorded_defaults(family)
    out = []
    for k in sorted(set(old) | set(new)):
        if k in volatile or k not in new:  # a key this gankit no longer has: see obsolete_keys
            continue
        a, b = old.get(k, defaults.get(k)), new.get(k, defaults.get(k))
        if a != b and not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and list(a) == list(b)):
            out.append(k)
    return out


def obsolete_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Keys an older run's config has that this gankit no longer uses (they are dropped on resume)."""
    return sorted(k for k in old if k not in new and k not in DERIVED_KEYS)


def describe_keys(family) -> list[dict[str, Any]]:
    """Rows for ``gankit train --plugin NAME --list-keys``."""
    rows = []
    for k, spec in schema_for(family).keys.items():
        t = spec.resolved_type()
        bounds = " ".join(f"{op} {getattr(spec, b):g}" for b, op in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
                          if getattr(spec, b) is not None)
        if spec.choices:
            bounds = " | ".join(map(str, spec.choices))
        rows.append({"key": k, "type": getattr(t, "__name__", str(t)) + (" or null" if spec.nullable else ""),
                     "default": spec.default, "range": bounds, "help": spec.help})
    return rows


def schema_for(family) -> Schema:
    """The core keys, with the family's defaults and declared keys (types inferred from defaults)."""
    keys = dict(CORE_KEYS)
    # checks that need the registry and the trainer's modules (gankit.config sits below both)
    keys["loss"] = dataclasses.replace(keys["loss"], check=_loss)
    keys["diffaug"] = dataclasses.replace(keys["diffaug"], check=_diffaug)
    keys.update(_plugin_keys(family))
    declared = dict(getattr(family, "config_keys", None) or {})
    per_data = {k for d in (getattr(family, "data_defaults", None) or {}).values() for k in d}
    for k, spec in declared.items():
        if not isinstance(spec, Key):
            raise UsageError(f"family {family.name!r}: config_keys[{k!r}] must be a gankit.Key, got {type(spec).__name__}")
        keys[k] = spec
    for k, v in (getattr(family, "defaults", None) or {}).items():
        if k in DERIVED_KEYS:
            raise UsageError(f"family {family.name!r} uses reserved config key {k!r} in its defaults "
                             "(the core derives it from the data); rename it, e.g. ngf/features")
        keys[k] = keys[k].with_default(v) if k in keys else Key(type_of(v), v, nullable=v is None)
    for k in per_data - set(keys):
        raise UsageError(f"family {family.name!r}: data_defaults sets {k!r}, which is not in its defaults or config_keys")
    missing = [k for k, spec in keys.items() if spec.default is MISSING]
    if missing:
        raise UsageError(f"family {family.name!r}: config key(s) {', '.join(missing)} have no default")
    return Schema(family.name, keys)


def _plugin_keys(family) -> dict[str, Key]:
    """Keys declared by the registered losses and regularisers and the family's own regularisers."""
    from gankit.plugins import get_manager

    mgr = get_manager()
    owners = [obj for obj, _ in mgr.losses.values()] + [obj for obj, _ in mgr.regularizers.values()]
    owners += list(getattr(family, "regularizers", None) or ())
    owners += [r for obj, _ in mgr.losses.values() for r in (getattr(obj, "regularizers", None) or ())]
    keys: dict[str, Key] = {}
    for owner in owners:
        for k, spec in (getattr(owner, "config_keys", None) or {}).items():
            if not isinstance(spec, Key):
                raise UsageError(f"{type(owner).__name__} {getattr(owner, 'name', '?')!r}: config_keys[{k!r}] must be a "
                                 f"gankit.Key, got {type(spec).__name__}")
            if k in CORE_KEYS or (k in keys and keys[k] != spec):
                raise UsageError(f"config key {k!r} is declared twice (by {getattr(owner, 'name', '?')!r} and another "
                                 "plugin or the core); rename one")
            keys[k] = spec
    return keys


def _diffaug(value: Any) -> str | None:
    from gankit.train.augment import POLICIES

    if value in (None, "none", "all"):
        return None
    bad = [p for p in str(value).split(",") if p.strip() not in POLICIES]
    return f"unknown policy {', '.join(bad)}; use none, all or any of {', '.join(POLICIES)} (comma-separated)" if bad else None


def _loss(value: Any) -> str | None:
    from gankit.plugins import get_manager

    names = list(get_manager().losses)
    return None if value in names else f"unknown loss {value!r}; available: {', '.join(names)}"
