"""Plugin API v2 (issue 21): each numbered point a third-party author tripped over."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from gankit import Key, hookimpl, plugins
from gankit.errors import GankitError, UsageError
from tests.conftest import GANKIT, assert_one_line_error, run_subprocess


# -- 1. the dataclass trap -----------------------------------------------------------------------
def test_a_family_declared_with_class_attributes_keeps_them():
    from gankit import ModelFamily

    class ResFam(ModelFamily):
        name = "resfam-test"
        description = "class attributes only"
        defaults = {"latent_dim": 8, "features": 4}
        data_defaults = {"photos": {"steps": 3}}

    class Plugin:
        @hookimpl
        def register_families(self, register):
            register(ResFam())

    mgr = plugins.get_manager()
    mgr.register(Plugin(), name="resfam-plugin")
    try:
        fam = mgr.families["resfam-test"][0]
        assert mgr.records["resfam-plugin"].status == "loaded"
        assert (fam.name, fam.task, fam.condition) == ("resfam-test", "generate", "none")
        assert fam.defaults == {"latent_dim": 8, "features": 4}
        assert fam.data_defaults == {"photos": {"steps": 3}}
    finally:
        mgr.unregister("resfam-plugin")
    # each instance owns its defaults: editing one changes neither the class nor a sibling
    a, b = ResFam(), ResFam(name="resfam-wide", defaults={"latent_dim": 8, "features": 64})
    a.defaults["features"] = 99
    assert ResFam.defaults["features"] == 4 and b.defaults["features"] == 64 and b.name == "resfam-wide"
    with pytest.raises(TypeError, match="unknown attribute.*nmae"):
        ResFam(nmae="typo")


def test_dataclass_habits_work_or_are_refused_with_what_to_do():
    from dataclasses import dataclass, field

    from gankit import ModelFamily
    from gankit.plugins import _validate_family

    @dataclass
    class Decorated(ModelFamily):  # a dataclass subclass with its own fields works too
        name: str = "decorated"
        defaults: dict = field(default_factory=lambda: {"latent_dim": 8})

    assert _validate_family(Decorated()) == "decorated" and Decorated().defaults == {"latent_dim": 8}

    class FieldNotDecorated(ModelFamily):
        name = "field"
        defaults = field(default_factory=dict)

    with pytest.raises(GankitError, match=r"defaults must be a dict, got Field .*plain class.*defaults = \{\.\.\.\}"):
        _validate_family(FieldNotDecorated())


def test_a_family_without_a_name_is_refused_with_what_to_do():
    from gankit import ModelFamily

    class Nameless(ModelFamily):
        defaults = {"latent_dim": 8}

    class Plugin:
        @hookimpl
        def register_families(self, register):
            register(Nameless())

    mgr = plugins.get_manager()
    mgr.register(Plugin(), name="nameless-plugin")
    try:
        mgr.collect_all()
        err = mgr.records["nameless-plugin"].error
        assert "Nameless" in err and "has no name" in err and 'name = "..."' in err
    finally:
        mgr.unregister("nameless-plugin")


# -- 2. everything imports from gankit, lazily ------------------------------------------------------
def test_plugin_names_import_from_gankit_without_torch():
    code = (
        "import sys, gankit\n"
        "assert 'torch' not in sys.modules\n"
        "from gankit import (ModelFamily, AdversarialLoss, Regularizer, RegularizerContext, Dataset, DatasetSpec,\n"
        "                    hookimpl, UsageError, GankitError, CORE_DEFAULTS, ConformanceError, check_family)\n"
        "from gankit.family import ModelFamily as F\n"
        "from gankit.train.losses import AdversarialLoss as L\n"
        "from gankit.data import Dataset as D\n"
        "assert ModelFamily is F and AdversarialLoss is L and Dataset is D\n"
        "assert 'torch' not in sys.modules, 'a gankit import pulled in torch'\n"
        "assert {'ModelFamily', 'Regularizer'} <= set(dir(gankit))\n"
        "try:\n    gankit.NoSuchThing\nexcept AttributeError as e:\n    print('ok', e)\n"
    )
    r = run_subprocess([sys.executable, "-c", code])
    assert r.returncode == 0, r.stderr
    assert "ok module 'gankit' has no attribute 'NoSuchThing'" in r.stdout
    r = run_subprocess([sys.executable, "-X", "importtime", "-m", "gankit.cli", "--help"])
    assert r.returncode == 0 and "torch" not in {ln.split("|")[-1].strip().split(".")[0] for ln in r.stderr.splitlines()}


def test_dataset_fields_and_load_options_are_documented():
    from pathlib import Path

    guide = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    for word in ("x_train", "y_train", "x_test", "y_test", "class_names", "info", "`size`", "`arg`",
                 "from gankit import"):
        assert word in guide, word


# -- 3. regularisers ----------------------------------------------------------------------------------
def _trainer(tmp_path, name, plugin="gan", family=None, **over):
    from gankit.plugins import get_family
    from gankit.testing import synthetic_dataset
    from gankit.train.config import build_config
    from gankit.train.run import RunDir
    from gankit.train.trainer import Trainer

    fam = family or get_family(plugin)
    ds = synthetic_dataset((1, 16, 16), n_train=32)
    small = {"ngf": 8, "ndf": 8, "clusters": 0} if fam.name in ("gan", "cgan") else {}
    cfg = build_config(fam, ds, data="synthetic", seed=0, device="cpu",
                       overrides={"steps": 2, "batch_size": 8, **small, **over})
    return Trainer(fam, ds, cfg, RunDir(tmp_path / name))


def _d_weights(t):
    return np.concatenate([p.detach().numpy().ravel() for p in t.D.parameters()])


def _g_weights(t):
    return np.concatenate([p.detach().numpy().ravel() for p in t.G.parameters()])


def test_builtin_gradient_penalty_and_r1_are_regularizers_with_the_old_weights(tmp_path):
    assert list(plugins.get_manager().regularizers) == ["gp", "r1"]
    assert plugins.get_manager().records["core"].regularizers == ["gp", "r1"]
    assert [(r.name, r.weight, r.every) for r in _trainer(tmp_path, "a").d_regularizers] == []
    gp = _trainer(tmp_path, "b", loss="wgan-gp")
    assert [(r.name, r.weight) for r in gp.d_regularizers] == [("gp", 10.0)]
    assert _trainer(tmp_path, "c", loss="wgan-gp", gp_weight=0).d_regularizers == []
    both = _trainer(tmp_path, "d", r1=10.0, gp_weight=2.0)
    assert [(r.name, r.weight) for r in both.d_regularizers] == [("gp", 2.0), ("r1", 5.0)]  # gamma/2
    stats = both.train_step()
    assert stats["gp"] > 0 and stats["r1"] > 0 and list(stats).index("gp") < list(stats).index("r1")
    with pytest.raises(UsageError, match="r1: input should be a valid number"):  # the config refuses it first
        _trainer(tmp_path, "e", r1="lots")


def test_wgan_lp_is_a_loss_with_its_own_one_sided_penalty(tmp_path):
    import torch

    from gankit import AdversarialLoss, Regularizer
    from gankit.train.regularizers import gradient_penalty

    seen = []

    def lipschitz(ctx):
        seen.append((ctx.phase, ctx.iteration, ctx.real.shape, ctx.fake.requires_grad))
        # a steep copy of the critic, so that the one-sided penalty has slopes above 1 to punish
        return gradient_penalty(lambda x: 100 * ctx.discriminate(x), ctx.real, ctx.fake, ctx.rng, one_sided=True)

    def w_d(r, f):
        return f.mean() - r.mean()

    def w_g(f):
        return -f.mean()

    class LossPlugin:
        @hookimpl
        def register_losses(self, register):
            register(AdversarialLoss("wgan-lp-test", w_d, w_g, n_critic=2,
                                     regularizers=(Regularizer("lp", lipschitz, weight=lambda c: c["lp_weight"],
                                                               config_keys={"lp_weight": Key(float, 10.0, ge=0)}),)))
            register(AdversarialLoss("wgan-nolp-test", w_d, w_g, n_critic=2))

    mgr = plugins.get_manager()
    mgr.register(LossPlugin(), name="lp-plugin")
    try:
        with_lp = _trainer(tmp_path, "lp", loss="wgan-lp-test", lp_weight=1000.0)
        stats = with_lp.train_step()
        assert stats["lp"] > 0 and np.isfinite(stats["lp"])
        assert [s[:2] for s in seen] == [("D", 0), ("D", 1)] and not any(s[3] for s in seen)
        without = _trainer(tmp_path, "nolp", loss="wgan-nolp-test")
        assert "lp" not in without.train_step()
        assert not np.array_equal(_d_weights(with_lp), _d_weights(without))  # the penalty changed D's update
        # and 0 switches it off completely
        off = _trainer(tmp_path, "off", loss="wgan-lp-test", lp_weight=0)
        assert off.d_regularizers == [] and "lp" not in off.train_step()
    finally:
        mgr.unregister("lp-plugin")
    # the one-sided penalty ignores slopes below 1; the two-sided one does not
    critic = torch.nn.Linear(4, 1)
    with torch.no_grad():
        critic.weight.fill_(0.1)
    x, y = torch.randn(6, 4), torch.randn(6, 4)
    f = lambda v: critic(v).squeeze(1)  # noqa: E731
    assert float(gradient_penalty(f, x, y, torch.Generator().manual_seed(0), one_sided=True).detach()) == 0.0
    assert float(gradient_penalty(f, x, y, torch.Generator().manual_seed(0)).detach()) == pytest.approx((1 - 0.2) ** 2, rel=1e-5)


def test_a_family_can_carry_a_lazy_generator_side_regularizer(tmp_path):
    from gankit import Regularizer
    from gankit.plugins import get_family

    calls = []

    def pull_to_grey(ctx):  # stands in for path-length regularisation: a G-step term through G
        calls.append((ctx.phase, ctx.step, ctx.d_real is None, ctx.fake.requires_grad))
        again = ctx.G(**ctx.g_inputs)  # a regulariser may run G itself
        return again.pow(2).mean()

    base = get_family("gan")
    fam = type(base)(name="gan-greg", condition="none", defaults=dict(base.defaults),
                     regularizers=(Regularizer("grey", pull_to_grey, phase="G", weight=0.5, every=2),))
    t = _trainer(tmp_path, "g", family=fam)
    assert [(r.name, r.weight, r.every) for r in t.g_regularizers] == [("grey", 1.0, 2)]  # 0.5 x every
    logs = [t.train_step() for _ in range(3)]
    assert ["grey" in log for log in logs] == [True, False, True]
    assert calls == [("G", 0, True, True), ("G", 2, True, True)]
    plain = _trainer(tmp_path, "p", family=type(base)(name="gan-plain", defaults=dict(base.defaults)))
    for _ in range(3):
        plain.train_step()
    assert not np.array_equal(_g_weights(t), _g_weights(plain))


def test_registered_regularizers_must_take_their_weight_from_the_config(tmp_path):
    from gankit import Regularizer

    class Const:
        @hookimpl
        def register_regularizers(self, register):
            register(Regularizer("always-on", lambda ctx: ctx.d_real.pow(2).mean(), weight=1.0))

    class FromConfig:
        @hookimpl
        def register_regularizers(self, register):
            register(Regularizer("drift-test", lambda ctx: ctx.d_real.pow(2).mean(),
                                 weight=lambda config: config["drift_test"],
                                 config_keys={"drift_test": Key(float, 0.0, ge=0)}))

    mgr = plugins.get_manager()
    mgr.register(Const(), name="const-reg")
    mgr.register(FromConfig(), name="config-reg")
    try:
        assert "weight must come from the config" in (mgr.collect_all() or mgr.records["const-reg"].error)
        assert mgr.records["config-reg"].regularizers == ["drift-test"]
        assert "drift-test" not in _trainer(tmp_path, "off").train_step()  # off by default
        assert _trainer(tmp_path, "on", drift_test=0.01).train_step()["drift-test"] > 0
    finally:
        mgr.unregister("const-reg")
        mgr.unregister("config-reg")


# -- 4. built-in names stay with the built-ins -----------------------------------------------------
class _Acme:
    @hookimpl
    def register_families(self, register):
        from gankit import ModelFamily

        register(ModelFamily(name="cgan", description="acme's impostor"))

    @hookimpl
    def register_losses(self, register):
        from gankit import AdversarialLoss

        register(AdversarialLoss("hinge", lambda r, f: r.mean(), lambda f: f.mean()))


def test_a_third_party_plugin_cannot_take_a_builtin_name_even_when_registered_first():
    mgr = plugins.PluginManager()
    mgr.register(_Acme(), name="acme")  # before gankit's own plugins
    mgr.load()
    fam, owner = mgr.families["cgan"]
    assert owner == "cgan" and "acme" not in fam.description
    assert mgr.losses["hinge"][1] == "core"
    err = mgr.records["acme"].error
    assert mgr.records["acme"].status == "error"
    assert "'cgan'" in err and "'acme'" in err and "built-in" in err
    assert mgr.records["cgan"].status == "loaded" and mgr.records["cgan"].builtin


def test_an_installed_entry_point_sorting_first_cannot_take_cgan(tmp_path):
    site = tmp_path / "site"
    (site / "gankit_acme").mkdir(parents=True)
    (site / "gankit_acme" / "__init__.py").write_text(
        "from gankit import ModelFamily, hookimpl\n\n"
        "class Impostor(ModelFamily):\n    name = 'cgan'\n    defaults = {'latent_dim': 8}\n\n"
        "@hookimpl\ndef register_families(register):\n    register(Impostor())\n")
    dist = site / "gankit_acme-0.0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: gankit-acme\nVersion: 0.0.1\n")
    (dist / "entry_points.txt").write_text("[gankit]\nacme = gankit_acme\n")
    import os

    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    r = run_subprocess(GANKIT + ["plugins", "--json"], env=env)
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["acme"]["status"] == "error" and "'cgan'" in rows["acme"]["error"] and "'acme'" in rows["acme"]["error"]
    assert rows["cgan"]["status"] == "loaded" and rows["cgan"]["families"] == ["cgan"]


# -- 5. a failed look-up names every plugin that failed ---------------------------------------------
def test_unknown_names_list_the_plugins_that_failed_to_load():
    class Broken:
        @hookimpl
        def register_families(self, register):
            raise TypeError("'module' object is not callable")

    mgr = plugins.get_manager()
    mgr.register(Broken(), name="hrfam-plugin")
    try:
        from gankit.plugins import load_dataset
        from gankit.train.losses import get_loss

        for lookup in (lambda: plugins.get_family("hrfam"), lambda: get_loss("hrloss"), lambda: load_dataset("hrdata")):
            with pytest.raises(UsageError) as info:
                lookup()
            msg = str(info.value)
            assert "plugins that failed to load: hrfam-plugin (TypeError: 'module' object is not callable)" in msg
            assert "\n" not in msg
    finally:
        mgr.unregister("hrfam-plugin")
    with pytest.raises(UsageError) as info:
        plugins.get_family("hrfam")
    assert "failed to load" not in str(info.value)  # nothing failed: no such note


# -- 6. broken shapes fail before training and before export --------------------------------------
def _shape_family(g_side=16, d_out="vector"):
    import torch
    from torch import nn

    from gankit import ModelFamily

    class G(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, g_side * g_side)

        def forward(self, z):
            return torch.tanh(self.fc(z)).view(z.shape[0], 1, g_side, g_side)

    class D(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(g_side * g_side, 1)

        def forward(self, image):
            out = self.fc(image.flatten(1))
            return {"vector": out.squeeze(1), "scalar": out.mean(), "row": out.t()}[d_out]

    class Fam(ModelFamily):
        name = "shape-test"
        defaults = {"latent_dim": 8, "ema": 0.0}

        def build_generator(self, config):
            return G()

        def build_discriminator(self, config):
            return D()

    return Fam()


@pytest.mark.parametrize("case, stage, text", [
    ({"g_side": 20}, "generator", "returned shape [8, 1, 20, 20], expected [8, 1, 16, 16]"),
    ({"d_out": "scalar"}, "discriminator", "returned a scalar for a batch of 8"),
    ({"d_out": "row"}, "discriminator", "returned shape [1, 8] for a batch of 8"),
])
def test_wrong_output_shapes_stop_training_before_the_first_step(tmp_path, case, stage, text):
    from gankit.train.contract import FamilyContractError

    t = _trainer(tmp_path, "s", family=_shape_family(**case))
    before = _g_weights(t)
    with pytest.raises(FamilyContractError) as info:
        t.fit()
    msg = str(info.value)
    assert info.value.stage == stage and text in msg and "'shape-test'" in msg and "test_plugin_api" in msg
    assert "\n" not in msg and t.step == 0 and np.array_equal(before, _g_weights(t))


def test_a_generator_of_the_wrong_size_is_not_exported(tmp_path):
    from gankit.export import export_generator
    from gankit.train.contract import FamilyContractError

    fam = _shape_family(g_side=20)
    cfg = {"latent_dim": 8, "channels": 1, "height": 16, "width": 16, "num_classes": 0, "data": "x"}
    with pytest.raises(FamilyContractError, match=r"expected \[2, 1, 16, 16\]"):
        export_generator(fam, cfg, fam.build_generator(cfg), tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()


def test_the_cli_reports_a_broken_family_in_one_line(cli):
    class Plugin:
        @hookimpl
        def register_families(self, register):
            register(_shape_family(d_out="scalar"))

    mgr = plugins.get_manager()
    mgr.register(Plugin(), name="shape-plugin")
    try:
        from gankit.data import DatasetSpec
        from gankit.testing import synthetic_dataset

        class Data:
            @hookimpl
            def register_datasets(self, register):
                register(DatasetSpec("synthetic16", lambda **o: synthetic_dataset((1, 16, 16), n_train=16)))

        mgr.register(Data(), name="data-plugin")
        r = cli("train", "--plugin", "shape-test", "--data", "synthetic16", "--steps", "1", "--batch-size", "4",
                "--no-evaluate", "--no-export")
        assert_one_line_error(r, 1)
        assert "discriminator" in r.err and "returned a scalar" in r.err
    finally:
        mgr.unregister("shape-plugin")
        mgr.unregister("data-plugin")


def test_the_conformance_kit_reports_a_scalar_discriminator_by_stage(tmp_path):
    from gankit.testing import ConformanceError, check_family

    with pytest.raises(ConformanceError, match=r"^\[discriminator\].*returned a scalar") as info:
        check_family(_shape_family(d_out="scalar"), shape=(1, 16, 16), workdir=tmp_path)
    assert info.value.stage == "discriminator" and info.value.got == ()
    with pytest.raises(ConformanceError, match=r"^\[generator\].*\[4, 1, 20, 20\]"):
        check_family(_shape_family(g_side=20), shape=(1, 16, 16), workdir=tmp_path)


def test_the_conformance_kit_refuses_config_values_config_json_cannot_hold(tmp_path):
    from gankit.testing import ConformanceError, check_family

    fam = _shape_family()
    fam.defaults["kernel"] = (3, 3)  # a tuple comes back as a list: accepted
    fam.defaults["activation"] = object()
    with pytest.raises(ConformanceError, match=r"^\[config\].*'activation'") as info:
        check_family(fam, shape=(1, 16, 16), workdir=tmp_path)
    assert info.value.got == "object"


# -- 7. hidden requirements --------------------------------------------------------------------------
def test_a_family_without_batch_size_or_steps_gets_the_core_defaults(tmp_path):
    from gankit import CORE_DEFAULTS
    from gankit.testing import synthetic_dataset
    from gankit.train.config import build_config

    fam = _shape_family()
    cfg = build_config(fam, synthetic_dataset((1, 16, 16)), data="s", seed=0, device="cpu", overrides={})
    assert cfg["batch_size"] == CORE_DEFAULTS["batch_size"] == 64 and cfg["steps"] == CORE_DEFAULTS["steps"]
    t = _trainer(tmp_path, "nobs", family=fam, batch_size=None, steps=None, ngf=None, ndf=None, clusters=None)
    assert t.config["batch_size"] == 64 and np.isfinite(t.train_step()["d_loss"])


def test_train_help_suggests_a_set_key_that_works(cli, monkeypatch):
    import re

    from gankit.config import DERIVED_KEYS

    monkeypatch.setenv("COLUMNS", "250")
    r = cli("train", "--help")
    assert r.code == 0
    keys = re.findall(r"--set[\s│]+(\w+)=", r.out)
    assert keys and "width" not in keys
    for key in keys:
        assert key not in DERIVED_KEYS and key in plugins.get_family("gan").defaults


def test_plugins_table_shows_losses_datasets_and_regularizers(cli):
    r = cli("plugins")
    assert r.code == 0
    header = next(line for line in r.out.splitlines() if "name" in line and "families" in line)
    for col in ("losses", "datasets", "regularizers"):
        assert col in header
    core = next(line for line in r.out.splitlines() if line.strip("│┃| ").startswith("core"))
    assert "hinge" in core and "mnist5k" in core and "gp" in core


def test_collapse_warnings_do_not_suggest_what_the_run_already_uses():
    import io

    from gankit.train.losses import get_loss
    from gankit.train.monitor import TrainingMonitor

    class Run:
        def append_metrics(self, rec):
            pass

    for loss, config, absent, present in [
        ("hinge", {}, ["--loss hinge"], ["--loss wgan-gp", "--mode-seeking"]),
        ("wgan-gp", {"mode_seeking": 0.3}, ["wgan-gp", "--mode-seeking"], ["--loss hinge"]),
        ("bce", {"diffaug": "color"}, ["--diffaug"], ["--loss hinge or wgan-gp"]),
    ]:
        out = io.StringIO()
        mon = TrainingMonitor(get_loss(loss), Run(), None, stream=out, config=config)
        mon.check_eval(100, {"kind": "generate", "class_entropy": 0.97})
        mon.check_eval(200, {"kind": "generate", "class_entropy": 0.5})
        text = out.getvalue()
        assert "class entropy fell" in text
        for word in absent:
            assert word not in text, (loss, text)
        for word in present:
            assert word in text, (loss, text)
    out = io.StringIO()
    mon = TrainingMonitor(get_loss("bce"), Run(), None, stream=out, config={"r1": 10})
    for step in (25, 50):
        mon.check_losses(step, {"d_loss": 0.001})
    assert "--r1" not in out.getvalue() and "--spectral-norm" in out.getvalue()


def test_a_lazy_regularizer_is_logged_as_its_mean_over_the_steps_it_ran(tmp_path):
    import torch

    from gankit import Regularizer
    from gankit.plugins import get_family

    base = get_family("gan")
    fam = type(base)(name="gan-lazy", defaults=dict(base.defaults), regularizers=(
        Regularizer("const", lambda ctx: torch.tensor(3.0), phase="G", weight=0.1, every=2),))
    t = _trainer(tmp_path, "lazy", family=fam, steps=4, log_every=4, sample_every=0, save_every=0)
    t.run.create(t.config)
    t.fit()
    logged = [json.loads(line) for line in t.run.metrics_path.read_text().splitlines()]
    assert [rec["const"] for rec in logged if "const" in rec] == [3.0]  # not diluted to 1.5 by the steps it skipped
