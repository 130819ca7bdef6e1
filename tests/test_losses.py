"""Losses and stabilisers: each loss separates real from fake, the penalties are right,
EMA follows its rule, spectral norm comes off cleanly, every flag trains and exports."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch import nn

from gankit import hookimpl, plugins
from gankit.errors import UsageError
from gankit.train.augment import diff_augment, parse_policy
from gankit.train.losses import AdversarialLoss, available_losses, get_loss, gradient_penalty, mode_seeking, r1_penalty
from gankit.train.monitor import TrainingMonitor
from gankit.train.stabilizers import apply_spectral_norm, ema_decay_at, ema_update, has_spectral_norm
from tests.conftest import assert_one_line_error

BUILTIN = ["bce", "minimax", "hinge", "lsgan", "wgan-gp"]


def test_builtin_losses_come_through_the_hook():
    assert list(available_losses()) == BUILTIN
    assert plugins.get_manager().records["core"].losses == BUILTIN
    with pytest.raises(UsageError, match="unknown loss 'nope'; available: bce, minimax"):
        get_loss("nope")


@pytest.mark.parametrize("name", BUILTIN)
def test_each_loss_teaches_a_critic_to_separate_real_from_fake(name):
    """Toy problem: real ~ N(+1, 0.5), fake ~ N(-1, 0.5) in 2-D; a linear D trained on the
    loss must score real above fake, and the generator's loss must prefer fakes D likes."""
    loss = get_loss(name)
    g = torch.Generator().manual_seed(0)
    D = nn.Linear(2, 1)
    with torch.no_grad():
        D.weight.zero_(), D.bias.zero_()
    opt = torch.optim.SGD(D.parameters(), lr=0.05)
    for _ in range(200):
        real = torch.randn(64, 2, generator=g) * 0.5 + 1
        fake = torch.randn(64, 2, generator=g) * 0.5 - 1
        d_loss = loss.d_loss(D(real).squeeze(1), D(fake).squeeze(1))
        if loss.gradient_penalty:
            d_loss = d_loss + loss.gradient_penalty * gradient_penalty(lambda x: D(x).squeeze(1), real, fake, g)
        opt.zero_grad()
        d_loss.backward()
        opt.step()
    real = torch.randn(512, 2, generator=g) * 0.5 + 1
    fake = torch.randn(512, 2, generator=g) * 0.5 - 1
    with torch.no_grad():
        gap = (D(real).mean() - D(fake).mean()).item()
    assert gap > 0.5, f"{name}: D(real) - D(fake) = {gap:.3f}"
    # and G's loss is lower for fakes the critic scores as real
    hi, lo = torch.full((8,), 2.0), torch.full((8,), -2.0)
    assert loss.g_loss(hi) < loss.g_loss(lo)


def test_gradient_penalty_matches_finite_differences():
    torch.manual_seed(0)
    critic_net = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 1)).double()

    def critic(x):
        return critic_net(x.flatten(1)).squeeze(1)

    real = torch.randn(4, 1, 2, 3, dtype=torch.float64)
    fake = torch.randn(4, 1, 2, 3, dtype=torch.float64)
    gp = gradient_penalty(critic, real, fake, torch.Generator().manual_seed(7)).item()
    # the same interpolates, gradient norms by central differences
    eps = torch.rand(4, 1, 1, 1, generator=torch.Generator().manual_seed(7)).double()
    x_hat = eps * real + (1 - eps) * fake
    h = 1e-6
    norms = []
    for i in range(4):
        grad = np.zeros(6)
        for j in range(6):
            d = torch.zeros(6, dtype=torch.float64)
            d[j] = h
            xp = x_hat[i].flatten() + d
            xm = x_hat[i].flatten() - d
            grad[j] = (critic(xp.view(1, 1, 2, 3)) - critic(xm.view(1, 1, 2, 3))).item() / (2 * h)
        norms.append(np.linalg.norm(grad))
    expected = float(np.mean((np.array(norms) - 1) ** 2))
    assert gp == pytest.approx(expected, rel=1e-6)


def test_r1_penalty_of_a_linear_critic_is_the_squared_weight_norm():
    D = nn.Linear(4, 1)
    x = torch.randn(8, 4).requires_grad_(True)
    got = r1_penalty(D(x).squeeze(1), x).item()
    D.requires_grad_(False)
    assert got == pytest.approx(float(D.weight.pow(2).sum()), rel=1e-5)


def test_ema_update_rule():
    model, ema = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    with torch.no_grad():
        model.weight.fill_(1.0), ema.weight.fill_(0.0)
        model.running_mean.fill_(5.0)
    ema_update(ema, model, decay=0.9)
    assert torch.allclose(ema.weight, torch.full((3,), 0.1))  # 0.9 * 0 + 0.1 * 1
    ema_update(ema, model, decay=0.9)
    assert torch.allclose(ema.weight, torch.full((3,), 0.19))
    assert torch.equal(ema.running_mean, model.running_mean)  # buffers are copied
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1)  # warm-up: early steps average quickly
    assert ema_decay_at(100_000, 0.999) == 0.999


def test_mode_seeking_punishes_a_generator_that_ignores_z():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(8, 16, generator=g)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    collapsed = torch.zeros(8, 1, 4, 4) + labels[:, None, None, None].float()  # one image per class
    varied = collapsed + torch.randn(8, 1, 4, 4, generator=g)
    assert mode_seeking(varied, z, labels) < mode_seeking(collapsed, z, labels)
    # only pairs with the same label count: images that differ only across classes are still collapsed
    assert mode_seeking(collapsed, z, labels) > 1e4
    assert mode_seeking(collapsed, z) < 1e4  # unconditional: every pair counts
    # exact value on one pair: 1 / (mean|dx| / mean|dz|)
    x2, z2 = torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)]), torch.stack([torch.zeros(4), torch.full((4,), 2.0)])
    assert float(mode_seeking(x2, z2)) == pytest.approx(2.0, rel=1e-4)
    # no pair shares a label: nothing to compare, no loss; gradients flow otherwise
    assert float(mode_seeking(varied[:4:2], z[:4:2], labels[:4:2])) == 0.0
    v = varied.clone().requires_grad_(True)
    mode_seeking(v, z, labels).backward()
    assert v.grad.abs().sum() > 0


def test_ema_batchnorm_statistics_are_recomputed_for_the_averaged_weights(tmp_path):
    from gankit.plugins import load_dataset
    from gankit.plugins import get_family
    from gankit.train.config import build_config
    from gankit.train.run import RunDir
    from gankit.train.trainer import Trainer

    fam, ds = get_family("cgan"), load_dataset("mnist5k")
    cfg = build_config(fam, ds, data="mnist5k", seed=0, device="cpu", overrides={"steps": 3, "batch_size": 16})
    t = Trainer(fam, ds, cfg, RunDir(tmp_path / "run"))
    for _ in range(3):
        t.train_step()
    bn = next(m for m in t.G_ema.modules() if isinstance(m, nn.BatchNorm2d))
    assert torch.equal(bn.running_mean, next(m for m in t.G.modules() if isinstance(m, nn.BatchNorm2d)).running_mean)
    seen = []
    hook = bn.register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach().mean(dim=(0, 2, 3))))
    t.refresh_ema_statistics(batches=4)
    hook.remove()
    assert len(seen) == 4  # its own activations, batch by batch...
    assert torch.allclose(bn.running_mean, torch.stack(seen).mean(0), atol=1e-5)  # ...averaged, not the live G's
    assert not t.G_ema.training and bn.momentum == 0.1  # left in eval mode with its momentum back
    noise_state = t.noise.get_state()
    t.refresh_ema_statistics()
    assert torch.equal(t.noise.get_state(), noise_state)  # training's noise stream untouched


def test_mode_seeking_weight_falls_to_zero_at_a_fixed_step_and_bad_values_are_refused(tmp_path):
    from gankit.plugins import load_dataset
    from gankit.errors import UsageError
    from gankit.plugins import get_family
    from gankit.train.config import build_config
    from gankit.train.run import RunDir
    from gankit.train.trainer import Trainer

    fam, ds = get_family("cgan"), load_dataset("mnist5k")

    def trainer(name, **over):
        cfg = build_config(fam, ds, data="mnist5k", seed=0, device="cpu",
                           overrides={"steps": 6, "batch_size": 16, "mode_seeking": 0.2, **over})
        return Trainer(fam, ds, cfg, RunDir(tmp_path / name))

    t = trainer("a", mode_seeking_until=4)
    weights = []
    for _ in range(6):
        weights.append(t.mode_seeking_weight())
        t.train_step()
    assert weights == pytest.approx([0.2, 0.15, 0.1, 0.05, 0.0, 0.0])
    # the schedule is in absolute steps, so a shorter run is a prefix of a longer one (exact resume)
    short = trainer("b", mode_seeking_until=4, steps=2)
    assert [short.mode_seeking_weight()] == pytest.approx(weights[:1])
    t = trainer("c", mode_seeking_until=0)
    t.train_step()
    assert t.mode_seeking_weight() == 0.2  # 0 = constant
    for bad in (-1, 2.5, "soon"):
        with pytest.raises(UsageError, match="mode_seeking_until"):
            trainer("d", mode_seeking_until=bad)


def test_auxiliary_classifier_learns_the_classes_and_pulls_the_generator_toward_them(tmp_path):
    """ac_weight: D's class head is trained on real labels (its loss falls), G pays for fakes the
    head does not recognise as the requested class; bad weights and heads that are missing are
    refused in one line."""
    from gankit.plugins import load_dataset
    from gankit.plugins import get_family
    from gankit.train.config import build_config
    from gankit.train.run import RunDir
    from gankit.train.trainer import Trainer

    ds = load_dataset("mnist5k")

    def trainer(name, plugin="cgan", **over):
        fam = get_family(plugin)
        cfg = build_config(fam, ds, data="mnist5k", seed=0, device="cpu",
                           overrides={"steps": 40, "batch_size": 32, "diffaug": "none", **over})
        return Trainer(fam, ds, cfg, RunDir(tmp_path / name))

    t = trainer("a", ac_weight=0.5)
    assert t.D.classifier is not None and t.D.classifier.out_features == ds.num_classes
    logs = [t.train_step() for _ in range(40)]
    assert all(np.isfinite(v) for log in logs for v in log.values())
    first, last = np.mean([l["ac_d"] for l in logs[:5]]), np.mean([l["ac_d"] for l in logs[-5:]])
    assert first > 2.0 and last < 0.75 * first  # starts near log(10) = 2.3 and learns
    assert all(l["ac_g"] > 0 for l in logs)
    # off for unconditional families, and 0 means no head at all
    assert trainer("b", plugin="gan", ac_weight=0.5).D.classifier is None
    off = trainer("c", ac_weight=0)
    assert off.D.classifier is None and "ac_g" not in off.train_step()
    for bad in (-0.1, "much", float("nan")):
        with pytest.raises(UsageError, match="ac_weight: input should be"):
            trainer("d", ac_weight=bad)
    headless = trainer("e", ac_weight=0.5)
    headless.D.classifier = None
    headless.D.class_logits = None
    with pytest.raises(UsageError, match="needs a discriminator with a class head"):
        headless.train_step()


@pytest.mark.parametrize("style", ["parametrization", "legacy"])
def test_spectral_norm_removal_keeps_outputs_equal(style):
    from gankit.export import prepare_for_export

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(4, 1, 3, padding=1))
    if style == "parametrization":
        apply_spectral_norm(net)
    else:
        for m in net:
            if isinstance(m, nn.Conv2d):
                nn.utils.spectral_norm(m)
    assert has_spectral_norm(net)
    net.train()
    for _ in range(5):  # let the power iteration settle, as training would
        net(torch.randn(2, 2, 8, 8))
    net.eval()
    x = torch.randn(3, 2, 8, 8)
    with torch.no_grad():
        before = net(x)
        plain = prepare_for_export(net)
        after = plain(x)
    assert not has_spectral_norm(plain)
    assert torch.allclose(before, after, atol=1e-6)


def test_apply_spectral_norm_does_not_double_up():
    net = nn.Sequential(nn.Linear(3, 3))
    apply_spectral_norm(net)
    apply_spectral_norm(net)
    assert len(net[0].parametrizations.weight) == 1


def test_diffaug_is_differentiable_deterministic_and_shape_preserving():
    x = torch.rand(6, 3, 16, 16).mul(2).sub(1).requires_grad_(True)
    pol = parse_policy("all")
    a = diff_augment(x, pol, torch.Generator().manual_seed(3))
    b = diff_augment(x, pol, torch.Generator().manual_seed(3))
    assert a.shape == x.shape and torch.equal(a, b)
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # translation alone moves content without changing it
    t = diff_augment(x.detach(), ("translation",), torch.Generator().manual_seed(1))
    assert not torch.equal(t, x.detach())
    nonzero = t[t != 0]
    assert set(np.round(nonzero.numpy(), 6)) <= set(np.round(x.detach().numpy().ravel(), 6))
    with pytest.raises(UsageError, match="unknown --diffaug policy blur"):
        parse_policy("color,blur")
    assert parse_policy("none") == () and parse_policy(None) == ()


def test_a_plugin_can_add_a_loss_and_duplicates_are_refused():
    class LossPlugin:
        @hookimpl
        def register_losses(self, register):
            register(AdversarialLoss("softplus-test", lambda r, f: (f - r).mean(), lambda f: -f.mean()))

    class Dup:
        @hookimpl
        def register_losses(self, register):
            register(AdversarialLoss("hinge", lambda r, f: r.mean(), lambda f: f.mean()))

    mgr = plugins.get_manager()
    mgr.register(LossPlugin(), name="loss-plugin")
    mgr.register(Dup(), name="dup-loss")
    assert get_loss("softplus-test").name == "softplus-test"
    assert get_loss("hinge").description.startswith("hinge loss")
    assert "'core'" in mgr.records["dup-loss"].error and "'dup-loss'" in mgr.records["dup-loss"].error


class _Run:
    def __init__(self):
        self.events = []

    def append_metrics(self, rec):
        self.events.append(rec)


def test_monitor_warns_once_when_d_saturates_and_again_after_recovery():
    out, run = io.StringIO(), _Run()
    mon = TrainingMonitor(get_loss("bce"), run, None, stream=out)
    for step, d in enumerate([0.5, 0.01, 0.01, 0.005, 0.4, 0.01, 0.01], start=1):
        mon.check_losses(step * 25, {"d_loss": d})
    kinds = [e["kind"] for e in run.events]
    assert kinds == ["d-saturated", "d-saturated"]
    assert "--diffaug" in out.getvalue() and out.getvalue().count("warning:") == 2
    # a Wasserstein critic has no "near zero": no warning
    mon = TrainingMonitor(get_loss("wgan-gp"), _Run(), None, stream=io.StringIO())
    mon.check_losses(25, {"d_loss": -0.001})
    mon.check_losses(50, {"d_loss": -0.001})
    assert not mon.warnings


def test_monitor_warns_on_class_entropy_drop_and_low_diversity():
    out = io.StringIO()
    mon = TrainingMonitor(get_loss("bce"), _Run(), None, stream=out)
    mon.check_eval(100, {"kind": "generate", "class_entropy": 0.97, "diversity": 0.9})
    assert not mon.warnings
    mon.check_eval(200, {"kind": "generate", "class_entropy": 0.70, "diversity": 0.3})
    kinds = {w["kind"] for w in mon.warnings}
    assert kinds == {"class_entropy-drop", "class_entropy-low", "diversity-low"}
    mon = TrainingMonitor(get_loss("bce"), _Run(), None, stream=io.StringIO())
    mon.check_eval(100, {"kind": "generate", "class_entropy": 0.99, "conditional_accuracy": 0.95, "diversity": 0.8})
    mon.check_eval(200, {"kind": "generate", "class_entropy": 0.99, "conditional_accuracy": 0.60, "diversity": 0.8})
    assert [w["kind"] for w in mon.warnings] == ["conditional_accuracy-drop"]


TINY = ["--steps", "3", "--batch-size", "8", "--no-evaluate", "--set", "ngf=8", "--set", "ndf=8"]


@pytest.mark.parametrize("loss", BUILTIN)
def test_cgan_trains_and_exports_with_every_loss(cli, loss):
    r = cli("train", "--plugin", "cgan", "--loss", loss, "--out", f"runs/{loss}", *TINY)
    assert r.code == 0, r.err
    import gankit.runtime as rt

    m = rt.load(f"exported/{loss}.onnx")
    assert m.generate(4, labels=[0, 1, 2, 3], seed=0).shape == (4, 28, 28, 1)


def _final_state(out: str) -> dict:
    from pathlib import Path

    from safetensors.numpy import load_file

    ckpts = sorted((Path(out) / "checkpoints").glob("step-*.safetensors"))
    return load_file(str(ckpts[-1]))


def _same(a: dict, b: dict, prefix: str) -> bool:
    keys = sorted(k for k in a if k.startswith(prefix))
    return keys == sorted(k for k in b if k.startswith(prefix)) and all(np.array_equal(a[k], b[k]) for k in keys)


@pytest.mark.parametrize("flags", [["--spectral-norm"], ["--ema", "0.05"], ["--diffaug", "color,translation,cutout"],
                                   ["--r1", "10"], ["--mode-seeking", "0.5"], ["--spectral-norm", "--diffaug", "all", "--r1", "1", "--loss", "hinge"]])
def test_cgan_trains_and_exports_with_each_stabiliser(cli, flags):
    """Each flag must change what training does, not only the config it echoes: compared with
    the same seeded run without it (cgan's defaults: no augmentation, EMA 0.999, no R1)."""
    out = "runs/" + "-".join(f.strip("-").replace(",", "") for f in flags)
    r = cli("train", "--plugin", "cgan", *flags, "--out", out, *TINY)
    assert r.code == 0, r.err
    assert cli("train", "--plugin", "cgan", "--out", "runs/plain", "--no-export", *TINY).code == 0
    import json
    from pathlib import Path

    cfg = json.loads((Path(out) / "config.json").read_text())
    state, plain = _final_state(out), _final_state("runs/plain")
    if "--spectral-norm" in flags:  # D's layers carry the spectral-norm parametrisation
        assert cfg["spectral_norm"] is True
        assert any(k.startswith("D/") and "parametrizations" in k for k in state)
        assert not any("parametrizations" in k for k in plain)
    # the generator trains exactly as before; only its average moves differently (0.05 stays under
    # the warm-up ramp of the first steps, so it differs from the default even in 3 steps)
    if flags[:1] == ["--ema"]:
        assert _same(state, plain, "G/") and not _same(state, plain, "G_ema/")
    if flags[:1] == ["--diffaug"]:  # D sees augmented images, so both networks train differently
        assert not _same(state, plain, "G/") and not _same(state, plain, "D/")
    if "--r1" in flags:
        assert cfg["r1"] == float(flags[flags.index("--r1") + 1])
    metrics = [json.loads(l) for l in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    if "--r1" in flags:
        assert any("r1" in m for m in metrics)
    if "--mode-seeking" in flags:
        assert cfg["mode_seeking"] == 0.5 and any("mode_seeking" in m for m in metrics)
        assert not _same(state, plain, "G/")
    assert (Path("exported") / f"{Path(out).name}.onnx").is_file()


@pytest.mark.parametrize("args", [["--loss", "wgan"], ["--diffaug", "blur"], ["--r1", "-1"], ["--ema", "1.5"],
                                  ["--mode-seeking", "-1"], ["--set", "width=64"]])
def test_bad_loss_and_stabiliser_options_are_one_line_errors(cli, args):
    assert_one_line_error(cli("train", "--plugin", "cgan", *args, "--steps", "1"))


def test_learning_rate_decays_linearly_in_absolute_steps_and_bad_values_are_refused(tmp_path):
    from gankit.plugins import load_dataset
    from gankit.errors import UsageError
    from gankit.plugins import get_family
    from gankit.train.config import build_config
    from gankit.train.run import RunDir
    from gankit.train.trainer import Trainer

    fam, ds = get_family("gan"), load_dataset("mnist5k")

    def trainer(name, **over):
        cfg = build_config(fam, ds, data="mnist5k", seed=0, device="cpu",
                           overrides={"steps": 6, "batch_size": 8, "lr_g": 1e-3, "lr_d": 4e-3, **over})
        return Trainer(fam, ds, cfg, RunDir(tmp_path / name))

    t = trainer("a", lr_decay=[2, 6])
    seen = []
    for _ in range(6):
        t.train_step()  # sets the step's rates, then steps
        seen.append((t.opt_g.param_groups[0]["lr"], t.opt_d.param_groups[0]["lr"]))
    factors = [1.0, 1.0, 1.0, 0.75, 0.5, 0.25]  # steps 0-5: flat until 2, 0 at 6
    assert [g for g, _ in seen] == pytest.approx([1e-3 * f for f in factors])
    assert [d for _, d in seen] == pytest.approx([4e-3 * f for f in factors])
    t.step = 100
    assert t.lr_factor() == 0.0  # past the end the rates stay at 0
    for off in ("none", 0):  # the gan default schedule, switched off
        t = trainer("b", lr_decay=off)
        t.step = 10**6
        assert t.lr_factor() == 1.0  # no schedule: constant
    for bad in ([5, 2], [1], "soon", [-1, 3], [0, 2.5]):
        with pytest.raises(UsageError, match="lr_decay"):
            trainer("c", lr_decay=bad)


def test_a_learning_rate_decay_ending_before_the_last_step_is_warned_about(cli, tmp_path):
    r = cli("train", "--plugin", "gan", "--steps", "3", "--batch-size", "4", "--out", tmp_path / "r", "--no-export",
            "--no-evaluate", "--set", "lr_decay=[0,2]")
    assert r.code == 0
    assert "learning rate reaches 0 at step 2" in r.err and "lr_decay=[START,END]" in r.err


def test_a_learning_rate_decay_ending_after_the_last_step_is_warned_about(cli, tmp_path):
    r = cli("train", "--plugin", "gan", "--steps", "3", "--batch-size", "4", "--out", tmp_path / "r", "--no-export",
            "--no-evaluate", "--set", "lr_decay=[2,6]")
    assert r.code == 0
    assert "stops at step 3" in r.err and "fall only to 75% of their value" in r.err and "lr_decay=[1,3]" in r.err
