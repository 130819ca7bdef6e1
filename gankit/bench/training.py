"""Training speed: gankit's trainer against a plain PyTorch loop of the same architecture.

The plain loop is what a typical reference implementation does (PyTorch-GAN's ``cgan.py``
pattern): a ``DataLoader`` over a float tensor dataset with shuffling, generator step then
discriminator step with ``BCEWithLogitsLoss``, Adam, the discriminator's weights left
trainable during the generator step; for restore, the SRGAN-style loop of
:func:`_plain_restore_stepper`. Both run the family's own G and D on the same data,
batch size and thread count; images/s is measured over the same number of steps after
warm-up, alternating the two to cancel drift.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable


def _gankit_stepper(family, dataset, config, workdir: Path):
    from gankit.train.run import RunDir
    from gankit.train.trainer import Trainer

    run = RunDir(workdir / "gankit")
    run.create(config)
    trainer = Trainer(family, dataset, config, run)

    def step():
        # an evaluation in between may have put G in eval mode (it is the sampled G when EMA is off)
        trainer.G.train(), trainer.D.train()
        return trainer.train_step()

    step.trainer = trainer  # type: ignore[attr-defined]
    return step


def _epochs(tensors, batch_size: int):
    """Shuffled batches, epoch after epoch, as a reference script's ``for epoch: for batch in
    loader`` loops draw them. The first epoch's iterator is made now, as those scripts make it
    before their first step (it draws the sampler's seed from torch's generator)."""
    import torch

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*tensors), batch_size=batch_size,
                                         shuffle=True, drop_last=True)
    first = iter(loader)

    def batches():
        yield from first
        while True:
            yield from loader

    return batches()


def _plain_stepper(family, dataset, config):
    import torch
    from torch import nn

    torch.manual_seed(0)
    G, D = family.build_generator(config), family.build_discriminator(config)
    x = torch.from_numpy(dataset.x_train).float() / 127.5 - 1
    y = torch.from_numpy(dataset.y_train)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()
    latent, k = int(config["latent_dim"]), int(config.get("num_classes") or 0)
    conditional = family.condition == "label"
    batches = _epochs((x, y), int(config["batch_size"]))
    # R1 is part of the recipe where the family's defaults switch it on (cgan): the plain loop
    # pays for it too, written as a reference script would (gamma/2 E|grad D(x)|^2), lazily on
    # every r1_every-th step with the weight scaled to match, as StyleGAN2's script does. This
    # loop halves its BCE terms where gankit's bce adds them, so R1 is halved too: the same
    # balance against the adversarial loss (Adam ignores the overall scale)
    gamma, every = float(config.get("r1") or 0.0), int(config.get("r1_every") or 1)
    count = [0]

    def step():
        G.train()  # an evaluation in between may have switched it to eval mode
        imgs, labels = next(batches)
        bs = imgs.shape[0]
        valid, fake = torch.ones(bs), torch.zeros(bs)
        z = torch.randn(bs, latent)
        gen_labels = torch.randint(0, max(k, 1), (bs,))
        g_args = {"z": z, "label": gen_labels} if conditional else {"z": z}
        d_args = (lambda im, lab: (im, lab)) if conditional else (lambda im, lab: (im,))
        opt_g.zero_grad()
        gen = G(**g_args)
        g_loss = bce(D(*d_args(gen, gen_labels)), valid)
        g_loss.backward()
        opt_g.step()
        opt_d.zero_grad()
        r1_due = gamma > 0 and count[0] % every == 0
        count[0] += 1
        real = imgs.requires_grad_(True) if r1_due else imgs
        d_real = D(*d_args(real, labels))
        d_loss = (bce(d_real, valid) + bce(D(*d_args(gen.detach(), gen_labels)), fake)) / 2
        if r1_due:
            (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
            d_loss = d_loss + every * gamma / 4 * grad.flatten(1).pow(2).sum(1).mean()
        d_loss.backward()
        opt_d.step()
        return {"d_loss": float(d_loss.detach()), "g_loss": float(g_loss.detach())}

    step.G = G  # type: ignore[attr-defined]
    return step


def _plain_restore_stepper(family, dataset, config):
    """The plain loop of a restore GAN, as an SRGAN/pix2pix reference script writes it: a
    shuffled ``DataLoader``, the same degradation function, G then D each step in fp32 NCHW, and
    the family's losses (L1 + BCE adversarial + feature matching on D's activations) and Adam
    settings, with spectral norm on D as the family trains it; no EMA, no checkpoints."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from gankit.data.degradations import degrade
    from gankit.train.stabilizers import apply_spectral_norm

    torch.manual_seed(0)
    G, D = family.build_generator(config), family.build_discriminator(config)
    if config.get("spectral_norm"):
        apply_spectral_norm(D)
    x = torch.from_numpy(dataset.x_train).float() / 127.5 - 1
    betas = (float(config["beta1"]), float(config["beta2"]))
    opt_g = torch.optim.Adam(G.parameters(), lr=float(config["lr_g"]), betas=betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=float(config["lr_d"]), betas=betas)
    name, rng = str(config["degradation"]), np.random.default_rng(0)
    gan_w, fm_w, l1_w = float(config["gan_weight"]), float(config.get("fm_weight", 1.0)), float(config["l1_weight"])
    batches = _epochs((x,), int(config["batch_size"]))

    def step():
        G.train()
        (real,) = next(batches)
        lq = torch.from_numpy(degrade(name, real.numpy(), rng))
        fake = G(lq)
        opt_d.zero_grad()
        d_real, d_fake = D(real), D(fake.detach())
        d_loss = (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
                  + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
        d_loss.backward()
        opt_d.step()
        opt_g.zero_grad()
        with torch.no_grad():
            real_feats = D.features(real)
        fake_feats = D.features(fake)
        adv = D.out(fake_feats[-1])
        fm = sum((f - r).abs().mean() for f, r in zip(fake_feats, real_feats)) / len(fake_feats)
        g_loss = (l1_w * (fake - real).abs().mean() + gan_w * F.binary_cross_entropy_with_logits(adv, torch.ones_like(adv))
                  + fm_w * fm)
        g_loss.backward()
        opt_g.step()
        return {"d_loss": float(d_loss.detach()), "g_loss": float(g_loss.detach())}

    step.G = G  # type: ignore[attr-defined]
    return step


def plain_stepper(family, dataset, config):
    """The plain PyTorch loop for ``family``: the restore one, or the DCGAN-style one."""
    return (_plain_restore_stepper if family.task == "restore" else _plain_stepper)(family, dataset, config)


# The plain loops leave out what a default recipe adds on top (augmentation, mode seeking, flips):
# the race is between two loops doing the same work. gankit's row runs in the family's default
# precision: "auto" (cgan, restore) is bf16 on a CPU with bf16 arithmetic, whose quality stayed within
# what one seed to the next moves (benchmarks/RESULTS.md); the plain loops are fp32.
SAME_RECIPE = {"diffaug": "none", "mode_seeking": 0.0, "flips": "none"}
TRAINING_FAMILIES = ("cgan", "restore")  # restore's row when the bench covers restore


def training_speed(plugin: str = "cgan", steps: int = 20, warmup: int = 5, threads: int | None = None,
                   log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    import torch

    from gankit.plugins import get_family, load_dataset
    from gankit.sysinfo import cpu_has_bf16
    from gankit.train.config import build_config

    if threads:
        torch.set_num_threads(threads)
    family = get_family(plugin)
    data = family.defaults.get("data", "mnist5k")
    dataset = load_dataset(data)
    # same recipe as the plain loop (its speed, not a richer default recipe's extra work, is compared)
    config = build_config(family, dataset, data=data, seed=0, device="cpu", overrides=SAME_RECIPE)
    with tempfile.TemporaryDirectory() as tmp:
        steppers = {"gankit": _gankit_stepper(family, dataset, config, Path(tmp) / "a"),
                    "plain": plain_stepper(family, dataset, config)}
        precision = steppers["gankit"].trainer.precision
        # the opt-in bf16 recipe, only where the CPU has bf16 arithmetic (AMX / AVX-512 bf16; torch's
        # own _is_mkldnn_bf16_supported is also true on plain AVX-512, where bf16 is emulated)
        if cpu_has_bf16() and precision != "bf16":
            bf16 = build_config(family, dataset, data=data, seed=0, device="cpu", overrides={**SAME_RECIPE, "precision": "bf16"})
            steppers["gankit_bf16"] = _gankit_stepper(family, dataset, bf16, Path(tmp) / "b")
        for fn in steppers.values():
            for _ in range(warmup):
                fn()
        spent = {k: 0.0 for k in steppers}
        for _ in range(steps):
            for name, fn in steppers.items():  # interleaved: both see the same machine state
                t0 = time.perf_counter()
                fn()
                spent[name] += time.perf_counter() - t0
    bs = int(config["batch_size"])
    ips = {k: steps * bs / v for k, v in spent.items()}
    rec = {"kind": "training_ratio", "model": plugin, "batch": bs, "steps": steps,
           "gankit_images_per_s": round(ips["gankit"], 1), "plain_images_per_s": round(ips["plain"], 1),
           "ratio": round(ips["gankit"] / ips["plain"], 3), "channels_last": bool(config.get("channels_last", False)),
           "precision": precision}
    log(f"training {plugin}: gankit {rec['gankit_images_per_s']:.0f} images/s ({precision}), plain loop "
        f"{rec['plain_images_per_s']:.0f} images/s ({rec['ratio']:.2f}x)")
    if "gankit_bf16" in ips:
        rec["gankit_bf16_images_per_s"] = round(ips["gankit_bf16"], 1)
        rec["bf16_ratio"] = round(ips["gankit_bf16"] / ips["plain"], 3)
        log(f"  with --set precision=bf16: {rec['gankit_bf16_images_per_s']:.0f} images/s ({rec['bf16_ratio']:.2f}x the plain loop)")
    return [rec]


def _accuracy_run(name: str, step_fn: Callable[[], Any], generator: Callable[[], Any], evaluate, target: float,
                  max_steps: int, eval_every: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Train with ``step_fn`` until the judged conditional accuracy of ``generator()`` reaches
    ``target``; the clock counts training steps only, never the evaluations."""
    from gankit.bench.report import fd_times

    spent, curve = 0.0, []
    for step in range(1, max_steps + 1):
        t0 = time.perf_counter()
        step_fn()
        spent += time.perf_counter() - t0
        if step % eval_every == 0 or step == max_steps:
            rec = evaluate(generator())
            acc = float(rec["conditional_accuracy"])
            curve.append({"step": step, "train_s": round(spent, 2), "conditional_accuracy": acc, "fd_ratio": rec["fd_ratio"]})
            if acc >= target:
                log(f"  {name}: accuracy {acc:.3f} >= {target:.3f} at step {step}, {spent:.0f} s of training "
                    f"(FD {fd_times(rec['fd_ratio'])} the floor then)")
                return {"reached": True, "step": step, "train_s": round(spent, 2), "fd_ratio": rec["fd_ratio"], "curve": curve}
    log(f"  {name}: accuracy target {target:.3f} not reached in {max_steps} steps ({spent:.0f} s; best "
        f"{max(c['conditional_accuracy'] for c in curve):.3f})")
    return {"reached": False, "step": None, "train_s": None, "spent_s": round(spent, 2), "curve": curve}


def time_to_quality(plugin: str = "cgan", *, max_steps: int | None = None, eval_every: int = 50, samples: int = 1000,
                    threads: int | None = None, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Training time until the judge's conditional accuracy on generated samples first reaches
    the judge's own accuracy on real test digits (the cgan issue's target): ``gankit train``'s
    trainer with the family's default recipe against the plain loop on the same architecture,
    data, batch size and seed. Evaluated every ``eval_every`` steps; at most ``max_steps``
    (default: twice the family's default step count) each."""
    import torch

    from gankit.plugins import load_dataset
    from gankit.evaluate import evaluate_generator, reference, torch_sample_fn
    from gankit.plugins import get_family
    from gankit.train.config import build_config

    if threads:
        torch.set_num_threads(threads)
    family = get_family(plugin)
    if family.condition != "label":
        raise ValueError(f"time to quality needs a class-conditional family (accuracy target); {plugin} is not")
    data = family.defaults.get("data", "mnist5k")
    dataset = load_dataset(data)
    config = build_config(family, dataset, data=data, seed=0, device="cpu", overrides={})
    target = reference(dataset).test_accuracy
    max_steps = int(max_steps or 2 * int(config["steps"]))

    def judged(G) -> dict[str, Any]:
        return evaluate_generator(torch_sample_fn(G), dataset, latent_dim=int(config["latent_dim"]), conditional=True,
                                  samples=samples, seed=0)

    out: dict[str, Any] = {"kind": "time_to_quality", "model": plugin, "target_accuracy": round(target, 4),
                           "batch": int(config["batch_size"]), "eval_every": eval_every, "samples": samples,
                           "max_steps": max_steps}
    with tempfile.TemporaryDirectory() as tmp:
        step = _gankit_stepper(family, dataset, config, Path(tmp))
        trainer = step.trainer
        out["precision"] = trainer.precision  # gankit's side: bf16 or fp32, as "auto" resolved here

        def gankit_generator():
            trainer.refresh_ema_statistics()
            return trainer.sample_generator

        out["gankit"] = _accuracy_run("gankit (default recipe)", step, gankit_generator, judged, target,
                                      max_steps, eval_every, log)
    plain = _plain_stepper(family, dataset, config)
    out["plain"] = _accuracy_run("plain loop", plain, lambda: plain.G, judged, target, max_steps, eval_every, log)
    g, p = out["gankit"].get("train_s"), out["plain"].get("train_s")
    out["speedup"] = round(p / g, 3) if g and p else None
    return [out]
