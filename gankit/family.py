"""What a model family is: the contract between gankit's core and a plugin.

A family knows how to build its generator and discriminator, what the generator is fed
during training and at export, and which extra losses it adds to the adversarial one.
The core (trainer, exporter, runtime, evaluation) only ever talks to a family through
this class, so a third-party family trains, exports and runs exactly like a built-in.

Nothing here imports torch at module level: listing families must stay instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal

from gankit.config import CORE_KEYS

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

Task = Literal["generate", "inpaint", "restore"]

#: config keys the core's trainer needs; a family that leaves one out of its ``defaults`` gets these
# the core keys' defaults a family most often sets itself (every core key: gankit.config.CORE_KEYS)
CORE_DEFAULTS: dict[str, Any] = {k: CORE_KEYS[k].default for k in ("steps", "batch_size")}
Condition = Literal["none", "label", "masked-image", "image"]


@dataclass
class LatentSpace:
    """A generator's intermediate latent space W, for ``gankit project`` (:meth:`ModelFamily.latent_space`).

    ``synthesize`` maps styles ``ws`` [N, num_layers, w_dim] to images [N, C, H, W] in [-1, 1]
    (differentiably, with fixed noise); ``sample_w(n, generator)`` draws n w's [n, w_dim] of
    random latents (their spread scales the projector's exploration noise); ``w_avg`` [w_dim] is
    where a projection starts.
    """

    num_layers: int
    w_avg: "torch.Tensor"
    sample_w: "Callable[[int, torch.Generator], torch.Tensor]"
    synthesize: "Callable[[torch.Tensor], torch.Tensor]"


class ModelFamily:
    """Base class of every model family. Subclass it and override the ``build_*`` methods.

    Declare the attributes below on the subclass, as plain class attributes::

        class ResGAN(ModelFamily):
            name = "resgan"
            description = "ResNet blocks"
            defaults = {"latent_dim": 64, "features": 32, "steps": 500, "batch_size": 64}

    or pass them as keywords when constructing it (``ResGAN(name="resgan-wide",
    defaults={...})``), which is how one class serves several families (``gan`` and ``cgan``).
    Keywords win over class attributes; an unknown keyword is a ``TypeError`` naming it.
    ``ModelFamily`` is a plain class, not a dataclass: class attributes are never replaced
    by base-class defaults.

    Attributes
    ----------
    name:
        Unique name, used as ``gankit train --plugin NAME``.
    task:
        ``"generate"`` (noise [+ label] -> image), ``"inpaint"`` (masked image -> image) or
        ``"restore"`` (low-quality image -> image ``config["scale"]`` times larger; the generator
        is fed ``image`` at ``height // scale`` and must be fully convolutional).
    condition:
        What the generator is conditioned on: ``"none"``, ``"label"``, ``"masked-image"`` or
        ``"image"`` (restore).
    description:
        One line for ``gankit plugins``.
    defaults:
        Training and architecture defaults; ``gankit train`` options override them and the
        merged dict (the *config*) is what every ``build_*`` method receives. Keys the core
        needs and the family leaves out (``steps``, ``batch_size``) come from
        :data:`CORE_DEFAULTS`.
    config_keys:
        (class attribute) ``{key: gankit.Key(...)}``: types, bounds, choices and help for the
        family's keys, checked before training starts (``--set ngf=-4`` is refused).
    data_defaults:
        Per-dataset changes to ``defaults`` (``{"photos": {"steps": 300}}``), applied when
        training on that dataset, before the command-line options: a recipe measured on 28x28
        digits is rarely the right one for 64x64 photographs.
    regularizers:
        :class:`gankit.Regularizer` terms added whenever this family trains (e.g. a lazy R1
        or path-length regulariser), after the core's and the loss's.
    """

    # class-level defaults; a subclass's class attributes or the constructor's keywords replace them
    name: str = ""
    task: Task = "generate"
    condition: Condition = "none"
    description: str = ""
    defaults: dict[str, Any] = {}
    data_defaults: dict[str, dict[str, Any]] = {}
    regularizers: tuple = ()
    # bounds, choices and help for config keys (gankit.config.Key); every key of ``defaults`` is a
    # config key already, typed by its default value: declare it here only to constrain it further
    config_keys: ClassVar[dict[str, Any]] = {}

    #: what the constructor accepts as keywords (and ``describe`` reports)
    FIELDS: ClassVar[tuple[str, ...]] = ("name", "task", "condition", "description", "defaults", "data_defaults",
                                         "regularizers")

    def __init__(self, **attributes: Any) -> None:
        unknown = sorted(set(attributes) - set(self.FIELDS))
        if unknown:
            raise TypeError(f"{type(self).__name__}() got unknown attribute(s) {', '.join(unknown)}; "
                            f"a family takes {', '.join(self.FIELDS)}")
        for key, value in attributes.items():
            setattr(self, key, value)
        # own copies: a family that edits its defaults must not change its class's (or a sibling's)
        # (anything but a dict is left for the registry's check to name, e.g. a dataclass field())
        if isinstance(self.defaults, dict):
            self.defaults = dict(self.defaults)
        if isinstance(self.data_defaults, dict):
            self.data_defaults = {k: dict(v) if isinstance(v, dict) else v for k, v in self.data_defaults.items()}
        if isinstance(self.regularizers, list):
            self.regularizers = tuple(self.regularizers)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, task={self.task!r}, condition={self.condition!r})"

    # -- building ----------------------------------------------------------------------
    def build_generator(self, config: dict[str, Any]) -> "nn.Module":
        """Return a fresh generator for ``config`` (shapes in ``config['channels'|'height'|'width']``)."""
        raise NotImplementedError(f"family {self.name!r} does not build a generator")

    def build_discriminator(self, config: dict[str, Any]) -> "nn.Module":
        """Return a fresh discriminator; it returns one logit per image (or per patch)."""
        raise NotImplementedError(f"family {self.name!r} does not build a discriminator")

    # -- training ----------------------------------------------------------------------
    def prepare_data(self, dataset: Any, config: dict[str, Any]) -> dict[str, Any]:
        """Config entries derived from the training data before the models are built ({} by default).

        Called once per run after the user's overrides are applied; what it returns is saved in
        the run's config, so it must be a deterministic function of the data and the config.
        """
        return {}

    def training_labels(self, dataset: Any, config: dict[str, Any]) -> Any:
        """One integer per training image, passed to ``generator_inputs`` and ``discriminator_inputs``.

        The dataset's labels by default; an unconditional family may supply its own (e.g. clusters).
        """
        return dataset.y_train

    def generator_inputs(
        self, real: "torch.Tensor", labels: "torch.Tensor", config: dict[str, Any], rng: "torch.Generator"
    ) -> dict[str, "torch.Tensor"]:
        """Inputs of the generator for one training batch, keyed by ONNX input name.

        The default draws ``z`` (and passes ``label`` when ``condition == "label"``).
        """
        import torch

        z = torch.randn(real.shape[0], int(config["latent_dim"]), generator=rng, device="cpu").to(real.device)
        inputs = {"z": z}
        if self.condition == "label":
            inputs["label"] = labels
        return inputs

    def discriminator_inputs(
        self, images: "torch.Tensor", labels: "torch.Tensor", g_inputs: dict[str, "torch.Tensor"]
    ) -> tuple:
        """Positional arguments for ``discriminator(...)`` judging ``images``."""
        if self.condition == "label":
            return (images, labels)
        if self.condition == "masked-image":
            return (images, g_inputs["mask"])
        return (images,)

    def extra_generator_loss(
        self, fake: "torch.Tensor", real: "torch.Tensor", g_inputs: dict[str, "torch.Tensor"], config: dict[str, Any]
    ) -> dict[str, "torch.Tensor"]:
        """Losses added to the generator's adversarial loss (e.g. L1 reconstruction), by name."""
        return {}

    # -- export ------------------------------------------------------------------------
    def export_inputs(self, config: dict[str, Any], batch: int, seed: int = 0) -> dict[str, "torch.Tensor"]:
        """Example generator inputs for export and parity checks, keyed by ONNX input name."""
        import torch

        g = torch.Generator().manual_seed(seed)
        if self.task == "inpaint":
            c, h, w = int(config["channels"]), int(config["height"]), int(config["width"])
            image = torch.rand(batch, c, h, w, generator=g) * 2 - 1
            mask = (torch.rand(batch, 1, h, w, generator=g) > 0.6).float()
            return {"image": image, "mask": mask}
        if self.task == "restore":
            # the low-quality input: the run's image size divided by the family's scale
            c, s = int(config["channels"]), int(config.get("scale", 1))
            h, w = int(config["height"]) // s, int(config["width"]) // s
            return {"image": torch.rand(batch, c, h, w, generator=g) * 2 - 1}
        inputs = {"z": torch.randn(batch, int(config["latent_dim"]), generator=g)}
        if self.condition == "label":
            inputs["label"] = torch.randint(0, int(config["num_classes"]), (batch,), generator=g)
        return inputs

    def adversarial_weight(self, config: dict[str, Any]) -> float:
        """A factor on the trainer's adversarial loss (``adv_weight``); 1 by default.

        0 makes training purely supervised (e.g. restore's ``gan_weight=0``, the PSNR-oriented
        model): the trainer then never runs the discriminator, unless a generator-side
        regulariser needs it.
        """
        return 1.0

    def latent_space(self, generator: "nn.Module", config: dict[str, Any]) -> LatentSpace | None:
        """The generator's style space for ``gankit project`` (None by default: the family has none)."""
        return None

    def export_module(self, generator: "nn.Module", config: dict[str, Any]) -> "nn.Module":
        """The module to hand to ``torch.onnx.export`` (override for export-only swaps)."""
        return generator

    def export_optional_inputs(self, config: dict[str, Any], batch: int, seed: int = 0) -> dict[str, "torch.Tensor"]:
        """Extra generator inputs that the exported file gives a default (none by default).

        Example values, keyed by ONNX input name, used to trace the export and to check
        parity; they come after :meth:`export_inputs`'s in the file. Each needs a default in
        :meth:`export_input_defaults`, so a caller who feeds only the contract's inputs still
        runs the file (e.g. StyleGAN's ``truncation``, ``z2`` and ``crossover``).
        """
        return {}

    def export_input_defaults(self, config: dict[str, Any]) -> dict[str, Any]:
        """Default value (a numpy array) of each optional input, written as an initializer of the same name."""
        return {}

    def export_metadata(self, config: dict[str, Any]) -> dict[str, str]:
        """Family-specific ``metadata_props`` added to the exported file (``gankit.*`` keys documented by the family)."""
        return {}

    @property
    def output_name(self) -> str:
        return "restored" if self.task in ("inpaint", "restore") else "image"
