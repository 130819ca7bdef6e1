"""gankit plugin ``cgan``: class-conditional GAN (Mirza & Osindero, 2014) on DCGAN blocks.

The generator receives the label as an embedding joined with z; the discriminator is a
projection discriminator (Miyato & Koyama, 2018) by default (``d_condition="concat"`` feeds
the label as one-hot input channels instead), with AC-GAN's auxiliary class head on top (Odena
et al., 2017; ``ac_weight``). Ask it for a "7" and you get a 7.
"""

from __future__ import annotations

from gankit import hookimpl
from gankit_gan import DEFAULTS, DCGANFamily

__version__ = "0.1.0"

# measured (README "Results"): DiffAugment lifts accuracy; mode seeking cures the intra-class
# collapse behind the Frechet distance; AC-GAN's auxiliary classifier keeps each class legible
# while mode seeking spreads it, so both can stay on for the whole run (3.4-3.8x the FD floor at
# accuracy 0.98, against 4.8-6.6x / 0.97 with mode seeking alone, faded out to keep accuracy).
# The learning rate (1e-3, the gan default) falls linearly to 0 over steps 400-800; 800 steps
# keep the run under 3 minutes, which is also why D keeps gan's plain two layers (the labels
# already tell it much of the shape; the extra 3x3 convolution measured no better, 3.6x / 3.8x
# at seeds 0 / 1 against 3.8x / 3.4x in 1-thread runs, and costs ~25% per step).
CGAN_DEFAULTS = {**DEFAULTS, "d_condition": "projection", "steps": 800, "diffaug": "translation,cutout",
                 "mode_seeking": 0.3, "mode_seeking_until": 0, "ac_weight": 0.5, "lr_decay": [400, 800],
                 "d_extra_convs": 0}


@hookimpl
def register_families(register):
    register(
        DCGANFamily(
            name="cgan",
            task="generate",
            condition="label",
            description="conditional DCGAN (Mirza & Osindero 2014; projection D): generate a chosen class",
            defaults=dict(CGAN_DEFAULTS),
        )
    )
