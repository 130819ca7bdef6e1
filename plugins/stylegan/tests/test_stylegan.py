"""The stylegan plugin: its building blocks against direct computations, the exported file's
optional inputs (truncation, style mixing) against PyTorch, exact resume, the conformance kit,
and the runtime's latent tools (also on files of other families)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

SMALL = {"g_channels": 16, "d_channels": 16, "g_min_channels": 8, "d_min_channels": 8, "latent_dim": 16, "w_dim": 16}


def _config(family_name="stylegan", **extra):
    from gankit.plugins import get_family

    family = get_family(family_name)
    cond = family.condition == "label"
    config = {**family.defaults, **SMALL, "channels": 1, "height": 28, "width": 28,
              "num_classes": 4 if cond else 0, "class_names": [f"c{i}" for i in range(4)] if cond else [], **extra}
    return family, config


def _trained_w_avg_generator(family, config):
    """A generator whose w_avg has moved off zero (a few training-mode passes), in eval mode."""
    torch.manual_seed(0)
    G = family.build_generator(config)
    G.train()
    with torch.no_grad():
        for _ in range(5):
            label = torch.randint(0, 4, (8,)) if family.condition == "label" else None
            G(torch.randn(8, config["latent_dim"]), label)
    return G.eval()


# -- building blocks ------------------------------------------------------------------------
@pytest.mark.parametrize("up", [False, True])
def test_modulated_conv_equals_per_sample_demodulated_weights(up):
    from gankit_stylegan.networks import Upsample2x, modulated_conv2d

    g = torch.Generator().manual_seed(0)
    n, cin, cout = 3, 5, 4
    x = torch.randn(n, cin, 7, 7, generator=g)
    weight = torch.randn(cout, cin, 3, 3, generator=g)
    styles = torch.randn(n, cin, generator=g) + 1
    upsample = Upsample2x(cin) if up else None
    got = modulated_conv2d(x, weight, styles, padding=1, upsample=upsample)
    # StyleGAN2's definition: per sample, w'_oik = s_i w_oik, w''_oik = w'_oik / sqrt(sum_ik w'_oik^2 + eps)
    for i in range(n):
        w1 = weight * styles[i][None, :, None, None]
        w2 = w1 / (w1.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8).sqrt()
        xi = upsample(x[i : i + 1]) if up else x[i : i + 1]
        torch.testing.assert_close(got[i : i + 1], F.conv2d(xi, w2, padding=1), atol=1e-5, rtol=1e-5)
    # without demodulation it is a convolution with the style-scaled weights
    plain = modulated_conv2d(x, weight, styles, padding=1, demodulate=False)
    torch.testing.assert_close(plain[1:2], F.conv2d(x[1:2], weight * styles[1][None, :, None, None], padding=1))


def test_fir_upsampling_keeps_constants_and_doubles_the_size():
    from gankit_stylegan.networks import Upsample2x

    up = Upsample2x(2)
    out = up(torch.full((1, 2, 5, 6), 3.0))
    assert out.shape == (1, 2, 10, 12)
    torch.testing.assert_close(out[..., 1:-1, 1:-1], torch.full_like(out[..., 1:-1, 1:-1], 3.0))


def test_w_avg_tracks_training_w_and_eval_draws_no_noise():
    family, config = _config()
    G = family.build_generator(config)
    assert torch.count_nonzero(G.w_avg) == 0
    G.train()
    with torch.no_grad():
        G(torch.randn(8, config["latent_dim"]))
    assert torch.count_nonzero(G.w_avg) > 0
    G.eval()
    for layer in G.synthesis.layers:
        layer.noise_strength.data.fill_(0.5)  # noise matters, yet eval mode is deterministic
    z = torch.randn(3, config["latent_dim"])
    with torch.no_grad():
        assert torch.equal(G(z), G(z))


# -- the exported file -----------------------------------------------------------------------
@pytest.fixture(scope="module", params=["stylegan", "stylegan-cond"])
def exported(request, tmp_path_factory):
    from gankit.export import export_generator

    family, config = _config(request.param)
    G = _trained_w_avg_generator(family, config)
    for layer in G.synthesis.layers:
        layer.noise_strength.data.fill_(0.3)
    path = tmp_path_factory.mktemp("sg") / f"{request.param}.onnx"
    export_generator(family, config, G, path)
    return family, config, G, path


def _session(path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def test_file_declares_optional_inputs_with_defaults(exported):
    import onnx

    family, config, G, path = exported
    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["gankit.format"] == "1"  # format-1 readers keep working
    assert meta["gankit.inputs"] == ("z,label" if family.condition == "label" else "z")
    assert meta["gankit.optional_inputs"] == "z2,crossover,truncation"
    assert meta["gankit.num_layers"] == str(G.num_layers) and meta["gankit.truncation"] == "1"
    sess = _session(path)
    assert [i.name for i in sess.get_inputs()] == meta["gankit.inputs"].split(",")
    assert sorted(i.name for i in sess.get_overridable_initializers()) == ["crossover", "truncation", "z2"]
    batch_dims = {i.name: i.type.tensor_type.shape.dim[0].dim_param for i in model.graph.input if i.name in ("z", "z2")}
    assert batch_dims == {"z": "batch", "z2": "z2_batch"}


@pytest.mark.parametrize("batch", [1, 3, 8])
@pytest.mark.parametrize("psi", [0.5, 1.0])
def test_onnx_matches_pytorch_at_batches_and_truncations(exported, batch, psi):
    family, config, G, path = exported
    sess = _session(path)
    g = torch.Generator().manual_seed(batch)
    feed = {"z": torch.randn(batch, config["latent_dim"], generator=g)}
    if family.condition == "label":
        feed["label"] = torch.randint(0, 4, (batch,), generator=g)
    with torch.no_grad():
        ref = G(**feed, truncation=torch.tensor(psi)).numpy()
    got = sess.run(None, {**{k: v.numpy() for k, v in feed.items()}, "truncation": np.asarray(psi, np.float32)})[0]
    assert got.shape == (batch, 1, 28, 28)
    assert np.abs(got - ref).max() <= 1e-4
    if psi == 1.0:  # and a bare caller who feeds only z (and label) gets the same psi = 1 image
        bare = sess.run(None, {k: v.numpy() for k, v in feed.items()})[0]
        assert np.abs(bare - got).max() <= 1e-6


def test_truncation_zero_gives_one_image_for_every_z(exported):
    family, config, G, path = exported
    sess = _session(path)
    z = np.random.default_rng(0).standard_normal((6, config["latent_dim"])).astype(np.float32)
    feed = {"z": z, "truncation": np.asarray(0.0, np.float32)}
    if family.condition == "label":
        feed["label"] = np.zeros(6, np.int64)  # w_avg is one point: every class gets it at psi 0
    out = sess.run(None, feed)[0]
    assert np.abs(out - out[:1]).max() <= 1e-5
    free = sess.run(None, {**feed, "truncation": np.asarray(1.0, np.float32)})[0]
    assert np.abs(free - free[:1]).max() > 1e-2  # while psi = 1 keeps them apart
    with torch.no_grad():
        ref = G(torch.from_numpy(z), None if "label" not in feed else torch.from_numpy(feed["label"]),
                truncation=torch.tensor(0.0)).numpy()
    assert np.abs(ref - ref[:1]).max() <= 1e-5


def test_crossover_after_the_last_layer_equals_plain_generation(exported):
    family, config, G, path = exported
    sess = _session(path)
    rng = np.random.default_rng(1)
    z, z2 = (rng.standard_normal((4, config["latent_dim"])).astype(np.float32) for _ in range(2))
    feed = {"z": z}
    if family.condition == "label":
        feed["label"] = np.arange(4, dtype=np.int64)
    plain = sess.run(None, feed)[0]
    last = np.asarray(G.num_layers, np.int64)
    mixed_none = sess.run(None, {**feed, "z2": z2, "crossover": last})[0]
    assert np.abs(mixed_none - plain).max() <= 1e-6
    # crossover 0 takes every style from z2: plain generation from z2
    all_z2 = sess.run(None, {**feed, "z2": z2, "crossover": np.asarray(0, np.int64)})[0]
    plain_z2 = sess.run(None, {**feed, "z": z2})[0]
    assert np.abs(all_z2 - plain_z2).max() <= 1e-5
    # a crossover in between differs from both, and matches PyTorch
    mid = sess.run(None, {**feed, "z2": z2, "crossover": np.asarray(2, np.int64)})[0]
    assert np.abs(mid - plain).max() > 1e-3 and np.abs(mid - plain_z2).max() > 1e-3
    with torch.no_grad():
        lab = torch.from_numpy(feed["label"]) if "label" in feed else None
        ref = G(torch.from_numpy(z), lab, z2=torch.from_numpy(z2), crossover=torch.tensor(2)).numpy()
    assert np.abs(mid - ref).max() <= 1e-4


def test_export_copy_computes_what_training_computes_in_ops_opencv_classic_loads(exported):
    """export_module swaps ops (see the ``portable`` attributes) only on a copy; the file has none
    of the ops OpenCV's classic importer refuses on a dynamic batch (tests/test_onnx_consumers.py
    runs it)."""
    import onnx

    family, config, G, path = exported
    E = family.export_module(G, config).eval()
    assert E is not G and not any(getattr(m, "portable", False) for m in G.modules())
    g = torch.Generator().manual_seed(5)
    worst = 0.0
    for batch in (1, 3, 8):
        feed = {"z": torch.randn(batch, config["latent_dim"], generator=g)}
        if family.condition == "label":
            feed["label"] = torch.randint(0, 4, (batch,), generator=g)
        z2 = torch.randn(batch, config["latent_dim"], generator=g)
        for extra in ({}, {"truncation": torch.tensor(0.5)}, {"z2": z2, "crossover": torch.tensor(2)},
                      {"z2": z2, "crossover": torch.tensor(0), "truncation": torch.tensor(0.7)},
                      {"z2": torch.zeros(1, config["latent_dim"]), "crossover": torch.tensor(G.num_layers)}):
            with torch.no_grad():
                worst = max(worst, float((G(**feed, **extra) - E(**feed, **extra)).abs().max()))
    # the mean of z^2 is a matmul in the copy (another summation order): not bit-identical
    assert worst <= 1e-5
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert not ops & {"Shape", "Tile", "Expand", "Where", "ReduceMean", "GatherND"}, ops


# -- the runtime's latent tools --------------------------------------------------------------
def test_runtime_truncation_mix_and_interpolate(exported):
    import gankit.runtime as rt
    from gankit.runtime import RuntimeInputError

    family, config, G, path = exported
    m = rt.load(path, providers=["CPUExecutionProvider"])
    labels = 1 if family.condition == "label" else None
    a = m.generate(5, labels=labels, seed=3)
    assert np.array_equal(a, m.generate(5, labels=labels, seed=3, truncation=1.0))
    zero = m.generate(5, labels=labels, seed=3, truncation=0.0)
    assert np.abs(zero.astype(int) - zero[:1].astype(int)).max() <= 1
    assert not np.array_equal(m.generate(5, labels=labels, seed=3, truncation=0.5), a)

    rows, cols = 2, 3
    picture = m.mix(rows, cols, seed=0)
    pad, h = 2, 28
    assert picture.shape == ((rows + 1) * (h + pad) + pad, (cols + 1) * (h + pad) + pad, 1)
    cell = lambda r, c: picture[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (h + pad): pad + c * (h + pad) + h]
    # crossover after the last layer: every cell is its row's source
    rows_only = m.mix(rows, cols, seed=0, crossover=G.num_layers)
    same = lambda pic, r, c, r2, c2: np.array_equal(
        pic[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (h + pad): pad + c * (h + pad) + h],
        pic[pad + r2 * (h + pad): pad + r2 * (h + pad) + h, pad + c2 * (h + pad): pad + c2 * (h + pad) + h])
    assert same(rows_only, 1, 2, 1, 0) and same(rows_only, 2, 3, 2, 0)
    # crossover 0: every cell is its column's source
    cols_only = m.mix(rows, cols, seed=0, crossover=0)
    assert same(cols_only, 1, 2, 0, 2) and same(cols_only, 2, 1, 0, 1)
    assert not np.array_equal(cell(1, 1), cell(0, 1))
    with pytest.raises(RuntimeInputError):
        m.mix(rows, cols, crossover=G.num_layers + 1)
    with pytest.raises(RuntimeInputError):
        m.generate(2, labels=labels, truncation=float("nan"))

    walk = m.interpolate(12, seed=0, keys=3)
    assert walk.shape == (12, 28, 28, 1) and walk.dtype == np.uint8
    assert np.array_equal(walk, m.interpolate(12, seed=0, keys=3))  # fixed noise: same walk again
    steps = np.abs(np.diff(walk.astype(int), axis=0)).mean(axis=(1, 2, 3))
    assert steps.max() < np.abs(walk[0].astype(int) - walk[6].astype(int)).mean() + 1  # no jumps


def test_latent_tools_refuse_bad_arguments_in_one_line(exported):
    """Each used to surface as numpy's or onnxruntime's own error, a MemoryError, or (psi 1e300,
    which overflows float32) as NaN cast to pixel values."""
    import gankit.runtime as rt
    from gankit.runtime import RuntimeInputError

    family, config, G, path = exported
    m = rt.load(path, providers=["CPUExecutionProvider"])
    labels = 1 if family.condition == "label" else None
    for call, needle in [
        (lambda: m.generate(2, labels=labels, truncation=1e300), "from -10 to 10"),
        (lambda: m.generate(2, labels=labels, truncation="0.7"), "must be a number"),
        (lambda: m.interpolate(3, truncation=1e300), "from -10 to 10"),
        (lambda: m.mix(1, 1, truncation=1e300), "from -10 to 10"),
        (lambda: m.mix(2, 3, pad=-5), "pad must be an integer >= 0"),
        (lambda: m.mix(2, 3, pad=2.5), "pad must be an integer"),
        (lambda: m.mix(2, 3, pad=10**6), "pad must be at most"),
        (lambda: m.mix(10**12, 3), "too many for one call"),
        (lambda: m.mix(2, 3, crossover=[2]), "crossover must be a layer index"),
        (lambda: m.mix(2, 3, crossover="2"), "crossover must be a layer index"),
        (lambda: m.interpolate(4, keys=10**12), "keys must be at most"),
    ]:
        with pytest.raises(RuntimeInputError, match=needle):
            call()


@pytest.mark.parametrize("key,value,needle", [
    ("gankit.optional_inputs", "z2,crossover,truncation,zoom", "no input for"),
    ("gankit.optional_inputs", "z2,truncation", "z2 and crossover"),
    ("gankit.mix_crossover", "abc", "not an integer"),
    ("gankit.num_layers", "x", "not an integer"),
    ("gankit.num_layers", "99999", "between 1 and"),
    ("gankit.mix_crossover", "99", "between 0 and"),
])
def test_edited_latent_metadata_is_refused_at_load(exported, tmp_path, key, value, needle):
    import onnx

    import gankit.runtime as rt
    from gankit.runtime import ModelFormatError

    family, config, G, path = exported
    model = onnx.load(str(path))
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = value
            break
    else:
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(tmp_path / "edited.onnx"))
    with pytest.raises(ModelFormatError, match=needle):
        rt.load(tmp_path / "edited.onnx", providers=["CPUExecutionProvider"])


def test_optional_inputs_the_graph_lacks_are_refused_at_load(tmp_path):
    """A plain generator whose metadata claims stylegan's inputs: refused when loaded, where
    mix() and truncation used to fail in onnxruntime's words."""
    import onnx

    import gankit.runtime as rt
    from gankit.runtime import ModelFormatError
    from tests.serve_models import make_generator

    plain = make_generator(tmp_path / "g.onnx", latent=4, classes=0, c=1, h=8, w=8)
    model = onnx.load(str(plain))
    model.metadata_props.add(key="gankit.optional_inputs", value="z2,crossover,truncation")
    model.metadata_props.add(key="gankit.num_layers", value="4")
    onnx.save(model, str(tmp_path / "claims.onnx"))
    for backend in ("onnxruntime", "openvino"):
        if backend == "openvino":
            pytest.importorskip("openvino")
        with pytest.raises(ModelFormatError, match="no input for"):
            rt.load(tmp_path / "claims.onnx", backend=backend)


def test_slerp_walk_is_a_closed_smooth_loop():
    from gankit.runtime.latent import slerp, walk

    a, b = np.random.default_rng(0).standard_normal((2, 1, 16))
    assert np.allclose(slerp(a, b, 0.0), a, atol=1e-6) and np.allclose(slerp(a, b, 1.0), b, atol=1e-6)
    z = walk(16, 40, keys=4, seed=0)
    assert z.shape == (40, 16)
    gaps = np.linalg.norm(np.diff(np.vstack([z, z[:1]]), axis=0), axis=1)  # including the wrap-around
    assert gaps.max() < 3 * gaps.mean()


@pytest.mark.parametrize("other", ["cgan", "gan"])
def test_interpolate_works_on_other_families_and_style_tools_refuse(other, gankit_check):
    import gankit.runtime as rt
    from gankit.runtime import RuntimeInputError

    report = gankit_check(other, num_classes=3, overrides={"ngf": 8, "ndf": 8, "clusters": 0} if other == "gan"
                          else {"ngf": 8, "ndf": 8})
    m = rt.load(report.onnx_path, providers=["CPUExecutionProvider"])  # a format-1 file without optional inputs
    walk = m.interpolate(6, seed=0, label=2 if m.num_classes else None)
    assert walk.shape == (6, 28, 28, 1)
    assert np.array_equal(m.generate(3, seed=0, truncation=1.0), m.generate(3, seed=0))
    with pytest.raises(RuntimeInputError, match="truncation"):
        m.generate(3, seed=0, truncation=0.7)
    with pytest.raises(RuntimeInputError, match="style mixing"):
        m.mix(2, 2)


def test_cli_mix_interpolate_and_bad_input(exported, tmp_path, capsys):
    from gankit.cli import main

    family, config, G, path = exported
    assert main(["generate", str(path), "--n", "4", "--truncation", "0.7", "--out", str(tmp_path / "g.png")]) == 0
    assert main(["mix", str(path), "--rows", "2", "--cols", "3", "--out", str(tmp_path / "m.png")]) == 0
    assert main(["interpolate", str(path), "--frames", "6", "--out", str(tmp_path / "w.gif")]) == 0
    from PIL import Image

    with Image.open(tmp_path / "w.gif") as gif:
        assert gif.n_frames == 6
    capsys.readouterr()
    before = (tmp_path / "m.png").read_bytes()
    for argv in (["mix", str(path), "--out", str(tmp_path / "m.png")],  # exists: not overwritten
                 ["mix", str(path), "--crossover", "99", "--out", str(tmp_path / "m2.png")],
                 ["interpolate", str(path), "--frames", "0", "--out", str(tmp_path / "w2.gif")],
                 ["interpolate", str(path), "--out", str(tmp_path / "w.png")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err
    assert (tmp_path / "m.png").read_bytes() == before
    assert not (tmp_path / "m2.png").exists()


# -- training ---------------------------------------------------------------------------------
def test_resume_is_bit_identical(tmp_path):
    from safetensors.numpy import load_file

    from gankit.pipeline import train

    # lazy R1 every 2 D iterations and path length every 2 steps: the stop at step 3 falls between
    common = dict(plugin="stylegan", batch_size=8, evaluate=False, export=False, quiet=True, device="cpu",
                  overrides={**SMALL, "sample_every": 3, "r1_every": 2, "pl_weight": 2.0, "pl_every": 2})

    def weights(run):
        last = sorted((run / "checkpoints").glob("step-*.safetensors"))[-1]
        return {k: v for k, v in load_file(str(last)).items() if k.startswith(("G/", "D/", "G_ema/"))}

    train(out=tmp_path / "a", steps=5, **common)
    train(out=tmp_path / "b", steps=3, **common)
    train(out=tmp_path / "b", steps=5, resume=True, **common)
    wa, wb = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert wa.keys() == wb.keys() and "G/w_avg" in wa and "G/pl_mean" in wa
    assert float(np.abs(wa["G/w_avg"]).max()) > 0 and float(wa["G/pl_mean"]) > 0
    assert all(np.array_equal(wa[k], wb[k]) for k in wa), "resumed run differs from an uninterrupted one"


@pytest.mark.parametrize("name,shape", [("stylegan", (1, 28, 28)), ("stylegan-cond", (3, 32, 32))])
def test_conformance_kit(gankit_check, name, shape):
    report = gankit_check(name, shape=shape, num_classes=4,
                          overrides={**SMALL, "r1_every": 1, "pl_weight": 2.0, "pl_every": 1})
    assert report.passed == ["contract", "forward", "train", "export", "runtime"]
    assert "r1_lazy" in report.losses and "path_length" in report.losses


def test_generator_runs_under_torchs_flop_counter():
    # gankit bench counts FLOPs with torch's FlopCounterMode under no_grad; a view of a parameter
    # made there (the learned constant, expanded) once broke its autograd hooks
    from torch.utils.flop_counter import FlopCounterMode

    family, config = _config()
    G = family.build_generator(config).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        G(torch.randn(2, config["latent_dim"]))
    assert counter.get_total_flops() > 0


def test_int8_quantises_a_copy_with_the_defaults_as_constants(exported, tmp_path):
    import shutil

    import onnx

    import gankit.runtime as gr
    from gankit.export.quantize import _defaults_as_constants, calibration_batches, quantize_int8

    family, config, G, path = exported
    copy = tmp_path / "m.onnx"
    shutil.copy(path, copy)
    (tmp_path / "t").mkdir()
    const = _defaults_as_constants(copy, tmp_path / "t")
    required = ["z", "label"] if family.condition == "label" else ["z"]
    assert const != copy and [i.name for i in onnx.load(str(const)).graph.input] == required
    feed = {"z": np.random.default_rng(0).standard_normal((3, config["latent_dim"])).astype(np.float32)}
    if family.condition == "label":
        feed["label"] = np.arange(3, dtype=np.int64)
    assert np.abs(_session(const).run(None, feed)[0] - _session(copy).run(None, feed)[0]).max() <= 1e-6
    assert _defaults_as_constants(const, tmp_path / "t") == const  # nothing left to fold: the file itself
    # the int8 file has the required inputs only, and its metadata says so: truncation is
    # refused with a line that names the reason, not "export a stylegan model"
    q = quantize_int8(copy, tmp_path / "q.onnx", calibration_batches(family, config, None, batches=2, batch=8))
    meta = {p.key: p.value for p in onnx.load(str(q)).metadata_props}
    assert meta["gankit.optional_inputs"] == "" and meta["gankit.precision"] == "int8"
    m = gr.load(q)
    assert m.generate(2, labels=0 if family.condition == "label" else None, seed=0).shape[0] == 2
    with pytest.raises(gr.RuntimeInputError, match="fixes at their defaults"):
        m.generate(2, labels=0 if family.condition == "label" else None, seed=0, truncation=0.7)


# -- projection (gankit project) ----------------------------------------------------------------
@pytest.mark.parametrize("wplus", [False, True])
def test_projection_recovers_an_image_of_the_generator(wplus):
    from gankit.train.project import project

    family, config = _config()
    G = _trained_w_avg_generator(family, config)
    space = family.latent_space(G, config)
    with torch.no_grad():
        w_true = space.sample_w(1, torch.Generator().manual_seed(5))
        target = space.synthesize(w_true[:, None].expand(1, space.num_layers, -1))
    a = project(space, target, steps=150, wplus=wplus, seed=0)
    b = project(space, target, steps=150, wplus=wplus, seed=0)
    assert a.w.shape == (space.num_layers, config["w_dim"])
    assert wplus or bool((a.w == a.w[0]).all()), "in W every layer shares one w"
    # the found w reproduces the picture far better than where the search started
    assert a.psnr_db > a.start_psnr_db + 6, (a.psnr_db, a.start_psnr_db)
    assert torch.equal(a.w, b.w), "same seed, same projection"


def test_cli_project_writes_target_projection_and_variations_and_refuses_bad_input(tmp_path, capsys):
    from PIL import Image

    from gankit.cli import main
    from gankit.pipeline import train

    common = dict(batch_size=8, steps=2, evaluate=False, export=False, quiet=True, device="cpu")
    train(plugin="stylegan", out=tmp_path / "sg", overrides={**SMALL, "sample_every": 2}, **common)
    train(plugin="gan", out=tmp_path / "gan", overrides={"sample_every": 2}, **common)
    digit = tmp_path / "digit.png"
    Image.fromarray((np.random.default_rng(0).random((40, 30, 3)) * 255).astype(np.uint8)).save(digit)  # any size, colour
    out, w = tmp_path / "p.png", tmp_path / "w.npy"
    argv = ["project", str(tmp_path / "sg"), "--image", str(digit), "--steps", "5", "--variations", "3",
            "--out", str(out), "--save-w", str(w)]
    assert main(argv) == 0
    assert "PSNR" in capsys.readouterr().out
    with Image.open(out) as im:
        assert im.size[0] > 4 * im.size[1]  # one row: target, projection, 3 variations
    assert np.load(w).shape[1] == SMALL["w_dim"]
    before = out.read_bytes()
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    for args in (argv,  # outputs exist: refused, not overwritten
                 ["project", str(tmp_path / "gan"), "--image", str(digit), "--out", str(tmp_path / "q.png")],
                 ["project", str(tmp_path / "sg"), "--image", str(bad), "--out", str(tmp_path / "q.png")],
                 ["project", str(tmp_path / "sg"), "--image", str(digit), "--steps", "0", "--out", str(tmp_path / "q.png")],
                 ["project", str(tmp_path / "nothing"), "--image", str(digit), "--out", str(tmp_path / "q.png")]):
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err, err
    assert out.read_bytes() == before
    assert not (tmp_path / "q.png").exists()


def test_openvino_runs_the_optional_inputs_like_onnxruntime(exported):
    pytest.importorskip("openvino")
    from gankit import runtime

    family, config, G, path = exported
    ov, ort_model = runtime.load(path, backend="openvino", precision="f32"), runtime.load(path)
    label = 3 if family.condition == "label" else None
    for kw in ({"truncation": 0.6}, {}):
        a = ov.generate(5, labels=label, seed=1, **kw)
        b = ort_model.generate(5, labels=label, seed=1, **kw)
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert np.abs(ov.mix(2, 3, seed=0, label=label).astype(int) - ort_model.mix(2, 3, seed=0, label=label).astype(int)).max() <= 1


def test_bf16_training_keeps_the_running_averages_in_fp32(tmp_path):
    from safetensors.numpy import load_file

    from gankit.pipeline import train

    # every regulariser on every step: R1 and path length differentiate twice under autocast
    train(plugin="stylegan", out=tmp_path / "r", steps=2, batch_size=8, evaluate=False, export=False, quiet=True,
          device="cpu", overrides={**SMALL, "precision": "bf16", "sample_every": 2, "r1_every": 1,
                                   "pl_weight": 2.0, "pl_every": 1})
    last = sorted((tmp_path / "r" / "checkpoints").glob("step-*.safetensors"))[-1]
    w = load_file(str(last))
    assert w["G/w_avg"].dtype == np.float32 and float(np.abs(w["G/w_avg"]).max()) > 0
    assert w["G/pl_mean"].dtype == np.float32 and float(w["G/pl_mean"]) > 0
    assert all(np.isfinite(v).all() for k, v in w.items() if k.startswith("G/"))
