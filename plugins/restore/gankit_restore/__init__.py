"""gankit plugin ``restore``: repair low-quality images (super-resolution, denoising, deblurring, JPEG).

In the spirit of SRGAN/ESRGAN: the generator (:mod:`gankit_restore.model`) learns
low-quality -> high-quality from pairs that :mod:`gankit.data.degradations` makes from the
training images on the fly (``--set degradation=sr2|sr4|noise|blur|jpeg|real``), with an L1
loss, an adversarial loss from a spectrally normalised patch discriminator (weight
``gan_weight``) and a feature-matching loss on the discriminator's activations (``fm_weight``,
active only when ``gan_weight > 0``). ``--set gan_weight=0`` trains the PSNR-oriented model:
L1 only, and the trainer then skips the discriminator entirely. A user who has VGG19 weights
(torchvision layout) can add ESRGAN's perceptual loss with ``--set vgg_weights=PATH``.

The exported file is fully convolutional (task ``restore``): ``image`` [N, C, H, W] ->
``restored`` [N, C, sH, sW], with ``gankit.scale``, ``gankit.degradation`` and
``gankit.size_multiple`` in its metadata (docs/restore.md).
"""

from __future__ import annotations

import os
from typing import Any

from gankit import Key, Regularizer, hookimpl
from gankit.errors import UsageError
from gankit.family import ModelFamily

__version__ = "0.1.0"

DEGRADATIONS = ("sr2", "sr4", "noise", "blur", "jpeg", "real")  # gankit.data.degradations.NAMES

DEFAULTS: dict[str, Any] = {
    "data": "photos",
    "degradation": "sr2",
    "features": 48,
    "blocks": 6,
    "disc_width": 32,
    "l1_weight": 1.0,
    "gan_weight": 0.1,
    "vgg_weights": "",
    "vgg_weight": 1.0,
    # 2,000 steps, the last half with falling learning rates: the x2 photo GAN's whole command takes
    # about 8 minutes on a quiet 2-core machine; the 600 steps used before left the photo denoiser
    # 0.9 dB lower (33.17 -> 34.08 dB, benchmarks/RESULTS.md)
    "steps": 2000,
    "lr_decay": [1000, 2000],
    "batch_size": 16,
    "lr_g": 4e-4,
    "lr_d": 2e-4,
    "beta1": 0.9,
    "beta2": 0.99,
    "ema": 0.999,
    "spectral_norm": True,
    "loss": "bce",
    # NHWC, and bf16 autocast where the CPU has bf16 arithmetic (fp32 elsewhere): on an AMX CPU the
    # x2 photo GAN trained in 372 s instead of 921 s at 36.68 dB against 36.53 dB (patch FD 0.186
    # against 0.179), the photo denoiser 34.07 dB against 34.08 (benchmarks/RESULTS.md)
    "channels_last": True,
    "precision": "auto",
}

# 28x28 digits: a step costs a fifth of a 64x64 photo step, so batches are larger. The GAN weighs
# twice the photos' 0.1: at 0.1 the judge FD was 0.52x / 0.51x the PSNR model's (two seeds),
# at 0.2 0.26x / 0.19x for 0.6-0.8 dB (benchmarks/RESULTS.md)
DATA_DEFAULTS = {"mnist5k": {"steps": 2000, "batch_size": 32, "gan_weight": 0.2}}


def scale_of(config: dict[str, Any]) -> int:
    from gankit.data.degradations import SCALES

    return SCALES[str(config["degradation"])]


def _vgg_file(value: Any) -> str | None:
    if value and not os.path.isfile(str(value)):
        return f"VGG weights file not found: {value}"
    return None


def _feature_matching(ctx) -> Any:
    """Mean L1 distance between D's hidden activations on the restored and the real images
    (Salimans et al. 2016 / pix2pixHD): a learned, download-free perceptual loss."""
    import torch

    with torch.no_grad():
        real = ctx.D.features(ctx.augment(ctx.real))
    fake = ctx.D.features(ctx.augment(ctx.fake))
    return sum((f - r).abs().mean() for f, r in zip(fake, real)) / len(fake)


FEATURE_MATCHING = Regularizer(
    "feature_matching", _feature_matching, phase="G",
    weight=lambda cfg: float(cfg.get("fm_weight", 0.0)) if float(cfg.get("gan_weight", 0.0)) > 0 else 0.0,
    config_keys={"fm_weight": Key(float, 1.0, ge=0, help="feature matching on D's activations (when gan_weight > 0)")},
    description="L1 between the discriminator's activations on restored and real images",
)


class RestoreFamily(ModelFamily):
    config_keys = {
        "degradation": Key(str, choices=DEGRADATIONS, help="what to undo: sr2, sr4 (super-resolution), noise "
                                                           "(Gaussian sigma 25/255), blur, jpeg (quality 20), real (mix)"),
        "features": Key(int, ge=4, le=1024, help="generator channels"),
        "blocks": Key(int, ge=0, le=64, help="generator residual blocks"),
        "disc_width": Key(int, ge=4, le=1024, help="patch discriminator base width"),
        "l1_weight": Key(float, ge=0, help="L1 reconstruction loss"),
        "gan_weight": Key(float, ge=0, help="adversarial loss (0 = the PSNR-oriented model: L1 only, no discriminator)"),
        "vgg_weights": Key(str, check=_vgg_file, help="optional VGG19 weights (torchvision layout) for a perceptual loss"),
        "vgg_weight": Key(float, ge=0, help="weight of the perceptual loss when vgg_weights is set"),
    }

    def __init__(self, **attributes: Any) -> None:
        super().__init__(**attributes)
        self._vgg: dict[str, Any] = {}

    def prepare_data(self, dataset, config):
        s = scale_of(config)
        c, h, w = dataset.shape
        if h % s or w % s:
            raise UsageError(f"{config['degradation']} needs an image size that is a multiple of {s}; "
                             f"{dataset.name} has {h}x{w} (use --image-size)")
        return {"scale": s}

    def build_generator(self, config):
        from gankit_restore.model import RestoreGenerator

        return RestoreGenerator(int(config["channels"]), scale_of(config), int(config["features"]), int(config["blocks"]))

    def build_discriminator(self, config):
        from gankit_restore.model import PatchDiscriminator

        return PatchDiscriminator(int(config["channels"]), int(config["disc_width"]))

    def generator_inputs(self, real, labels, config, rng):
        import numpy as np
        import torch

        from gankit.data.degradations import degrade

        # the degradation's randomness is a function of the trainer's seeded (and checkpointed) stream
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=rng))
        lq = degrade(str(config["degradation"]), real.detach().float().cpu().numpy(), np.random.default_rng(seed))
        return {"image": torch.from_numpy(lq).to(real.device)}

    def adversarial_weight(self, config):
        return float(config["gan_weight"])

    def extra_generator_loss(self, fake, real, g_inputs, config):
        out = {"l1": float(config["l1_weight"]) * (fake - real).abs().mean()}
        if config.get("vgg_weights") and float(config["vgg_weight"]):
            vgg = self._vgg_net(str(config["vgg_weights"]), fake.device)
            out["perceptual"] = float(config["vgg_weight"]) * (vgg(fake) - vgg(real).detach()).abs().mean()
        return out

    def _vgg_net(self, path: str, device):
        if path not in self._vgg:
            from gankit_restore.model import load_vgg

            try:
                self._vgg[path] = load_vgg(path)
            except Exception as exc:
                raise UsageError(f"cannot load VGG weights {path}: {' '.join(str(exc).split())[:200]}") from None
        return self._vgg[path].to(device)

    def export_metadata(self, config):
        s = scale_of(config)
        return {"gankit.scale": str(s), "gankit.degradation": str(config["degradation"]),
                "gankit.size_multiple": "2" if s == 1 else "1"}


@hookimpl
def register_families(register):
    register(
        RestoreFamily(
            name="restore",
            task="restore",
            condition="image",
            description="image restoration (SR x2/x4, noise, blur, JPEG, real mix): residual CNN + patch GAN + L1 + feature matching",
            defaults=dict(DEFAULTS),
            data_defaults={k: dict(v) for k, v in DATA_DEFAULTS.items()},
            regularizers=(FEATURE_MATCHING,),
        )
    )
