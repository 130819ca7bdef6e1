"""gankit plugin ``gan``: DCGAN for unconditional generation, trained on k-means clusters of its data.

Registered through the ``gankit`` entry-point group like any third-party plugin. torch is
imported only when a model is built, so ``gankit --help`` and ``gankit plugins`` stay fast.
"""

from __future__ import annotations

from gankit import Key, hookimpl
from gankit.family import ModelFamily

__version__ = "0.1.0"

DEFAULTS = {
    "data": "mnist5k",
    "latent_dim": 64,
    "ngf": 32,
    "ndf": 32,
    # one 3x3 convolution (64 -> 128 channels) after D's last downsampling: without labels, D
    # must judge a digit's whole shape, and two 4x4 layers see only 10x10-pixel patches
    # (its effect on FD and step time: benchmarks/RESULTS.md)
    "d_extra_convs": 1,
    # one hidden fully-connected layer (LeakyReLU) between D's features and its logit: a linear
    # logit can only weigh features one by one, so it cannot tell a set of digits that wander a
    # pixel or two about the centre from a centred set with the same average (a spread, not a
    # mean)
    "d_hidden": 256,
    # k-means clusters of the training images as pseudo-labels (gankit_gan.clusters): G and D
    # are conditioned on them like the cgan on its classes, and G reads its cluster from z.
    # No labels are used. The count was chosen by measurement (benchmarks/RESULTS.md)
    "clusters": 120,
    # mode seeking (MSGAN) against sameness within a cluster, as in the cgan
    "mode_seeking": 0.3,
    "steps": 600,
    "batch_size": 64,
    # 5x DCGAN's 2e-4, falling linearly to 0 over the second half: in a short budget the
    # higher rate gets the shapes right sooner and the decay anneals the noise it brings
    "lr_g": 1e-3,
    "lr_d": 1e-3,
    "lr_decay": [300, 600],
    "beta1": 0.5,
    "beta2": 0.999,
    "loss": "bce",
    "ema": 0.999,
    "channels_last": True,  # NHWC: oneDNN's faster convolution kernels (speed-up: benchmarks/RESULTS.md)
}


class DCGANFamily(ModelFamily):
    config_keys = {
        "latent_dim": Key(int, ge=1, le=4096, help="length of the noise vector z"),
        "ngf": Key(int, ge=1, le=4096, help="generator width (channels of its last hidden layer)"),
        "ndf": Key(int, ge=1, le=4096, help="discriminator width (channels of its first layer)"),
        "d_extra_convs": Key(int, ge=0, le=8, help="extra 3x3 convolutions after D's last downsampling"),
        "d_hidden": Key(int, ge=0, le=65536, help="units of D's hidden layer before its outputs (0 = none)"),
        "clusters": Key(int, ge=0, le=10000, help="k-means clusters of the data as pseudo-labels (0 = off)"),
    }

    # -- clusters as pseudo-labels (unconditional family only; see gankit_gan.clusters) --
    def _clusters(self, config) -> int:
        k = _count(config, "clusters")
        if k and self.condition != "none":
            from gankit.errors import UsageError

            raise UsageError(f"clusters is for unconditional families; {self.name} is conditioned on its labels")
        return k

    def prepare_data(self, dataset, config):
        """The cluster count this data allows and the clusters' sizes (saved in the run's config)."""
        if not self._clusters(config):
            return {}
        from gankit_gan.clusters import cluster_sizes, usable_clusters

        k = usable_clusters(self._clusters(config), len(dataset.x_train))
        if not k:
            return {"clusters": 0}
        return {"clusters": k, "cluster_sizes": cluster_sizes(self._labels(dataset, {**config, "clusters": k}), k)}

    def training_labels(self, dataset, config):
        return self._labels(dataset, config) if self._sizes(config) else dataset.y_train

    def _sizes(self, config) -> list[float]:
        """The clusters' sizes saved by ``prepare_data`` (what G and D are built for), or []."""
        return list(config.get("cluster_sizes") or []) if self._clusters(config) else []

    def _labels(self, dataset, config):
        from gankit_gan.clusters import cluster_labels

        try:
            return cluster_labels(dataset.x_train, self._clusters(config), int(config.get("seed", 0)))
        except ValueError as e:
            from gankit.errors import UsageError

            raise UsageError(str(e)) from None

    def generator_inputs(self, real, labels, config, rng):
        inputs = super().generator_inputs(real, labels, config, rng)
        sizes = self._sizes(config)
        if sizes:  # z[:, 0] drawn from the slice of N(0, 1) that asks for the real batch's clusters
            import torch

            from gankit_gan.clusters import slice_starts

            lo = torch.from_numpy(slice_starts(sizes))[labels.cpu()]
            width = torch.tensor(sizes, dtype=torch.float64)[labels.cpu()]
            # inside the slice, clear of its ends, so float32 rounding cannot carry z into a neighbour
            u = lo + width * (0.001 + 0.998 * torch.rand(len(labels), generator=rng, dtype=torch.float64))
            z = inputs["z"]  # freshly drawn above: ours to change
            z[:, 0] = torch.special.ndtri(u.clamp(1e-9, 1 - 1e-9)).float().to(z.device)
        return inputs

    def discriminator_inputs(self, images, labels, g_inputs):
        if self.condition == "none":  # the clusters, when there are; a D without them ignores its label
            return (images, labels)
        return super().discriminator_inputs(images, labels, g_inputs)

    def build_generator(self, config):
        from gankit_gan.model import Generator

        _removed(config, "upsample", "convtranspose")

        return Generator(
            latent_dim=int(config["latent_dim"]),
            channels=int(config["channels"]),
            size=int(config["height"]),
            width=int(config["ngf"]),
            num_classes=int(config.get("num_classes", 0)) if self.condition == "label" else 0,
            cluster_sizes=self._sizes(config),
        )

    def export_module(self, generator, config):
        """A copy whose cluster lookup exports as ops every ONNX consumer loads (same numbers)."""
        if getattr(generator, "code_embed", None) is None:
            return generator
        import copy

        generator = copy.deepcopy(generator)
        generator.onehot_lookup = True
        return generator

    def build_discriminator(self, config):
        from gankit_gan.model import Discriminator

        _removed(config, "d_condition", "projection")

        return Discriminator(
            channels=int(config["channels"]),
            size=int(config["height"]),
            width=int(config["ndf"]),
            num_classes=int(config.get("num_classes", 0)) if self.condition == "label" else len(self._sizes(config)),
            spectral_norm=bool(config.get("spectral_norm", False)),
            # BatchNorm couples the samples of a batch, which breaks the per-sample gradient
            # penalty of a WGAN-GP critic (Gulrajani et al. use none): off for wgan-gp
            batchnorm=config.get("loss") != "wgan-gp",
            class_head=bool(config.get("ac_weight")) and self.condition == "label",  # the trainer uses it only there
            extra_convs=_count(config, "d_extra_convs"),
            hidden=_count(config, "d_hidden"),
        )


def _removed(config, key: str, only: str) -> None:
    """Runs made before the experiment switch ``key`` was removed record its one remaining
    value; any other value is refused in one line instead of silently ignored."""
    if config.get(key, only) != only:
        from gankit.errors import UsageError

        raise UsageError(f"{key}={config[key]!r} is no longer available (only {only!r} is)")


def _count(config, key: str) -> int:
    """A whole number >= 0 from the config (a layer or unit count), or a one-line UsageError."""
    value = config.get(key, 0) or 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        from gankit.errors import UsageError

        raise UsageError(f"{key} must be a whole number >= 0, got {value!r}")
    return value


@hookimpl
def register_families(register):
    register(
        DCGANFamily(
            name="gan",
            task="generate",
            condition="none",
            description="DCGAN (Radford et al. 2015) on k-means clusters of its data: unconditional image generation",
            defaults=dict(DEFAULTS),
        )
    )
