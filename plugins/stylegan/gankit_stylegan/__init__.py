"""gankit plugin ``stylegan``: StyleGAN2 (Karras et al. 2020) sized to train on 2 CPU cores.

Two families: ``stylegan`` (unconditional) and ``stylegan-cond`` (label-conditioned mapping
network and projection discriminator). The networks are in :mod:`gankit_stylegan.networks`,
the regularisers (lazy R1 on D, path length on G) in :mod:`gankit_stylegan.regularizers`;
both run through gankit's regulariser mechanism, not a private trainer path.

The exported file takes ``z`` (and ``label``) like every generate-family file, plus three
inputs with defaults - ``truncation`` (psi, default 1), ``z2`` and ``crossover`` (style
mixing; the default crossover is the layer count, i.e. no mixing) - so a bare onnxruntime
user who feeds only ``z`` gets an image. torch is imported only when a model is built.
"""

from __future__ import annotations

from gankit import Key, hookimpl
from gankit.family import ModelFamily
from gankit_stylegan.regularizers import LAZY_R1, PATH_LENGTH

__version__ = "0.1.0"

DEFAULTS = {
    "data": "mnist5k",
    "latent_dim": 64,
    "w_dim": 64,
    "mapping_layers": 2,
    # 64 channels at the 7x7 base (two modulated convs there), halving per resolution: 7, 14, 28
    # with 64, 32, 16 channels and one modulated conv each above the base. The first
    # prototype (two convs per resolution, 96/48/24 channels, batch 64) cost 0.8 s a step;
    # benchmarks/RESULTS.md has this size's measured cost
    "g_channels": 64,
    "g_min_channels": 16,
    "base_convs": 2,
    "d_channels": 64,
    "d_min_channels": 16,
    # 6,500 steps: about 12.5-13 minutes of training on 2 quiet cores (0.11-0.12 s a step),
    # and 14.8 minutes at the slowest speed measured (0.137 s a step): inside the 15-minute budget. FD/floor with the R1
    # weight below, seeds 0 / 1: 3.4x / 3.6x at 4k, 1.86x / 2.57x at 6k, 1.80x / 2.31x at 6.5k,
    # 1.76x / 2.03x at 7k; 7,000 steps would cost over 15 minutes on the slower hours measured
    # (0.137 s a step). benchmarks/RESULTS.md has the curves and what else was tried
    "steps": 6500,
    "batch_size": 32,
    # StyleGAN2's optimiser: Adam(0.0025, betas 0, 0.99) with equalised learning rates
    "lr_g": 0.0025,
    "lr_d": 0.0025,
    "beta1": 0.0,
    "beta2": 0.99,
    "loss": "bce",  # non-saturating logistic loss
    "ema": 0.998,
    # No augmentation by default: within a 6,500-step budget D does not overfit 4,000 images, and
    # augmentation (and heavy style mixing) only slowed G down: at step 1,500 FD/floor was 29.4x
    # with translation+cutout and mixing 0.9, 14.5x without augmentation and mixing 0.5
    # (benchmarks/RESULTS.md). `--diffaug translation,cutout` (Zhao et al. 2020) stays available
    # for long runs, where D would start to memorise the set.
    "diffaug": "none",
    # lazy R1 on D (gamma/2 * E|grad D(x)|^2), every r1_every D iterations. 0.5, not 0.05: at
    # step 2,000 FD/floor 6.3x instead of 10.5x (seed 0), and 2.57x instead of 6.84x after
    # 6,000 steps on seed 1 (benchmarks/RESULTS.md)
    "r1_gamma": 0.5,
    "r1_every": 16,
    "pl_weight": 0.0,   # path-length regularisation on G (StyleGAN2 uses 2); off by default: it costs
    "pl_every": 4,      # a second generator pass with double backprop every pl_every steps
    "style_mixing": 0.5,  # probability that a training sample mixes two w's at a random layer (see diffaug)
    "w_avg_beta": 0.995,
    "sample_every": 500,
}


class StyleGANFamily(ModelFamily):
    """StyleGAN2 generator + residual D; ``condition="label"`` makes the conditional variant."""

    task = "generate"
    regularizers = (LAZY_R1, PATH_LENGTH)
    # bounds, so that a value the networks cannot build is refused in one line, not built as
    # something else (base_convs=0 used to build one convolution while config.json said 0)
    config_keys = {
        "latent_dim": Key(int, ge=1, le=4096, help="length of the noise vector z"),
        "w_dim": Key(int, ge=1, le=4096, help="length of the style vector w"),
        "mapping_layers": Key(int, ge=1, le=16, help="layers of the mapping network z -> w"),
        "g_channels": Key(int, ge=1, le=4096, help="generator channels at the base resolution"),
        "g_min_channels": Key(int, ge=1, le=4096, help="the fewest generator channels (halved per level down to it)"),
        "base_convs": Key(int, ge=1, le=8, help="modulated convolutions at the base resolution"),
        "d_channels": Key(int, ge=1, le=4096, help="discriminator channels at its lowest resolution"),
        "d_min_channels": Key(int, ge=1, le=4096, help="the fewest discriminator channels"),
        "r1_gamma": Key(float, ge=0, help="lazy R1 weight gamma (0 = off)"),
        "r1_every": Key(int, ge=1, help="D iterations between R1 terms"),
        "pl_weight": Key(float, ge=0, help="path-length regularisation weight (0 = off)"),
        "pl_every": Key(int, ge=1, help="steps between path-length terms"),
        "style_mixing": Key(float, ge=0, le=1, help="probability that a training sample mixes two w's"),
        "w_avg_beta": Key(float, ge=0, le=1, help="decay of the running average of w (truncation's centre)"),
    }

    def _config(self, config):
        return {**config, "conditional": self.condition == "label"}

    def build_generator(self, config):
        from gankit_stylegan.networks import Generator

        return Generator(self._config(config))

    def build_discriminator(self, config):
        from gankit_stylegan.networks import Discriminator

        return Discriminator(self._config(config))

    def export_module(self, generator, config):
        """A copy whose graph OpenCV's classic ONNX importer loads (each module's ``portable``
        says what it swaps): no Shape of the dynamic batch (the learned constant broadcasts
        instead of repeating), no ReduceMean on a 2-D batch (a matmul with 1/C), no GatherND (the
        label embedding as a Gather), no two-axis Unsqueeze (a Reshape), no Where or stacked
        [N, layers, w] styles (per-layer 0/1 mixing), no Reshape of the scalar defaults.

        The same numbers up to float summation order (the z^2 mean; under 1e-5 on the images,
        plugins/stylegan/tests), and the training module keeps its ops, so training and seeded
        results do not change.
        """
        import copy

        generator = copy.deepcopy(generator)
        for m in generator.modules():
            if hasattr(type(m), "portable"):
                m.portable = True
        return generator

    def latent_space(self, generator, config):
        """W for ``gankit project``: the synthesis network on [N, layers, w] styles, in eval mode
        (fixed noise, as the exported file); random w's from the mapping network (random labels
        for the conditional variant)."""
        import torch

        from gankit.family import LatentSpace

        G = generator.eval().requires_grad_(False)  # only w is optimised: no weight gradients

        def sample_w(n, gen):
            z = torch.randn(n, G.z_dim, generator=gen)
            label = torch.randint(0, G.num_classes, (n,), generator=gen) if G.num_classes else None
            return G.mapping(z, label)

        return LatentSpace(num_layers=G.num_layers, w_avg=G.w_avg.detach().clone(), sample_w=sample_w,
                           synthesize=G.synthesis)

    # -- the exported file's optional inputs (gankit.family's export hooks) ----------------
    def export_optional_inputs(self, config, batch, seed=0):
        """Example values of ``z2``, ``crossover`` and ``truncation`` for tracing and parity checks."""
        import torch

        from gankit_stylegan.networks import count_layers

        g = torch.Generator().manual_seed(10_000 + seed)
        layers = count_layers(config)
        return {
            "z2": torch.randn(batch, int(config["latent_dim"]), generator=g),
            "crossover": torch.randint(0, layers + 1, (), generator=g),
            "truncation": torch.rand((), generator=g) * 0.8 + 0.2,
        }

    def export_input_defaults(self, config):
        """What a caller who feeds only z gets: no truncation, no mixing (z2 is then unused)."""
        import numpy as np

        from gankit_stylegan.networks import count_layers

        return {
            "z2": np.zeros((1, int(config["latent_dim"])), np.float32),
            "crossover": np.asarray(count_layers(config), np.int64),
            "truncation": np.asarray(1.0, np.float32),
        }

    def export_metadata(self, config):
        from gankit_stylegan.networks import coarse_layers, count_layers

        return {
            "gankit.num_layers": str(count_layers(config)),
            "gankit.truncation": "1",
            "gankit.mix_crossover": str(coarse_layers(config)),
        }


@hookimpl
def register_families(register):
    register(StyleGANFamily(name="stylegan", condition="none", defaults=dict(DEFAULTS),
                            description="StyleGAN2 (Karras et al. 2020): mapping network, modulated convs, "
                                        "truncation and style mixing from the file"))
    register(StyleGANFamily(name="stylegan-cond", condition="label", defaults=dict(DEFAULTS),
                            description="label-conditioned StyleGAN2: class embedding in the mapping network, "
                                        "projection D"))
