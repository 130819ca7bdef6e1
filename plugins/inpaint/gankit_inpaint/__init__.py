"""gankit plugin ``inpaint``: GAN image inpainting (restore the masked part of an image).

The generator sees the image with its holes and the mask, and is trained with an
adversarial loss from a patch discriminator plus L1 and L2 reconstruction losses over the
hole pixels (weights ``adv_weight``, ``l1_weight``, ``l2_weight``). L1 alone drove the
generator to paint every digit hole black (the per-pixel median); the L2 term, which
rewards the conditional mean, is what hole PSNR measures and kept training moving.
Masks are a seeded mix of rectangles and free-form strokes (:mod:`gankit.data.masks`).
On photos the adversarial term carries 100x the digits' weight: it is what puts texture into
holes that the reconstruction losses alone fill smoothly.
"""

from __future__ import annotations

from gankit import Key, hookimpl
from gankit.family import ModelFamily

__version__ = "0.1.0"

DEFAULTS = {
    "data": "mnist5k",
    "gen_width": 16,
    "disc_width": 32,
    "steps": 1200,
    "batch_size": 64,
    "lr_g": 5e-4,
    "lr_d": 2e-4,
    "beta1": 0.9,
    "clip_grad": 1.0,
    "beta2": 0.999,
    "loss": "bce",
    "ema": 0.999,
    "l1_weight": 1.0,
    "l2_weight": 1.0,
    "adv_weight": 0.01,
    "coarse_fill": "none",
    # NHWC, and bf16 autocast where the CPU has bf16 arithmetic (fp32 elsewhere): on an AMX CPU the
    # digits trained in 106 s instead of 208 s with the same hole PSNR (+3.74 / +2.50 dB over
    # biharmonic against +3.75 / +2.48; benchmarks/RESULTS.md)
    "channels_last": True,
    "precision": "auto",
}

# 64x64 RGB photo patches: the U-Net refines a classical biharmonic fill (from zero it stayed
# 2.6 dB below the biharmonic baseline after 600 steps); batches of 16, because the fill and
# the 64x64 U-Net make a step ~10x the cost of a digit step. The adversarial weight is 100x the
# digits' one: at 0.01 (or 0) the photo holes stay as smooth as the fill under them; at 1 the
# hole realism distance halves for ~0.1 dB of hole PSNR (benchmarks/RESULTS.md, inpaint). fp32:
# bf16 trained 1.35x faster but its holes were less real (distance 1.75 against fp32's 1.23 on
# rectangles, 1.46 against 0.99 on strokes, same machine and seed)
DATA_DEFAULTS = {"photos": {"coarse_fill": "biharmonic", "steps": 1500, "batch_size": 16, "adv_weight": 1.0,
                            "precision": "fp32"}}


class InpaintFamily(ModelFamily):
    config_keys = {
        "gen_width": Key(int, ge=1, le=4096, help="U-Net generator base width"),
        "disc_width": Key(int, ge=1, le=4096, help="patch discriminator base width"),
        "l1_weight": Key(float, ge=0, help="L1 loss over the hole pixels"),
        "l2_weight": Key(float, ge=0, help="L2 loss over the hole pixels"),
        "coarse_fill": Key(str, choices=("none", "biharmonic"), help="classical fill under the learned one"),
    }

    def build_generator(self, config):
        from gankit_inpaint.model import InpaintGenerator

        return InpaintGenerator(channels=int(config["channels"]), width=int(config["gen_width"]),
                                coarse_fill=str(config.get("coarse_fill", "none")))

    def build_discriminator(self, config):
        from gankit_inpaint.model import PatchDiscriminator

        return PatchDiscriminator(channels=int(config["channels"]), width=int(config["disc_width"]))

    def generator_inputs(self, real, labels, config, rng):
        import torch

        from gankit.data.masks import mixed_masks

        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=rng))
        mask = torch.from_numpy(mixed_masks(real.shape[0], real.shape[2], real.shape[3], seed=seed)).to(real.device)
        return {"image": real * (1 - mask), "mask": mask}

    def extra_generator_loss(self, fake, real, g_inputs, config):
        mask = g_inputs["mask"]
        holes = mask.sum() * real.shape[1]
        diff = (fake - real) * mask
        out = {"l1": float(config.get("l1_weight", 1.0)) * diff.abs().sum() / holes.clamp_min(1.0)}
        if float(config.get("l2_weight", 0.0)):
            out["l2"] = float(config["l2_weight"]) * diff.pow(2).sum() / holes.clamp_min(1.0)
        return out


@hookimpl
def register_families(register):
    register(
        InpaintFamily(
            name="inpaint",
            task="inpaint",
            condition="masked-image",
            description="GAN inpainting: U-Net generator, PatchGAN discriminator, adversarial + L1 + L2 on the hole",
            defaults=dict(DEFAULTS),
            data_defaults={k: dict(v) for k, v in DATA_DEFAULTS.items()},
        )
    )
