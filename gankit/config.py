"""The training config: one typed, validated, frozen mapping per run.

A run's config is built once (:func:`gankit.train.config.build_config`) from, in order, the
family's ``defaults``, its ``data_defaults`` for the chosen data, a config file
(``--config FILE.toml`` or a run's own ``config.json``), ``--set KEY=VALUE`` and the command's
options. Every key has a declared type and range (:class:`Key`); the merged values are checked
by pydantic, so ``--set ngf=-4`` or ``--lr nan`` is a one-line error before any work starts, an
unknown key is refused naming the closest valid one, and keys the core derives from the data
(``channels``, ``height``...) cannot be set at all. The result is a read-only :class:`Config`,
saved as ``config.json`` in the run directory and the only thing the trainer, the exporter and
the families read.

Why pydantic rather than plain dataclasses: the schema is assembled at run time from the core's
keys and each plugin family's own, and pydantic gives strict per-field type checks, numeric
bounds, NaN/inf refusal and readable messages for such dynamic models without us writing a
validator per type. It is imported only when a config is built, never by ``gankit --help``.

A family declares its keys in the same schema: every entry of ``defaults`` is a key whose type
is that of its default value (``64`` -> int, ``0.5`` -> float, ``True`` -> bool, ``"x"`` -> str,
``[1, 2]`` -> list), and ``config_keys`` may add bounds, choices and help::

    class MyFamily(ModelFamily):
        defaults = {"width": 64, "steps": 500}
        config_keys = {"width": Key(int, ge=8, help="generator channels")}
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from gankit.errors import UsageError

MISSING = object()


@dataclass(frozen=True)
class Key:
    """One config key: its type, default, bounds and help.

    ``type`` is a Python type (``int``, ``float``, ``bool``, ``str``, ``list``, ``dict``) or any
    type pydantic understands (``list[int]``, ``Literal[...]``); ``None`` means "the type of the
    default". ``nullable`` admits ``None`` (``null`` in JSON/TOML). ``check`` is called with the
    validated value and returns an error message, or ``None`` when the value is fine.
    ``volatile`` keys may change when a run is resumed (they do not change the result).
    """

    type: Any = None
    default: Any = MISSING
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple | None = None
    nullable: bool = False
    check: Callable[[Any], str | None] | None = None
    coerce: Callable[[Any], Any] | None = None  # applied to a given value before type checking
    volatile: bool = False
    help: str = ""

    def with_default(self, default: Any) -> "Key":
        return Key(**{**self.__dict__, "default": default})

    def resolved_type(self) -> Any:
        if self.type is not None:
            return self.type
        return type_of(self.default)


def type_of(value: Any) -> Any:
    if value is None or value is MISSING:
        return Any
    for t in (bool, int, float, str, list, dict):  # bool before int: True is an int in Python
        if isinstance(value, t):
            return t
    return Any


def _off_is_none(value: Any) -> Any:
    """``none``, ``off``, ``0`` and ``false`` switch a schedule off, as ``null`` does."""
    if value is False or (isinstance(value, int) and value == 0) or (isinstance(value, str) and value.lower() in ("none", "off", "false")):
        return None
    return value


def _step_pair(value: Any) -> str | None:
    if value is None:
        return None
    if len(value) != 2 or not 0 <= value[0] < value[1]:
        return f"must be two step counts [start, end] with 0 <= start < end, got {value}"
    return None


# The keys every run has. Families override their defaults and add their own keys.
CORE_KEYS: dict[str, Key] = {
    "data": Key(str, "mnist5k", help="training data: mnist5k, photos or folder:PATH"),
    "image_size": Key(int, None, ge=4, le=4096, nullable=True, help="image side for folder:/photos data"),
    "seed": Key(int, 0, ge=0, lt=2**63, help="random seed; same seed, same weights (on CPU)"),
    "device": Key(str, "auto", choices=("auto", "cpu", "cuda"), volatile=True, help="auto, cpu or cuda"),
    "steps": Key(int, 1000, ge=1, le=10**9, volatile=True, help="generator updates"),
    "batch_size": Key(int, 64, ge=2, le=65536, help="images per step (BatchNorm needs at least 2)"),
    "loss": Key(str, "bce", help="adversarial loss: bce, minimax, hinge, lsgan, wgan-gp or a plugin's"),
    "lr_g": Key(float, 2e-4, gt=0, le=10, help="generator learning rate"),
    "lr_d": Key(float, 2e-4, gt=0, le=10, help="discriminator learning rate"),
    "beta1": Key(float, 0.5, ge=0, lt=1, help="Adam beta1"),
    "beta2": Key(float, 0.999, ge=0, lt=1, help="Adam beta2"),
    "lr_decay": Key(list[int], None, nullable=True, check=_step_pair, coerce=_off_is_none,
                    help="[START, END]: both learning rates fall linearly to 0 between these absolute steps"),
    "n_critic": Key(int, None, ge=1, le=100, nullable=True, help="D updates per G update (default: the loss's)"),
    "gp_weight": Key(float, None, ge=0, nullable=True, help="gradient-penalty weight (default: the loss's)"),
    "r1": Key(float, 0.0, ge=0, help="R1 penalty weight gamma on real images (0 = off)"),
    "r1_every": Key(int, 1, ge=1, le=1000, help="R1 on every N-th D step only, weighted N times (lazy "
                    "regularisation, as StyleGAN2 does with 16; 1 = every step)"),
    "ema": Key(float, 0.0, ge=0, lt=1, help="EMA decay of the generator weights (0 = off)"),
    "diffaug": Key(str, None, nullable=True, help="DiffAugment policy for D: color,translation,cutout, all or none"),
    "flips": Key(str, "none", choices=("none", "hflip", "dihedral"),
                 help="random flips of the training images: hflip (mirror), dihedral (mirror and 90-degree "
                      "turns: 8 versions of every image); none for data whose mirror image is not valid (digits)"),
    "spectral_norm": Key(bool, False, help="spectral normalisation on every D layer"),
    "channels_last": Key(bool, False, help="NHWC memory format (faster convolutions on oneDNN/cuDNN)"),
    # not volatile: bf16 changes the result (benchmarks/RESULTS.md), so a resume that switches it needs --force
    "precision": Key(str, "fp32", choices=("fp32", "bf16", "auto"),
                     help="training arithmetic: fp32, bf16 autocast (fast where the CPU has AMX/AVX-512 bf16, or on "
                          "CUDA), or auto: bf16 on a CPU with bf16 arithmetic, fp32 elsewhere"),
    "adv_weight": Key(float, 1.0, ge=0, help="weight of G's adversarial loss"),
    "clip_grad": Key(float, 0.0, ge=0, help="max gradient norm of each update (0 = off)"),
    "ac_weight": Key(float, 0.0, ge=0, help="AC-GAN class-head weight (label-conditioned families)"),
    "mode_seeking": Key(float, 0.0, ge=0, help="mode-seeking (MSGAN) weight (generators with z)"),
    "mode_seeking_until": Key(int, 0, ge=0, help="mode-seeking weight falls linearly to 0 at this step (0 = constant)"),
    "sample_every": Key(int, None, ge=0, nullable=True, volatile=True,
                        help="sample grid (+ evaluation) every N steps (default steps/5; 0 = at the end only)"),
    "save_every": Key(int, None, ge=0, nullable=True, volatile=True,
                      help="checkpoint every N steps (default: sample_every; 0 = at the end only)"),
    "keep": Key(int, 3, ge=1, le=10**6, volatile=True, help="checkpoints to keep"),
    "log_every": Key(int, 25, ge=1, volatile=True, help="metrics.jsonl record every N steps"),
    "eval_samples": Key(int, None, ge=10, le=10**6, nullable=True, volatile=True,
                        help="images per evaluation (default: 1000 generated; inpainting: the whole test split)"),
}

# Keys the core derives from the family and the data: recorded in config.json, never set.
# world_size: the number of data-parallel ranks of the latest training session (volatile: a run
# resumes at any world size, bit-exactly at the same one)
DERIVED_KEYS = ("plugin", "task", "condition", "channels", "height", "width", "num_classes", "class_names",
                "config_hash", "world_size")


class Config(Mapping):
    """A run's validated, read-only config (a mapping: ``config["steps"]``, ``config.get(...)``)."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any]):
        object.__setattr__(self, "_values", dict(values))

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __setattr__(self, name, value):
        raise AttributeError("a Config is read-only; build a new one with .replace(...)")

    def replace(self, **changes: Any) -> "Config":
        return Config({**self._values, **changes})

    def to_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def __repr__(self) -> str:
        return f"Config({self._values!r})"


@dataclass
class Schema:
    """The keys one family's runs accept: the core's plus the family's own."""

    family: str
    keys: dict[str, Key] = field(default_factory=dict)

    def defaults(self) -> dict[str, Any]:
        return {k: spec.default for k, spec in self.keys.items() if spec.default is not MISSING}

    def volatile(self) -> set[str]:
        return {k for k, spec in self.keys.items() if spec.volatile}

    def unknown(self, key: str, where: str) -> UsageError:
        if key in DERIVED_KEYS:
            return UsageError(f"{where}{key}: derived from the data and the family, not set "
                              "(use --data, --image-size, --plugin)")
        close = difflib.get_close_matches(key, list(self.keys), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else f"; see `gankit train --plugin {self.family} --list-keys`"
        return UsageError(f"{where}{key}: unknown config key for {self.family}{hint}")

    def validate(self, values: Mapping[str, Any], sources: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Typed, range-checked copy of ``values`` (which must hold only schema keys), or a UsageError."""
        from pydantic import ValidationError

        sources = sources or {}
        for k in values:
            if k not in self.keys:
                raise self.unknown(k, sources.get(k, ""))
        values = {k: (self.keys[k].coerce(v) if self.keys[k].coerce else v) for k, v in values.items()}
        model = _pydantic_model(self)
        try:
            checked = model.model_validate(dict(values)).model_dump()
        except ValidationError as exc:
            err = exc.errors()[0]
            key = str(err["loc"][0]) if err.get("loc") else "?"
            got = values.get(key, err.get("input"))
            msg = err["msg"][0].lower() + err["msg"][1:]
            raise UsageError(f"{sources.get(key, '')}{key}: {msg}, got {got!r}") from None
        for k, v in checked.items():
            spec = self.keys[k]
            if isinstance(v, float) and not math.isfinite(v):
                raise UsageError(f"{sources.get(k, '')}{k} must be a finite number, got {v!r}")
            if spec.choices is not None and v not in spec.choices and not (v is None and spec.nullable):
                raise UsageError(f"{sources.get(k, '')}{k} must be one of {', '.join(map(str, spec.choices))}, got {v!r}")
            if spec.check is not None and k in values:
                problem = spec.check(v)
                if problem:
                    raise UsageError(f"{sources.get(k, '')}{k}: {problem}")
        return checked


_MODELS: dict[int, Any] = {}


def _pydantic_model(schema: Schema):
    """A strict pydantic model for the schema (cached per schema content)."""
    import typing

    from pydantic import ConfigDict, Field, create_model

    sig = hash(tuple((k, repr(s.resolved_type()), s.ge, s.gt, s.le, s.lt, s.nullable) for k, s in schema.keys.items()))
    if sig in _MODELS:
        return _MODELS[sig]
    fields = {}
    for k, spec in schema.keys.items():
        t = spec.resolved_type()
        bounds = {b: getattr(spec, b) for b in ("ge", "gt", "le", "lt") if getattr(spec, b) is not None}
        if t is float:
            bounds["allow_inf_nan"] = False
        ann = typing.Annotated[t, Field(**bounds)] if bounds else t
        if spec.nullable:
            ann = typing.Optional[ann]
        fields[k] = (ann, spec.default)
    model = create_model(f"Config_{schema.family}".replace("-", "_"),
                         __config__=ConfigDict(strict=True, extra="forbid"), **fields)
    _MODELS[sig] = model
    return model
