"""The generic GAN trainer: alternating discriminator and generator updates.

The loop is the same for every family; the family decides what the generator is fed
(:meth:`ModelFamily.generator_inputs`), what the discriminator sees
(:meth:`ModelFamily.discriminator_inputs`) and which extra losses the generator gets
(:meth:`ModelFamily.extra_generator_loss`). Defaults follow DCGAN: Adam(2e-4, 0.5, 0.999),
non-saturating BCE. On CPU a run is deterministic for a given seed, and resuming from a
checkpoint continues bit-for-bit where it stopped (data order is a pure function of seed
and epoch; the noise RNG state is saved).

Over 400 lines on purpose: it is one class, and its parts (state, data, one step over the
rank's slices, roll-back, the loop) share the trainer's fields; RNG capture, schedules, interrupts, standing statistics,
regularisers and the run directory already live in their own modules beside it.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from gankit.data import Dataset
from gankit.devices import resolve_device, resolve_precision  # noqa: F401 - resolve_device is also imported from here
from gankit.family import ModelFamily
from gankit.train import checkpoint as ckpt
from gankit.train import distributed
from gankit.train import rng as rng_state
from gankit.train.interrupt import Interrupted, StopOnInterrupt
from gankit.train.augment import diff_augment, parse_policy
from gankit.train.losses import get_loss, mode_seeking
from gankit.train.regularizers import RegularizerContext, active_regularizers
from gankit.train.monitor import TrainingMonitor
from gankit.train.run import RunDir, config_hash
from gankit.train.schedules import linear_fall, non_negative, step_range
from gankit.train.stabilizers import apply_spectral_norm, ema_decay_at, ema_update, standing_statistics


@dataclass
class TrainResult:
    step: int
    seconds: float
    images_per_s: float
    last: dict[str, float] = field(default_factory=dict)
    final_eval: dict[str, Any] | None = None
    checkpoint: str = ""


class Trainer:
    """Trains one family on one dataset into one run directory."""

    def __init__(
        self,
        family: ModelFamily,
        dataset: Dataset,
        config: dict[str, Any],
        run: RunDir,
        evaluator: Callable[[Any, int], dict[str, Any]] | None = None,
        sampler: Callable[[Any], np.ndarray] | None = None,
        world: Any = None,
        precision: str | None = None,
    ):
        import torch

        from gankit.train.distributed import SINGLE

        self.family, self.dataset, self.config, self.run = family, dataset, config, run
        self.evaluator, self.sampler = evaluator, sampler
        # data-parallel ranks (gankit.train.distributed): rank 0 alone writes to the run directory
        self.world = world if world is not None else SINGLE
        self.device = torch.device(resolve_device(config.get("device", "auto")))
        if self.device.type == "cuda" and self.world.distributed:
            self.device = torch.device("cuda", torch.cuda.current_device())
        # what the step runs in: "auto" settled for this device (fp32 or bf16), or as rank 0 settled
        # it (``precision``), so that ranks on different CPUs still compute alike
        self.precision = precision or resolve_precision(str(config.get("precision", "fp32")), self.device.type)
        self._rows, self._slice_count, self._slice_state = None, 1, None
        self.world.slices(int(config["batch_size"]))  # a global batch that does not split evenly: one line, now
        seed = int(config["seed"])
        rng_state.seed_all(seed)
        self.G = family.build_generator(config).to(self.device)
        self.D = family.build_discriminator(config).to(self.device)
        if config.get("spectral_norm"):
            apply_spectral_norm(self.D)  # no-op when the family already applied it
        # channels_last: oneDNN (CPU) and cuDNN pick faster convolution kernels for NHWC
        self.channels_last = bool(config.get("channels_last", False))
        self.flips = {"none": 0, "hflip": 2, "dihedral": 8}[str(config.get("flips") or "none")]
        if self.channels_last:
            self.G = self.G.to(memory_format=torch.channels_last)
            self.D = self.D.to(memory_format=torch.channels_last)
        self.ema_decay = float(config.get("ema", 0.0) or 0.0)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False) if self.ema_decay > 0 else None
        # NCCL: BatchNorm over the global batch (SyncBatchNorm); the EMA copy keeps plain BatchNorm
        self.G, self.D = distributed.sync_batchnorm(self.world, self.G), distributed.sync_batchnorm(self.world, self.D)
        # DCGAN's Adam settings unless the family or the user says otherwise
        betas = (float(config.get("beta1", 0.5)), float(config.get("beta2", 0.999)))
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=float(config.get("lr_g", 2e-4)), betas=betas, foreach=True)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=float(config.get("lr_d", 2e-4)), betas=betas, foreach=True)
        self.loss = get_loss(config.get("loss", "bce"))
        self.n_critic = int(config.get("n_critic") or self.loss.n_critic)
        # gradient penalty, R1 and any plugin's terms, each with its weight and interval (regularizers.py)
        regs = active_regularizers(family, self.loss, config)
        self.d_regularizers = [r for r in regs if r.regularizer.phase == "D"]
        self.g_regularizers = [r for r in regs if r.regularizer.phase == "G"]
        self.diffaug = parse_policy(config.get("diffaug"))
        self.aug_rng = torch.Generator().manual_seed(seed + 2)
        self.monitor = TrainingMonitor(self.loss, run, family, total_steps=int(config.get("steps", 0)), config=config)
        self.adv_weight = float(config.get("adv_weight", 1.0)) * float(family.adversarial_weight(config))
        self.clip_grad = float(config.get("clip_grad", 0.0) or 0.0)  # max gradient norm, 0 = off
        # auxiliary classifier (AC-GAN, Odena et al. 2017) for label-conditioned families: the
        # discriminator's class head learns the classes from real images, and the generator is
        # rewarded (weight ac_weight) when that head recognises the requested class in its output
        self.ac_weight = non_negative(config.get("ac_weight", 0.0), "ac_weight") if family.condition == "label" else 0.0
        # mode seeking (MSGAN) needs a latent code to compare: generate-task families only
        self.mode_seeking = float(config.get("mode_seeking", 0.0) or 0.0) if family.task == "generate" else 0.0
        # mode_seeking_until = N > 0: the weight falls linearly to 0 at step N (spread early, class
        # fidelity late). A fixed step, not a fraction of --steps: a run stopped at step k and
        # resumed with more steps must repeat exactly the uninterrupted run's first k steps.
        until = config.get("mode_seeking_until", 0) or 0
        if not isinstance(until, (int, float)) or isinstance(until, bool) or until < 0 or int(until) != until:
            from gankit.errors import UsageError

            raise UsageError(f"mode_seeking_until must be a step count >= 0 (0 = constant weight), got {until!r}")
        self.mode_seeking_until = int(until)
        # lr_decay = [start, end]: both learning rates fall linearly from their value at step
        # `start` to 0 at step `end` (absolute steps, so a resumed run repeats the same schedule)
        self.lr_decay = step_range(config.get("lr_decay"), "lr_decay")
        self.base_lr = (self.opt_g.param_groups[0]["lr"], self.opt_d.param_groups[0]["lr"])
        self.lr_scale = 1.0  # halved by each roll-back after a non-finite loss
        self.noise = torch.Generator().manual_seed(seed + 1)
        self.x = torch.from_numpy(dataset.x_train)  # uint8, converted per batch
        self.y = torch.from_numpy(np.ascontiguousarray(family.training_labels(dataset, config), dtype=np.int64))
        self.step = 0
        self.rollbacks = 0
        self._perm_epoch: int | None = None
        self._ema_stats_step: int | None = None  # step whose EMA weights the BatchNorm statistics match
        self.hash = config_hash(config)

    # -- state -------------------------------------------------------------------------
    @property
    def sample_generator(self):
        """The generator that is sampled, evaluated and exported (EMA when enabled)."""
        return self.G_ema if self.G_ema is not None else self.G

    def mode_seeking_weight(self) -> float:
        if self.mode_seeking_until:
            return self.mode_seeking * linear_fall(self.step, 0, self.mode_seeking_until)
        return self.mode_seeking

    def lr_factor(self) -> float:
        if not self.lr_decay:
            return self.lr_scale
        return self.lr_scale * linear_fall(self.step, *self.lr_decay)

    def _set_learning_rates(self) -> None:
        f = self.lr_factor()
        for opt, base in zip((self.opt_g, self.opt_d), self.base_lr):
            for group in opt.param_groups:
                group["lr"] = base * f

    def refresh_ema_statistics(self, batches: int = 8) -> None:
        """Recompute the EMA generator's BatchNorm statistics (see ``stabilizers.standing_statistics``).

        Called before every checkpoint, sample grid and evaluation, so what is saved, exported
        and judged agrees; its own seeded noise leaves training (and resuming) unaffected.
        """
        import torch

        if self.G_ema is None or self._ema_stats_step == self.step:  # already fresh for this step's weights
            return
        self._ema_stats_step = self.step
        noise = torch.Generator().manual_seed(int(self.config["seed"]) + 3)

        def inputs(i):
            real, labels = self.real_batch(i)
            g_in = self.family.generator_inputs(real, labels, self.config, noise)
            return {k: v.to(self.device) for k, v in g_in.items()}

        standing_statistics(self.G_ema, (inputs(i) for i in range(batches)))

    def save(self) -> str:
        """Write a checkpoint (rank 0); every rank calls it, and every rank's weights must agree."""
        self.refresh_ema_statistics()
        modules = {"G": self.G, "D": self.D}
        if self.G_ema is not None:
            modules["G_ema"] = self.G_ema
        path = ckpt.path_for(self.run.checkpoints, self.step)
        self.world.check_consistent(modules)
        if not self.world.is_main:
            self.world.barrier()  # rank 0 writes; the file exists for everyone after this
            return str(path)
        path = ckpt.save(
            path,
            modules=modules,
            optimizers={"opt_g": self.opt_g, "opt_d": self.opt_d},
            rng=rng_state.capture({"noise": self.noise, "augment": self.aug_rng}),
            meta={"step": self.step, "config_hash": self.hash, "plugin": self.family.name, "lr_scale": self.lr_scale,
                  "precision": self.precision},  # what ran: config.json may say "auto"
        )
        ckpt.prune(self.run.checkpoints, int(self.config.get("keep", 3)))
        self.world.barrier()
        return str(path)

    def restore(self, c: ckpt.Checkpoint) -> None:
        self.G.load_state_dict(c.module_state("G"))
        self.D.load_state_dict(c.module_state("D"))
        if self.G_ema is not None and c.has("G_ema"):
            self.G_ema.load_state_dict(c.module_state("G_ema"))
        self.opt_g.load_state_dict(c.optimizer_state("opt_g"))
        self.opt_d.load_state_dict(c.optimizer_state("opt_d"))
        rng_state.restore(c, {"noise": self.noise, "augment": self.aug_rng})
        self.step = c.step
        self.lr_scale = float(c.meta.get("lr_scale", 1.0))

    # -- data --------------------------------------------------------------------------
    def batch_indices(self, step: int) -> "Any":
        """Indices of the batch for ``step``: epoch permutations seeded by (seed, epoch)."""
        import torch

        n, bs = len(self.x), int(self.config["batch_size"])
        per_epoch = max(1, n // bs)
        epoch, k = divmod(step, per_epoch)
        if self._perm_epoch != epoch:
            g = torch.Generator().manual_seed((int(self.config["seed"]) * 100003 + epoch) % 2**63)  # any allowed seed
            self._perm, self._perm_epoch = torch.randperm(n, generator=g), epoch
        if bs >= n:
            return self._perm
        return self._perm[k * bs : (k + 1) * bs]

    def real_batch(self, step: int):
        import torch

        idx = self.batch_indices(step)
        x = self.x[idx].to(self.device, non_blocking=True).float().div_(127.5).sub_(1.0)
        if self.flips:
            x = self._flip(x, step)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.y[idx].to(self.device)

    def _flip(self, x, step: int):
        """One of ``self.flips`` dihedral versions per image (k % 2: mirror; k // 2: quarter turns),
        drawn from a generator seeded by (seed, step) alone: a resumed run flips exactly as the
        uninterrupted one did, and no other random stream moves. Quarter turns keep the shape because
        training images are square (``build_config`` refuses others)."""
        import torch

        g = torch.Generator().manual_seed((int(self.config["seed"]) * 1_000_003 + 7919 * step + 1) % 2**63)
        k = torch.randint(0, self.flips, (x.shape[0],), generator=g)
        out = x.clone()
        for kind in k.unique().tolist():
            sel = (k == kind).nonzero().flatten().to(x.device)
            v = x.index_select(0, sel)
            if kind % 2:
                v = v.flip(-1)
            if kind // 2:
                v = torch.rot90(v, kind // 2, dims=(-2, -1))
            out.index_copy_(0, sel, v)
        return out

    # -- one step ----------------------------------------------------------------------
    def _augment(self, x):
        return diff_augment(x, self.diffaug, self.aug_rng, self._rows) if self.diffaug else x

    def train_step(self) -> dict[str, float]:
        """One training step (:meth:`_train_step`) in the run's arithmetic (``precision``)."""
        with self._autocast():
            return self._train_step()

    def _autocast(self):
        """bf16 mixed precision (``precision = "bf16"``, or ``"auto"`` on a CPU with bf16
        arithmetic): convolutions and matrix products in bf16, losses, reductions and the weights
        in fp32, as torch.autocast decides per op. No loss scaling: bf16 has fp32's exponent range.
        The whole step runs inside the context, backward passes included, deliberately: the
        regularisers differentiate twice (``create_graph``), and their inner gradients must be
        built in the same arithmetic as the forward pass they differentiate; backward ops take
        their forward op's dtype either way.
        Running averages kept in buffers (stylegan's w_avg, pl_mean) are updated in fp32."""
        import contextlib

        import torch

        if self.precision != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _train_step(self) -> dict[str, float]:
        """One generator update after ``n_critic`` discriminator updates (each on its own batch).

        Data-parallel (``self.world``): every rank draws the whole global batch's noise and
        augmentation and computes its own slice of rows; each phase's gradients are summed over
        the slices (ranks) and divided by their number before the optimiser step. In one
        process with one slice this is the plain loop.
        """
        import torch
        import torch.nn.functional as F

        fam, cfg, D = self.family, self.config, self.D
        self._set_learning_rates()
        if self.adv_weight == 0 and not (self.g_regularizers or self.ac_weight or self.mode_seeking):
            return self._supervised_step()  # nothing reads D: do not train it
        D.requires_grad_(True)
        bs = int(cfg["batch_size"])
        slices = self.world.slices(bs)
        self._begin_slices(len(slices))
        stats: dict[str, float] = {}
        for i in range(self.n_critic):
            # the data order stays a pure function of (seed, step): batch k = step * n_critic + i
            real_all, labels_all = self.real_batch(self.step * self.n_critic + i)
            g_all = fam.generator_inputs(real_all, labels_all, cfg, self.noise)
            g_all = {k: v.to(self.device) for k, v in g_all.items()}
            last = i == self.n_critic - 1
            d_iter = self.step * self.n_critic + i
            due = [r for r in self.d_regularizers if r.due(d_iter)]
            real_grad = any(r.regularizer.real_grad for r in due)
            self.opt_d.zero_grad(set_to_none=True)
            parts, per_slice = [], []
            for s, (lo, hi) in enumerate(slices):
                self._enter_slice(s, lo, bs)
                full = (lo, hi) == (0, bs)
                real, labels = (real_all, labels_all) if full else (real_all[lo:hi], labels_all[lo:hi])
                g_in = g_all if full else {k: v[lo:hi] for k, v in g_all.items()}
                if last:
                    fake = self.G(**g_in)  # kept with its graph for the generator update below
                else:
                    with torch.no_grad():
                        fake = self.G(**g_in)
                part: dict[str, float] = {}
                real_in = real.detach().requires_grad_(True) if real_grad else real
                d_real = D(*fam.discriminator_inputs(self._augment(real_in), labels, g_in))
                class_real = self._class_logits() if self.ac_weight else None
                d_fake = D(*fam.discriminator_inputs(self._augment(fake.detach()), labels, g_in))
                adv_d = self.loss.d_loss(d_real, d_fake)
                loss_d = adv_d
                if class_real is not None:
                    ac_d = F.cross_entropy(class_real, labels)
                    loss_d = loss_d + ac_d
                    part["ac_d"] = float(ac_d.detach())
                if due:
                    ctx = self._reg_context("D", d_iter, real_in, fake.detach(), labels, g_in, d_real, d_fake, g_all)
                    for reg in due:
                        term = reg(ctx)
                        loss_d = loss_d + reg.weight * term
                        part[reg.name] = float(term.detach())
                loss_d.backward()
                part["d_loss"] = float(adv_d.detach())
                # raw logits: a sigmoid "probability" means something only for the BCE losses
                part["d_real_logit"] = float(d_real.detach().mean())
                part["d_fake_logit"] = float(d_fake.detach().mean())
                per_slice.append(part)
                parts.append((real, labels, g_in, fake))
                self._leave_slice(s)
            self.world.average_gradients(D)
            if self.clip_grad:
                torch.nn.utils.clip_grad_norm_(D.parameters(), self.clip_grad)
            self.opt_d.step()
            stats.update(_sum_parts(per_slice))

        # generator (D frozen: no weight gradients computed for it)
        D.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        per_slice = []
        ms_weight = self.mode_seeking_weight()
        g_due = [r for r in self.g_regularizers if r.due(self.step)]
        for s, (real, labels, g_in, fake) in enumerate(parts):
            lo = slices[s][0]
            self._enter_slice(s, lo, bs)
            d_fake_g = D(*fam.discriminator_inputs(self._augment(fake), labels, g_in))
            adv = self.loss.g_loss(d_fake_g)
            extra = fam.extra_generator_loss(fake, real.detach(), g_in, cfg)
            if self.ac_weight:
                extra = {**extra, "ac_g": self.ac_weight * F.cross_entropy(self._class_logits(), labels)}
            if ms_weight:
                extra = {**extra, "mode_seeking": ms_weight * mode_seeking(fake, g_in["z"], g_in.get("label"))}
            loss_g = self.adv_weight * adv + sum(extra.values()) if extra else self.adv_weight * adv
            part = {}
            if g_due:
                ctx = self._reg_context("G", self.step, real.detach(), fake, labels, g_in, None, d_fake_g, g_all)
                for reg in g_due:
                    term = reg(ctx)
                    loss_g = loss_g + reg.weight * term
                    part[reg.name] = float(term.detach())
            loss_g.backward()
            part.update({"g_loss": float(loss_g.detach()), "g_adv": float(adv.detach())})
            part.update({k: float(v.detach()) for k, v in extra.items()})
            per_slice.append(part)
            self._leave_slice(s)
        g_stats = self._finish_g_step(per_slice)
        out = {"d_loss": stats.pop("d_loss"), "g_loss": g_stats.pop("g_loss"), "g_adv": g_stats.pop("g_adv")}
        d_real, d_fake = stats.pop("d_real_logit"), stats.pop("d_fake_logit")
        out.update(stats)
        out.update(g_stats)
        out["d_real_logit"], out["d_fake_logit"] = d_real, d_fake
        return self.world.average_floats(out)

    def _supervised_step(self) -> dict[str, float]:
        """A generator update from the family's losses alone (adversarial weight 0, e.g. a
        PSNR-oriented restorer): the discriminator is neither run nor updated, which saves
        its cost; the data and noise streams advance as in a GAN step."""
        fam, cfg = self.family, self.config
        bs = int(cfg["batch_size"])
        slices = self.world.slices(bs)
        self._begin_slices(len(slices))
        real_all, labels_all = self.real_batch(self.step * self.n_critic + self.n_critic - 1)
        g_all = {k: v.to(self.device) for k, v in fam.generator_inputs(real_all, labels_all, cfg, self.noise).items()}
        self.opt_g.zero_grad(set_to_none=True)
        per_slice = []
        for s, (lo, hi) in enumerate(slices):
            self._enter_slice(s, lo, bs)
            real = real_all[lo:hi]
            g_in = {k: v[lo:hi] for k, v in g_all.items()}
            fake = self.G(**g_in)
            extra = fam.extra_generator_loss(fake, real.detach(), g_in, cfg)
            if not extra:
                from gankit.errors import UsageError

                raise UsageError(f"{fam.name}: with an adversarial weight of 0 the generator needs the family's own losses")
            loss_g = sum(extra.values())
            loss_g.backward()
            per_slice.append({"g_loss": float(loss_g.detach()), **{k: float(v.detach()) for k, v in extra.items()}})
            self._leave_slice(s)
        g_stats = self._finish_g_step(per_slice)
        # no d_loss / g_adv: nothing adversarial ran (a 0 would read as a saturated discriminator)
        return self.world.average_floats({"g_loss": g_stats.pop("g_loss"), **g_stats})

    # -- data-parallel slices ------------------------------------------------------------
    def _finish_g_step(self, per_slice: list[dict]) -> dict:
        """The end of every G phase: average the slices' gradients, clip, step, settle the
        buffers, update the EMA copy and count the step; returns the summed slice statistics."""
        import torch

        self.world.average_gradients(self.G)
        if self.clip_grad:
            torch.nn.utils.clip_grad_norm_(self.G.parameters(), self.clip_grad)
        self.opt_g.step()
        self._end_slices()
        if self.G_ema is not None:
            self._update_ema()
        self.step += 1
        return _sum_parts(per_slice)

    def _begin_slices(self, n: int) -> None:
        """Start a step computed as ``n`` slices in this process (1 except in the exact reference).

        Each slice must see what a rank of its own would: the augmentation stream from the
        same point (every rank draws the whole global batch's numbers) and its own BatchNorm
        running statistics, which are averaged at the end of the step like the ranks' are.
        """
        self._rows = None
        self._slice_count = n
        distributed.set_batch_rows(None)
        if n == 1:
            self._slice_state = None
            return
        slots = self._buffer_slots()
        # each slice gets its own buffer tensors (bound into the modules while it runs): copying
        # values in and out would bump the version of tensors BatchNorm saved for backward
        self._slice_state = {"slots": slots, "own": [m._buffers[k] for m, k in slots],
                             "bufs": [[m._buffers[k].clone() for m, k in slots] for _ in range(n)], "aug": None}

    def _buffer_slots(self) -> list:
        return [(m, k) for net in (self.G, self.D) for m in net.modules() for k, b in m._buffers.items() if b is not None]

    def _enter_slice(self, s: int, lo: int, total: int) -> None:
        self._rows = None if (lo, self._slice_count * self.world.size) == (0, 1) else (total, lo)
        if self._rows is not None:  # a family's own per-row draws (style mixing...) keep these rows too
            distributed.set_batch_rows((total, lo, total // (self._slice_count * self.world.size)))
        st = self._slice_state
        if st is None:
            return
        import torch

        # every slice draws from the same point of the augmentation stream and of torch's global
        # generator (a family's forward may draw from it, e.g. style mixing), as every rank does
        if s == 0:
            st["aug"] = (self.aug_rng.get_state(), torch.get_rng_state())
        else:
            self.aug_rng.set_state(st["aug"][0])
            torch.set_rng_state(st["aug"][1])
        for (m, k), t in zip(st["slots"], st["bufs"][s]):
            m._buffers[k] = t

    def _leave_slice(self, s: int) -> None:
        st = self._slice_state
        if st is not None:
            st["bufs"][s] = [m._buffers[k] for m, k in st["slots"]]
        self._rows = None
        distributed.set_batch_rows(None)

    def _end_slices(self) -> None:
        """Make the buffers the same on every rank (``World.average_buffers_``): where the slices'
        values differ (BatchNorm running statistics) their mean, elsewhere (constants) untouched."""
        st = self._slice_state
        distributed.set_batch_rows(None)
        if st is None and not self.world.distributed:
            return
        copies = None
        if st is None:
            own = [m._buffers[k] for m, k in self._buffer_slots()]
        else:  # this process's slices: each one's copy, combined like the ranks' copies are
            own = st["own"]
            for j, (m, k) in enumerate(st["slots"]):
                m._buffers[k] = own[j]
                if not own[j].is_floating_point():
                    own[j].copy_(st["bufs"][0][j])  # counters: the same in every slice
            copies = [[b for b in bufs if b.is_floating_point()] for bufs in st["bufs"]]
        self.world.average_buffers_([b for b in own if b.is_floating_point()], copies)
        self._slice_state = None

    def _reg_context(self, phase, iteration, real, fake, labels, g_in, d_real, d_fake, g_all) -> RegularizerContext:
        return RegularizerContext(phase=phase, step=self.step, iteration=iteration, config=self.config,
                                  family=self.family, D=self.D, G=self.G, real=real, fake=fake, labels=labels,
                                  g_inputs=g_in, d_real=d_real, d_fake=d_fake, rng=self.aug_rng, augment=self._augment,
                                  rows=self._rows, global_g_inputs=None if self._rows is None else g_all)

    def _class_logits(self):
        """The class head's logits from the discriminator's latest forward pass."""
        logits = getattr(self.D, "class_logits", None)
        if logits is None:
            from gankit.errors import UsageError

            raise UsageError(f"ac_weight needs a discriminator with a class head; {self.family.name}'s has none")
        return logits

    MAX_ROLLBACKS = 3

    def _roll_back(self, losses: dict[str, float]) -> None:
        """A non-finite loss: restore the newest checkpoint, halve both learning rates, go on.

        Each further roll-back halves again (0.5, 0.25, 0.125 of the configured rates, on top
        of any ``lr_decay`` schedule); the factor is saved with every later checkpoint.

        Repeated failures (``MAX_ROLLBACKS``) or no checkpoint to go back to stop the run with
        a one-line explanation.
        """
        bad_step = self.step
        self.rollbacks += 1
        good = ckpt.latest(self.run.checkpoints)
        event = {"step": bad_step, "event": "non-finite loss", **{k: str(v) for k, v in losses.items()}}
        if good is None or self.rollbacks > self.MAX_ROLLBACKS:
            self._append_metrics(event)
            why = "no checkpoint to roll back to" if good is None else f"{self.MAX_ROLLBACKS} roll-backs did not help"
            # every rank meets this at the same step: one line for the job, not one per rank
            raise distributed.EveryRankError(f"training diverged at step {bad_step} (non-finite loss; {why}); lower --lr")
        self.restore(good)
        self.lr_scale = 0.5**self.rollbacks  # halve the learning rates once per roll-back so far
        self._set_learning_rates()
        event.update(rolled_back_to=good.step, lr_g=self.opt_g.param_groups[0]["lr"], lr_d=self.opt_d.param_groups[0]["lr"])
        self._append_metrics(event)
        if self.world.is_main:
            print(f"warning: non-finite loss at step {bad_step}; rolled back to step {good.step} and halved the "
                  f"learning rates (roll-back {self.rollbacks} of {self.MAX_ROLLBACKS})", file=sys.stderr)

    def _append_metrics(self, record: dict[str, Any]) -> None:
        if self.world.is_main:
            self.run.append_metrics(record)

    def _stop_requested(self) -> bool:
        """Ctrl-C on any rank stops every rank after the same step (a collective decision)."""
        if not self.world.distributed:
            return self._stop.requested
        import torch

        flag = torch.tensor([1.0 if self._stop.requested else 0.0], device=self.world.device())
        self.world.all_reduce_sum_(flag)
        return bool(flag.item() > 0)

    def _update_ema(self) -> None:
        ema_update(self.G_ema, self.G, ema_decay_at(self.step, self.ema_decay))

    # -- loop --------------------------------------------------------------------------
    def fit(self, progress: Any = None) -> TrainResult:
        """Train to ``config['steps']``; Ctrl-C stops between steps with a checkpoint saved."""
        with StopOnInterrupt() as self._stop:
            return self._fit(progress)

    def _fit(self, progress: Any) -> TrainResult:
        cfg = self.config
        total = int(cfg["steps"])
        sample_every = int(cfg.get("sample_every", 0) or 0)
        save_every = int(cfg.get("save_every", 0) or 0)
        log_every = max(1, int(cfg.get("log_every", 25)))
        bs = int(cfg["batch_size"])
        start_step, t0 = self.step, time.perf_counter()
        running: dict[str, float] = {}
        seen: dict[str, int] = {}
        last: dict[str, float] = {}
        final_eval = None
        # one eval-mode forward pass first: a family whose G or D has the wrong output shape
        # fails here in one line, not after training (changes no weights or random streams)
        from gankit.train.contract import check_models

        check_models(self.family, cfg, self.G, self.D, *self.real_batch(self.step * self.n_critic))
        self.G.train()
        self.D.train()
        while self.step < total:
            if self._stop_requested():
                path = self.save()
                raise Interrupted(self.step, path)
            losses = self.train_step()
            for k, v in losses.items():
                running[k] = running.get(k, 0.0) + v
                seen[k] = seen.get(k, 0) + 1  # a lazy regulariser's term is logged only on the steps it ran
            if not all(math.isfinite(v) for v in losses.values()):
                self._roll_back(losses)
                running, seen = {}, {}
                continue
            if self.step % log_every == 0 or self.step == total:
                last = {k: v / seen[k] for k, v in running.items()}
                running, seen = {}, {}
                elapsed = time.perf_counter() - t0
                if self.world.is_main:  # losses are already averaged over the ranks
                    self.run.append_metrics({"step": self.step, "time_s": round(elapsed, 3), **{k: round(v, 5) for k, v in last.items()}})
                    self.monitor.check_losses(self.step, last)
            if progress is not None:
                progress(self.step, total, losses)
            if sample_every and self.step % sample_every == 0 and self.step < total:
                self.refresh_ema_statistics()  # on every rank: the EMA statistics stay identical
                self.write_samples()
                if self.evaluator is not None and self.world.is_main:
                    rec = self.evaluator(self.sample_generator, self.step)
                    self.run.append_metrics({"step": self.step, "eval": rec})
                    self.monitor.check_eval(self.step, rec)
                    self.G.train()
            if save_every and self.step % save_every == 0 and self.step < total:
                self.save()
        seconds = time.perf_counter() - t0
        path = self.save()
        self.write_samples()
        if self.evaluator is not None and self.world.is_main:
            final_eval = self.evaluator(self.sample_generator, self.step)
            self.run.append_metrics({"step": self.step, "eval": final_eval, "final": True})
            self.monitor.check_eval(self.step, final_eval)
        done = self.step - start_step
        return TrainResult(self.step, seconds, done * bs / max(seconds, 1e-9), last, final_eval, path)

    def write_samples(self) -> str | None:
        if self.sampler is None or not self.world.is_main:
            return None
        from gankit.images import save_png

        grid = self.sampler(self.sample_generator)
        self.G.train()
        scale = 2 if grid.shape[0] < 400 else 1
        return str(save_png(grid, self.run.samples / f"step-{self.step}.png", scale=scale))


def _sum_parts(parts: list[dict[str, float]]) -> dict[str, float]:
    """Per-slice logged numbers summed over the slices (one slice: its own numbers, unchanged)."""
    if len(parts) == 1:
        return dict(parts[0])
    out: dict[str, float] = {}
    for part in parts:
        for k, v in part.items():
            out[k] = out[k] + v if k in out else v
    return out
