"""The runtime trusts nothing (issue 20, defects 5, 6, 7 and 10; issue 22's runtime layering).

Hostile files are made two ways: by editing the ``metadata_props`` of a file the exporter wrote
(the session's tiny runs), and by building tiny graphs with ``onnx.helper``. A hypothesis
property test then drives the API with arbitrary arguments.
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from gankit import runtime
from gankit.errors import GankitError
from tests.conftest import GANKIT, assert_one_line_error, run_subprocess

ROOT = Path(__file__).resolve().parents[1]
TYPED = (runtime.RuntimeInputError, runtime.ModelFormatError)


def _one_line(exc: BaseException) -> None:
    assert isinstance(exc, TYPED) and isinstance(exc, GankitError) and exc.exit_code == 2, repr(exc)
    assert "\n" not in str(exc) and str(exc).strip(), repr(exc)


def with_metadata(src: Path, dst: Path, drop: tuple[str, ...] = (), **changes: str) -> Path:
    """A copy of ``src`` whose ``gankit.<key>`` metadata is replaced (``changes``) or removed (``drop``)."""
    model = onnx.load(str(src))
    meta = {p.key: p.value for p in model.metadata_props}
    for key in drop:
        meta.pop(f"gankit.{key}")
    meta.update({f"gankit.{k}": v for k, v in changes.items()})
    del model.metadata_props[:]
    for k, v in meta.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = k, v
    onnx.save(model, str(dst))
    return dst


def tiny_generator(path: Path, *, side: int = 8, latent: int = 4, meta_side: int | None = None, dynamic: bool = False,
                   op: str = "Tanh", extra_meta: dict[str, str] | None = None) -> Path:
    """A gankit-shaped generator z [N, latent] -> image [N, 1, side, side] with hand-written metadata.

    ``dynamic``: the reshape target is computed from z's values, so no shape inference can see
    the output size and only the probe run finds it. ``op``: the activation (Sqrt gives NaN for z < 0).
    """
    w = numpy_helper.from_array(np.full((latent, side * side), 0.05, np.float32), "W")
    nodes = [helper.make_node("MatMul", ["z", "W"], ["h"]), helper.make_node(op, ["h"], ["t"])]
    inits = [w]
    if dynamic:
        inits += [numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
                  numpy_helper.from_array(np.array(float(side), np.float32), "side"),
                  numpy_helper.from_array(np.array([-1, 1], np.int64), "head")]
        nodes += [helper.make_node("ReduceMax", ["z"], ["zmax"], keepdims=0),
                  helper.make_node("Mul", ["zmax", "zero"], ["z0"]),
                  helper.make_node("Add", ["z0", "side"], ["sf"]),
                  helper.make_node("Cast", ["sf"], ["si"], to=TensorProto.INT64),
                  helper.make_node("Unsqueeze", ["si", "axis0"], ["s1"]),
                  helper.make_node("Concat", ["head", "s1", "s1"], ["shape"], axis=0)]
        inits.append(numpy_helper.from_array(np.array([0], np.int64), "axis0"))
        out_shape = ["N", "C", "H", "W"]
    else:
        inits.append(numpy_helper.from_array(np.array([-1, 1, side, side], np.int64), "shape"))
        out_shape = ["N", 1, side, side]
    nodes.append(helper.make_node("Reshape", ["t", "shape"], ["image"]))
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", latent])],
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, out_shape)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    ms = meta_side or side
    meta = {"gankit.format": "1", "gankit.plugin": "tiny", "gankit.task": "generate", "gankit.latent_dim": str(latent),
            "gankit.num_classes": "0", "gankit.class_names": "[]", "gankit.channels": "1", "gankit.height": str(ms),
            "gankit.width": str(ms), "gankit.value_range": "-1,1", "gankit.version": "0.1.0", **(extra_meta or {})}
    for k, v in meta.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = k, v
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def models(tiny_runs):
    return {f: runtime.load(tiny_runs[f]["onnx"]) for f in ("gan", "cgan", "inpaint")}


# == defect 5: the runtime believed the metadata ============================================
def test_fixture_files_and_a_good_hand_built_file_load(tiny_runs, tmp_path):
    """Positive controls: files exported before (format 1) and a correct tiny graph load and run."""
    for family in ("gan", "cgan", "inpaint"):
        m = runtime.load(tiny_runs[family]["onnx"])
        assert m.info.format == "1" and m.probe_ms >= 0
    g = runtime.load(tiny_generator(tmp_path / "ok.onnx"))
    assert g.generate(3, seed=0).shape == (3, 8, 8, 1)
    g = runtime.load(tiny_generator(tmp_path / "ok-dyn.onnx", dynamic=True))
    assert g.generate(3, seed=0).shape == (3, 8, 8, 1)


HOSTILE_METADATA = [
    ("inpaint", {"height": "0"}, "gankit.height is 0"),
    ("inpaint", {"height": "-28"}, "gankit.height is -28"),
    ("inpaint", {"width": "28.0"}, "not an integer"),
    ("inpaint", {"height": "14"}, "implies"),
    ("inpaint", {"channels": "3"}, "implies"),
    ("inpaint", {"channels": "2"}, r"1 \(gray\) or 3"),
    ("inpaint", {"latent_dim": "7"}, "gankit.latent_dim"),
    ("cgan", {"latent_dim": "100"}, "implies"),
    ("cgan", {"latent_dim": "-5"}, "gankit.latent_dim is -5"),
    ("cgan", {"latent_dim": "1e3"}, "not an integer"),
    ("cgan", {"num_classes": "100"}, "class_names has 10 names"),
    ("cgan", {"num_classes": "100", "class_names": "[]"}, "probe run at batch 1 failed"),
    ("cgan", {"num_classes": "0", "class_names": "[]"}, "has inputs"),
    ("cgan", {"num_classes": "-1"}, "gankit.num_classes is -1"),
    ("cgan", {"class_names": "123"}, "JSON list of strings"),
    ("cgan", {"class_names": "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"}, "JSON list of strings"),
    ("cgan", {"class_names": "not json"}, "not a JSON list"),
    ("cgan", {"class_names": '["a", "b"]'}, "has 2 names"),
    ("cgan", {"class_names": '["a", "a", "b", "c", "d", "e", "f", "g", "h", "i"]'}, "repeats a name"),
    ("gan", {"value_range": "0,1"}, "value_range"),
    ("gan", {"value_range": "wide"}, "value_range"),
    ("gan", {"format": "2"}, "format"),
    ("gan", {"task": "upscale"}, "unknown task"),
    ("gan", {"task": "restore"}, "latent_dim is 64; it must be between 0 and 0"),
    ("gan", {"task": "restore", "latent_dim": "0"}, "lacks gankit.scale"),
    ("gan", {"task": "restore", "latent_dim": "0", "scale": "1"}, "a gankit restore model has"),
    ("gan", {"inputs": "z,label"}, "gankit.inputs"),
    ("gan", {"output": "restored"}, "gankit.output"),
    ("gan", {"plugin": "gan\u2028two lines"}, "must be a plugin name"),
]


@pytest.mark.parametrize("family,changes,match", HOSTILE_METADATA,
                         ids=[f"{f}-" + ",".join(f"{k}={v}" for k, v in c.items()) for f, c, _ in HOSTILE_METADATA])
def test_hostile_metadata_is_refused_at_load(tiny_runs, tmp_path, family, changes, match):
    bad = with_metadata(tiny_runs[family]["onnx"], tmp_path / "bad.onnx", **changes)
    with pytest.raises(runtime.ModelFormatError, match=match) as info:
        runtime.load(bad)
    _one_line(info.value)


def test_missing_latent_dim_of_a_generator_is_refused(tiny_runs, tmp_path):
    bad = with_metadata(tiny_runs["gan"]["onnx"], tmp_path / "bad.onnx", drop=("latent_dim",))
    with pytest.raises(runtime.ModelFormatError, match="lacks gankit.latent_dim"):
        runtime.load(bad)


@pytest.mark.parametrize("dynamic", [False, True], ids=["static-shape", "probe-only"])
def test_8x8_graph_under_28x28_metadata_is_refused(tmp_path, dynamic):
    path = tiny_generator(tmp_path / "g.onnx", side=8, meta_side=28, dynamic=dynamic)
    with pytest.raises(runtime.ModelFormatError, match="probe run gives" if dynamic else "implies") as info:
        runtime.load(path)
    _one_line(info.value)


def test_contract_dtypes_ranks_and_batch_axis(tmp_path):
    """Hand-built graphs that break the contract in one way each."""
    def save(inputs, outputs, nodes, name, inits=()):
        g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
        m.ir_version = 9
        for k, v in {"gankit.format": "1", "gankit.task": "generate", "gankit.latent_dim": "4", "gankit.channels": "1",
                     "gankit.height": "2", "gankit.width": "2"}.items():
            p = m.metadata_props.add()
            p.key, p.value = k, v
        onnx.save(m, str(tmp_path / name))
        return tmp_path / name

    shape = numpy_helper.from_array(np.array([-1, 1, 2, 2], np.int64), "shape")
    vi = helper.make_tensor_value_info
    cases = {
        "double z": (save([vi("z", TensorProto.DOUBLE, ["N", 4])], [vi("image", TensorProto.DOUBLE, ["N", 1, 2, 2])],
                          [helper.make_node("Reshape", ["z", "shape"], ["image"])], "d.onnx", [shape]), "is float64"),
        "z of rank 3": (save([vi("z", TensorProto.FLOAT, ["N", 4, 1])], [vi("image", TensorProto.FLOAT, ["N", 1, 2, 2])],
                             [helper.make_node("Reshape", ["z", "shape"], ["image"])], "r.onnx", [shape]), "has shape"),
        "fixed batch": (save([vi("z", TensorProto.FLOAT, [1, 4])], [vi("image", TensorProto.FLOAT, [1, 1, 2, 2])],
                             [helper.make_node("Reshape", ["z", "shape"], ["image"])], "b.onnx", [shape]), "fixed batch"),
        "output named out": (save([vi("z", TensorProto.FLOAT, ["N", 4])], [vi("out", TensorProto.FLOAT, ["N", 1, 2, 2])],
                                  [helper.make_node("Reshape", ["z", "shape"], ["out"])], "o.onnx", [shape]), "output is named"),
    }
    for name, (path, match) in cases.items():
        with pytest.raises(runtime.ModelFormatError, match=match) as info:
            runtime.load(path)
        _one_line(info.value)


def test_hostile_files_exit_2_from_the_cli_without_extra_log_lines(tiny_runs, tmp_path):
    """Through a real process, so onnxruntime's own stderr logging (fd 2) would show."""
    img = tmp_path / "img.png"
    Image.fromarray(np.full((28, 28), 90, np.uint8)).save(img)
    mask = tmp_path / "mask.png"
    Image.fromarray(np.pad(np.full((8, 8), 255, np.uint8), 10)).save(mask)
    h0 = with_metadata(tiny_runs["inpaint"]["onnx"], tmp_path / "h0.onnx", height="0")
    lat = with_metadata(tiny_runs["cgan"]["onnx"], tmp_path / "lat.onnx", latent_dim="100")
    cls = with_metadata(tiny_runs["cgan"]["onnx"], tmp_path / "cls.onnx", num_classes="100", class_names="[]")
    small = tiny_generator(tmp_path / "small.onnx", side=8, meta_side=28, dynamic=True)
    for args in (["inpaint", h0, "--image", img, "--mask", mask, "--out", tmp_path / "o.png"],
                 ["generate", lat, "--out", tmp_path / "g.png"],
                 ["generate", cls, "--out", tmp_path / "g.png"],
                 ["generate", small, "--out", tmp_path / "g.png"]):
        r = run_subprocess([*GANKIT, *map(str, args)])
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (args[0], r.returncode, r.stderr)
        assert "contract" in lines[0]
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "g.png").exists()


def test_evaluate_refuses_a_graph_smaller_than_its_metadata(tmp_path, cli):
    small = tiny_generator(tmp_path / "small.onnx", side=8, meta_side=28, extra_meta={"gankit.data": "mnist5k"})
    r = cli("evaluate", small)
    assert_one_line_error(r, 2)
    assert "contract" in r.err


# == defect 6: typed errors from the API, NaN and inf refused =================================
MISUSES = [
    ("label 10**30", lambda m: m["cgan"].generate(2, labels=10**30)),
    ("label 2**63", lambda m: m["cgan"].generate(2, labels=2**63)),
    ("labels [None, None]", lambda m: m["cgan"].generate(2, labels=[None, None])),
    ("nested labels", lambda m: m["cgan"].generate(2, labels=[[1], [2]])),
    ("ragged labels", lambda m: m["cgan"].generate(2, labels=[[1], [2, 3]])),
    ("label array 2**63 uint64", lambda m: m["cgan"].generate(2, labels=np.array([2**63, 1], np.uint64))),
    ("label out of range", lambda m: m["cgan"].generate(2, labels=[0, 10])),
    ("label nan", lambda m: m["cgan"].generate(1, labels=float("nan"))),
    ("label inf", lambda m: m["cgan"].generate(1, labels=[float("inf")])),
    ("label bool", lambda m: m["cgan"].generate(1, labels=True)),
    ("labels dict", lambda m: m["cgan"].generate(1, labels={1: 2})),
    ("seed -1", lambda m: m["gan"].generate(2, seed=-1)),
    ("seed abc", lambda m: m["gan"].generate(2, seed="abc")),
    ("seed 1.5", lambda m: m["gan"].generate(2, seed=1.5)),
    ("batch_size None", lambda m: m["gan"].generate(2, batch_size=None)),
    ("batch_size 2.5", lambda m: m["gan"].generate(2, batch_size=2.5)),
    ("batch_size 0", lambda m: m["gan"].generate(2, batch_size=0)),
    ("n huge", lambda m: m["gan"].generate(10**9)),
    ("n 10**30", lambda m: m["cgan"].generate(10**30)),
    ("n float", lambda m: m["gan"].generate(2.0)),
    ("n 10**5000 (no decimal repr)", lambda m: m["gan"].generate(10**5000)),
    ("label 10**5000 (no decimal repr)", lambda m: m["cgan"].generate(1, labels=10**5000)),
    ("labels range(10**30)", lambda m: m["cgan"].generate(3, labels=range(10**30))),
    ("as_pil string", lambda m: m["gan"].generate(2, as_pil="yes")),
    ("threads x", lambda m: runtime.load(m["gan"].path, threads="x")),
    ("threads 2.5", lambda m: runtime.load(m["gan"].path, threads=2.5)),
    ("threads huge", lambda m: runtime.load(m["gan"].path, threads=10**30)),
    ("unknown option", lambda m: runtime.load(m["gan"].path, colour="red")),
    ("bad provider", lambda m: runtime.load(m["gan"].path, providers=["NoSuchProvider"])),
    ("providers string", lambda m: runtime.load(m["gan"].path, providers="CPUExecutionProvider")),
    ("path int", lambda m: runtime.load(42)),
    ("path None", lambda m: runtime.load(None)),
    ("backend list", lambda m: runtime.load(m["gan"].path, backend=["onnxruntime"])),
    ("run_raw nan z", lambda m: m["gan"].run_raw(np.full((2, m["gan"].latent_dim), np.nan, np.float32))),
    ("run_raw inf z", lambda m: m["gan"].run_raw(np.full((2, m["gan"].latent_dim), np.inf))),
    ("run_raw z beyond float32", lambda m: m["gan"].run_raw(np.full((1, m["gan"].latent_dim), 1e300))),
    ("run_raw string z", lambda m: m["gan"].run_raw("zzz")),
    ("run_raw object z", lambda m: m["gan"].run_raw([[10**30] * m["gan"].latent_dim])),
    ("run_raw complex z", lambda m: m["gan"].run_raw(np.ones((1, m["gan"].latent_dim), complex))),
    ("run_raw conditional without labels", lambda m: m["cgan"].run_raw(np.zeros((2, m["cgan"].latent_dim)))),
    ("run_raw huge N", lambda m: m["gan"].run_raw(np.broadcast_to(np.float32(0), (10**8, m["gan"].latent_dim)))),
    ("run_raw_inpaint nan image", lambda m: m["inpaint"].run_raw_inpaint(np.full((1, 1, 28, 28), np.nan, np.float32),
                                                                          np.zeros((1, 1, 28, 28), np.float32))),
    ("run_raw_inpaint inf mask", lambda m: m["inpaint"].run_raw_inpaint(np.zeros((1, 1, 28, 28), np.float32),
                                                                         np.full((1, 1, 28, 28), np.inf, np.float32))),
    ("run_raw_inpaint image out of range", lambda m: m["inpaint"].run_raw_inpaint(np.full((1, 1, 28, 28), 5.0, np.float32),
                                                                                   np.zeros((1, 1, 28, 28), np.float32))),
    ("run_raw_inpaint mask shape", lambda m: m["inpaint"].run_raw_inpaint(np.zeros((2, 1, 28, 28)), np.zeros((1, 1, 28, 28)))),
    ("inpaint nan float image", lambda m: m["inpaint"].inpaint(np.full((9, 9), np.nan, np.float32), np.ones((9, 9), bool))),
    ("inpaint nan mask", lambda m: m["inpaint"].inpaint(np.zeros((9, 9), np.uint8), np.full((9, 9), np.nan))),
    ("inpaint ragged image", lambda m: m["inpaint"].inpaint([[1, 2], [3]], np.ones((2, 2), bool))),
    ("inpaint None image", lambda m: m["inpaint"].inpaint(None, np.ones((2, 2), bool))),
    ("inpaint int image 300", lambda m: m["inpaint"].inpaint(np.full((4, 4), 300), np.ones((4, 4), bool))),
    ("inpaint bool image", lambda m: m["inpaint"].inpaint(np.ones((4, 4), bool), np.ones((4, 4), bool))),
    ("inpaint negative mask", lambda m: m["inpaint"].inpaint(np.zeros((4, 4), np.uint8), np.full((4, 4), -1))),
    ("inpaint string mask", lambda m: m["inpaint"].inpaint(np.zeros((4, 4), np.uint8), "mask.png")),
    ("inpaint batch_size 0", lambda m: m["inpaint"].inpaint(np.zeros((4, 4), np.uint8), np.ones((4, 4), bool), batch_size=0)),
]


@pytest.mark.parametrize("name,call", MISUSES, ids=[m[0] for m in MISUSES])
def test_every_misuse_raises_a_typed_one_line_error(models, name, call):
    with pytest.raises(TYPED) as info:
        call(models)
    _one_line(info.value)


def test_valid_label_forms_still_work(models):
    m = models["cgan"]
    ref = m.generate(3, labels=[1, 2, 3], seed=4)
    for same in ([1.0, 2.0, 3.0], np.array([1, 2, 3], np.uint8), ("1", "2", "3"), np.array(["1", "2", "3"]),
                 range(1, 4), [np.int64(1), 2, "3"]):
        assert np.array_equal(m.generate(3, labels=same, seed=4), ref), same
    assert np.array_equal(m.generate(3, labels=np.int32(5), seed=0), m.generate(3, labels=5, seed=0))
    assert np.array_equal(m.generate(3, labels=np.array(5), seed=0), m.generate(3, labels="5", seed=0))
    assert m.generate(4, seed=0).shape == (4, 28, 28, 1)  # labels=None cycles through the classes
    assert np.array_equal(m.generate(5, seed=np.uint32(7)), m.generate(5, seed=7))


def test_generation_is_chunked_and_identical_to_one_draw(models):
    """Noise drawn per batch is the stream of one (n, latent_dim) draw: results do not depend on batch_size."""
    m = models["gan"]
    z = np.random.default_rng(11).standard_normal((10, m.latent_dim)).astype(np.float32)
    from gankit.images import nchw_to_hwc_uint8

    expected = nchw_to_hwc_uint8(m.run_raw(z))
    for bs in (1, 3, 10, 256):
        assert np.array_equal(m.generate(10, seed=11, batch_size=bs), expected), bs


def test_nan_outputs_are_refused_never_cast(tmp_path):
    """Sqrt of a negative pre-activation gives NaN: refused, not turned into black pixels."""
    m = runtime.load(tiny_generator(tmp_path / "sqrt.onnx", op="Sqrt"))  # the probe (z = 0) gives 0: loads
    with pytest.raises(runtime.ModelFormatError, match="NaN") as info:
        m.run_raw(-np.ones((2, 4), np.float32))
    _one_line(info.value)
    with pytest.raises(runtime.ModelFormatError, match="NaN"):
        m.generate(8, seed=0)  # some z are negative
    assert m.run_raw(np.ones((2, 4), np.float32)).shape == (2, 1, 8, 8)


def test_a_graph_that_gives_nan_at_the_probe_is_refused(tmp_path):
    with pytest.raises(runtime.ModelFormatError, match="NaN or infinite"):
        runtime.load(tiny_generator(tmp_path / "log.onnx", op="Log"))  # log(0) = -inf


# -- the property: only gankit's error classes escape -----------------------------------------
_ODD_INTS = st.sampled_from([-1, 0, 2**31, 2**63, -(2**63), 2**64, 10**9, 10**30, 10**400])
_SCALARS = (st.none() | st.booleans() | st.integers(-3, 40) | _ODD_INTS
            | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=4))
_ANY = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
                    | st.dictionaries(st.text(max_size=2), inner, max_size=2), max_leaves=8)
_ARRAYS = hnp.arrays(dtype=st.sampled_from([np.uint8, np.uint16, np.int64, np.float32, np.float64, bool, np.complex64]),
                     shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=9),
                     elements=None)


def _argument(model, role: str):
    """Arbitrary values, plus some that are almost right for ``role`` so the deeper checks are reached."""
    near = {
        "z": hnp.arrays(np.float32, st.tuples(st.integers(0, 3), st.sampled_from([model.latent_dim, 1])),
                        elements=st.floats(width=32)),
        "images": hnp.arrays(np.float32, st.tuples(st.integers(0, 2), st.just(1), st.just(28), st.sampled_from([28, 27])),
                             elements=st.floats(-2, 2, width=32) | st.just(np.nan)),
        "image": hnp.arrays(st.sampled_from([np.uint8, np.uint16, np.float32, np.int16]),
                            st.tuples(st.integers(1, 9), st.integers(1, 9), st.sampled_from([1, 3, 4])),
                            elements=None)
        | st.builds(Image.fromarray, hnp.arrays(st.sampled_from([np.uint8, np.uint16, np.int32, np.float32, bool]),
                                                st.tuples(st.integers(1, 9), st.integers(1, 9)), elements=None)),
    }.get(role)
    return (_ANY | _ARRAYS | near) if near is not None else (_ANY | _ARRAYS)


@settings(max_examples=int(os.environ.get("GANKIT_PROPERTY_EXAMPLES", 150)), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(data=st.data())
def test_property_only_gankit_errors_escape_the_runtime_api(models, data):
    which = data.draw(st.sampled_from(["generate", "run_raw", "run_raw_inpaint", "inpaint", "load"]))
    try:
        if which == "generate":
            m = models[data.draw(st.sampled_from(["gan", "cgan", "inpaint"]))]
            out = m.generate(data.draw(_ANY | _ODD_INTS), labels=data.draw(_argument(m, "labels")),
                             seed=data.draw(_ANY), as_pil=data.draw(_ANY), batch_size=data.draw(_ANY))
            assert len(out) >= 1
        elif which == "run_raw":
            m = models[data.draw(st.sampled_from(["gan", "cgan"]))]
            out = m.run_raw(data.draw(_argument(m, "z")), labels=data.draw(_ANY | _ARRAYS),
                            batch_size=data.draw(st.integers(1, 4) | _ANY))
            assert np.isfinite(out).all()
        elif which == "run_raw_inpaint":
            m = models["inpaint"]
            out = m.run_raw_inpaint(data.draw(_argument(m, "images")), data.draw(_argument(m, "images")),
                                    batch_size=data.draw(st.integers(1, 4) | _ANY))
            assert np.isfinite(out).all()
        elif which == "inpaint":
            m = models["inpaint"]
            m.inpaint(data.draw(_argument(m, "image")), data.draw(_ANY | _ARRAYS),
                      as_pil=data.draw(st.booleans() | _ANY), batch_size=data.draw(st.integers(1, 4) | _ANY))
        else:
            runtime.load(data.draw(st.just(models["gan"].path) | _ANY), threads=data.draw(st.none() | _ANY),
                         backend=data.draw(st.just("onnxruntime") | _ANY), providers=data.draw(st.none() | _ANY))
    except TYPED as exc:
        _one_line(exc)


# == defect 7: images of every mode ===========================================================
RAMP16 = (np.arange(28 * 28, dtype=np.uint32).reshape(28, 28) * 83 + 300).astype(np.uint16)  # 300..65291
HOLE = np.zeros((28, 28), bool)
HOLE[10:18, 10:18] = True


def _pil_cases():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal_t = pal.copy()
    pal_t.info["transparency"] = 0
    rgba = np.dstack([rgb, rng.integers(0, 256, (28, 28), dtype=np.uint8)])
    la = np.dstack([rgb[..., 0], rgb[..., 1]])
    return {
        "I;16": (Image.fromarray(RAMP16), RAMP16[..., None]),
        "I": (Image.fromarray(RAMP16.astype(np.int32)), RAMP16[..., None]),
        "F": (Image.fromarray(RAMP16.astype(np.float32) / 65535), (RAMP16.astype(np.float32) / 65535)[..., None]),
        "P": (pal, np.asarray(pal.convert("RGB"))),
        "P+transparency": (pal_t, np.asarray(pal_t.convert("RGBA"))),
        "RGBA": (Image.fromarray(rgba, "RGBA"), rgba),
        "LA": (Image.fromarray(la, "LA"), np.dstack([la[..., :1].repeat(3, 2), la[..., 1:]])),
        "1": (Image.fromarray(rgb[..., 0] > 127), ((rgb[..., 0] > 127) * np.uint8(255))[..., None]),
    }


@pytest.mark.parametrize("mode", list(_pil_cases()))
def test_api_reads_every_pil_mode_at_its_depth(models, mode):
    im, expected = _pil_cases()[mode]
    out = models["inpaint"].inpaint(im, HOLE)
    assert out.dtype == expected.dtype and out.shape == expected.shape, (out.dtype, out.shape)
    assert np.array_equal(out[~HOLE], expected[~HOLE])  # known pixels exactly as given, at full depth
    if expected.shape[2] == 4:
        assert np.array_equal(out[..., 3], expected[..., 3])  # alpha untouched, holes included
    if mode in ("I;16", "I"):
        assert len(np.unique(out[~HOLE])) > 256 and out[~HOLE].max() > 255  # not clipped to 8 bits
    if mode == "F":
        assert out.max() <= 1.0 and out[~HOLE].max() > 0.9  # not all zeros
    pil = models["inpaint"].inpaint(im, HOLE, as_pil=True)
    assert pil.size == (28, 28)


@pytest.mark.parametrize("bad,match", [
    (Image.fromarray(np.full((8, 8), 70000, np.int32)), "16-bit"),
    (Image.fromarray(np.full((8, 8), -5, np.int32)), "16-bit"),
    (Image.fromarray(np.full((8, 8), 255.0, np.float32)), r"\[0, 1\]"),
    (Image.fromarray(np.full((8, 8), np.nan, np.float32)), "NaN"),
], ids=["I over 65535", "I negative", "F in 0..255", "F nan"])
def test_out_of_range_wide_images_are_refused_not_clipped(models, bad, match):
    with pytest.raises(runtime.RuntimeInputError, match=match) as info:
        models["inpaint"].inpaint(bad, np.ones((8, 8), bool))
    _one_line(info.value)


def test_uint16_and_float_arrays_keep_their_depth(models):
    m = models["inpaint"]
    out = m.inpaint(RAMP16, HOLE)
    assert out.dtype == np.uint16 and out.shape == RAMP16.shape and np.array_equal(out[~HOLE], RAMP16[~HOLE])
    f = RAMP16.astype(np.float64) / 65535
    outf = m.inpaint(f, HOLE)  # the caller's float64 back, known pixels exactly as given (not via float32)
    assert outf.dtype == np.float64 and np.array_equal(outf[~HOLE], f[~HOLE])
    # the same picture at three depths is filled alike (one model, one [-1, 1] path)
    out8 = m.inpaint((RAMP16 // 257).astype(np.uint8), HOLE)
    assert np.abs(out[HOLE] / 257.0 - out8[HOLE]).max() <= 2.0
    assert np.abs(outf[HOLE] * 255.0 - out8[HOLE]).max() <= 2.0


def test_results_come_back_in_the_callers_dtype(models, tmp_path):
    """float64, float16 and int64 arrays used to come back as float32 or uint8."""
    from tests.restore_models import make_resize_restorer

    up2 = runtime.load(make_resize_restorer(tmp_path / "up2.onnx", c=3, scale=2))
    rgb = np.random.default_rng(0).random((6, 5, 3))
    for dtype in (np.float64, np.float16):
        out = up2.restore(rgb.astype(dtype))
        assert out.dtype == dtype and out.shape == (12, 10, 3)
        np.testing.assert_allclose(out, rgb.astype(dtype).repeat(2, 0).repeat(2, 1), atol=1e-3)
    ints = (rgb * 255).astype(np.int64)
    out = up2.restore(ints)
    assert out.dtype == np.int64 and np.array_equal(out, ints.repeat(2, 0).repeat(2, 1))
    filled = models["inpaint"].inpaint((RAMP16 // 257).astype(np.int32), HOLE)
    assert filled.dtype == np.int32 and np.array_equal(filled[~HOLE], (RAMP16 // 257)[~HOLE])
    # int8 cannot hold 128..255: uint8 comes back rather than values wrapped negative
    small = models["inpaint"].inpaint(np.full((28, 28), 120, np.int8), HOLE)
    assert small.dtype == np.uint8 and small.min() >= 0
    # float64 RGBA: alpha exactly as given everywhere, the hole included
    rgba = np.random.default_rng(2).random((28, 28, 4))
    out = models["inpaint"].inpaint(rgba, HOLE)
    assert out.dtype == np.float64 and np.array_equal(out[..., 3], rgba[..., 3])
    assert np.array_equal(out[~HOLE], rgba[~HOLE]) and not np.array_equal(out[HOLE][:, :3], rgba[HOLE][:, :3])


def test_empty_images_huge_views_and_huge_context_are_refused_up_front(models, tmp_path):
    """Each used to escape as a raw error (ZeroDivisionError, numpy's ValueError, a MemoryError
    after a 17.9 GiB float32 copy), or to ask for windows that got the process OOM-killed."""
    from tests.restore_models import make_resize_restorer

    up2 = runtime.load(make_resize_restorer(tmp_path / "up2.onnx", c=3, scale=2))
    inp = models["inpaint"]
    for call, needle in [
        (lambda: up2.restore(Image.new("RGB", (0, 0))), "image is empty"),
        (lambda: up2.restore(Image.new("RGB", (0, 5))), "image is empty"),
        (lambda: inp.inpaint(Image.new("L", (0, 0)), np.zeros((0, 0), bool)), "image is empty"),
        (lambda: up2.restore(np.broadcast_to(np.zeros((1, 1, 3)), (40000, 40000, 3))), "restore it in parts"),
        (lambda: inp.inpaint(np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (40000, 40000, 3)),
                             np.zeros((40000, 40000), bool)), "inpaint it in parts"),
    ]:
        with pytest.raises(runtime.RuntimeInputError, match=needle):
            call()
    small = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    # context beyond the image's side is capped: the same result as the largest useful pad
    assert np.array_equal(up2.restore(small, tile=7, tile_pad=1024), up2.restore(small, tile=7, tile_pad=30))


def test_integer_masks_of_zeros_and_ones_mark_holes_whatever_their_type(models):
    """A 0/1 uint16 mask was read by the 16-bit range rule (> 32767): no hole, silently."""
    m = models["inpaint"]
    img = (RAMP16 // 257).astype(np.uint8)
    ref = m.inpaint(img, HOLE)
    for dtype in (np.uint8, np.uint16, np.int32, np.int64, np.uint32):
        assert np.array_equal(m.inpaint(img, HOLE.astype(dtype)), ref), dtype
    assert np.array_equal(m.inpaint(img, HOLE.astype(np.uint16) * 65535), ref)  # 16-bit masks by their range


def test_backend_arguments_are_named_in_the_error(tiny_runs, tmp_path):
    path = tiny_runs["cgan"]["onnx"]
    with pytest.raises(runtime.RuntimeInputError, match="folder .* does not exist"):
        runtime.load(path, optimized_path=tmp_path / "nowhere" / "x.onnx")
    pytest.importorskip("openvino")
    for backend in ("openvino", "auto"):
        with pytest.raises(runtime.RuntimeInputError, match="OpenVINO has no device 'NPUX' here"):
            runtime.load(path, backend=backend, device="NPUX")


def test_a_gpu_provider_that_cannot_start_is_an_error_not_a_silent_cpu_run(tiny_runs, monkeypatch):
    """onnxruntime logs pages and runs on the CPU when CUDA cannot start; a caller who asked for
    CUDA alone hears it in one line, one who listed the CPU as fallback gets it quietly."""
    import onnxruntime as ort

    from gankit.runtime import engines

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime has no CUDA provider to ask for")
    path = tiny_runs["cgan"]["onnx"]
    if not engines._cuda_driver_present():
        with pytest.raises(runtime.RuntimeInputError, match="needs an NVIDIA GPU"):
            runtime.load(path, providers=["CUDAExecutionProvider"])
        assert runtime.load(path, providers=["CUDAExecutionProvider", "CPUExecutionProvider"]).providers == \
            ["CPUExecutionProvider"]
        monkeypatch.setattr(engines, "_cuda_driver_present", lambda: True)  # a driver, but no CUDA libraries
    try:
        m = runtime.load(path, providers=["CUDAExecutionProvider"])
    except runtime.RuntimeInputError as exc:
        assert "none of the requested providers (CUDAExecutionProvider) could start" in str(exc)
    else:  # a machine where CUDA really starts
        assert m.providers[0] == "CUDAExecutionProvider"


def test_first_line_skips_openvinos_source_locations():
    from gankit.errors import first_line

    exc = RuntimeError("Exception from src/inference/src/cpp/core.cpp:117:\nException from src/inference/src/dev/"
                       "core_impl.cpp:706:\nDevice with \"NPUX\" name is not registered in the OpenVINO Runtime\n\n")
    assert first_line(exc, with_type=False) == 'Device with "NPUX" name is not registered in the OpenVINO Runtime'


def _mask_file(path: Path, value_16bit: int | None = None) -> Path:
    if value_16bit is None:
        Image.fromarray(HOLE.astype(np.uint8) * 255).save(path)
    else:
        Image.fromarray((HOLE * value_16bit).astype(np.uint16)).save(path)
    return path


def test_cli_inpaint_keeps_16_bit_pngs_16_bit(tiny_runs, cli, tmp_path):
    src = tmp_path / "in16.png"
    Image.fromarray(RAMP16).save(src)
    assert Image.open(src).mode == "I;16"
    r = cli("inpaint", tiny_runs["inpaint"]["onnx"], "--image", src, "--mask", _mask_file(tmp_path / "m.png"),
            "--out", tmp_path / "out.png", "--compare", tmp_path / "cmp.png")
    assert r.code == 0, r.err
    out = Image.open(tmp_path / "out.png")
    assert out.mode == "I;16"
    a = np.asarray(out)
    assert np.array_equal(a[~HOLE], RAMP16[~HOLE])  # was clipped to 0/255 before
    assert Image.open(tmp_path / "cmp.png").size == (28 * 2 + 4, 28)


def test_cli_inpaint_float_tiff_and_la_png(tiny_runs, cli, tmp_path):
    f = RAMP16.astype(np.float32) / 65535
    Image.fromarray(f).save(tmp_path / "f.tif")
    assert Image.open(tmp_path / "f.tif").mode == "F"
    mask = _mask_file(tmp_path / "m.png")
    assert cli("inpaint", tiny_runs["inpaint"]["onnx"], "--image", tmp_path / "f.tif", "--mask", mask,
               "--out", tmp_path / "f.png").code == 0
    out = np.asarray(Image.open(tmp_path / "f.png"))  # 16-bit PNG: the float file's precision kept
    assert out.dtype == np.uint16 and np.abs(out[~HOLE].astype(int) - RAMP16[~HOLE]).max() <= 1
    la = np.dstack([np.full((28, 28), 200, np.uint8), np.tile(np.arange(28, dtype=np.uint8) * 9, (28, 1))])
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert cli("inpaint", tiny_runs["inpaint"]["onnx"], "--image", tmp_path / "la.png", "--mask", mask,
               "--out", tmp_path / "la-out.png").code == 0
    back = Image.open(tmp_path / "la-out.png")
    assert back.mode == "LA" and np.array_equal(np.asarray(back)[..., 1], la[..., 1])


def test_16_bit_masks_are_read_by_their_range(tmp_path):
    from gankit import images
    from gankit.runtime.io import read_mask

    below, above = _mask_file(tmp_path / "below.png", 30000), _mask_file(tmp_path / "above.png", 40000)
    assert not read_mask(below).any()  # 30000 of 65535 is dark; an 8-bit clip made it white
    assert np.array_equal(read_mask(above), HOLE)
    assert np.array_equal(images.read_mask(above), HOLE)  # the shared reader under the runtime's


def test_folder_dataset_reads_every_mode(tmp_path):
    from gankit.data.folder import load_folder

    root = tmp_path / "data"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
    const16 = np.full((12, 12), 128 * 257, np.uint16)  # 16-bit mid-gray
    Image.fromarray(const16).save(root / "a" / "g16.png")
    Image.fromarray(np.full((12, 12), 0.5, np.float32)).save(root / "a" / "f.tif")
    Image.fromarray(np.full((12, 12), 64 * 257, np.int32)).save(root / "a" / "i.tif")
    Image.fromarray(np.full((12, 12), 10, np.uint8)).save(root / "a" / "l.png")
    rgba = np.zeros((12, 12, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:6, :, 3] = 255  # top half opaque red, bottom half transparent (white after compositing)
    Image.fromarray(rgba, "RGBA").save(root / "b" / "rgba.png")
    pal = Image.fromarray(np.full((12, 12, 3), (0, 0, 255), np.uint8)).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    pal.save(root / "b" / "p.png")
    ds = load_folder(str(root), size=12, channels=3)
    x = np.concatenate([ds.x_train, ds.x_test])
    y = np.concatenate([ds.y_train, ds.y_test])
    by_value = {tuple(int(v) for v in im[:, 6, 6]) for im in x[y == 0]}
    assert {(128,) * 3, (64,) * 3, (10,) * 3} <= by_value  # 16-bit, I and F scaled, not clipped to 255 / 0
    assert sum(v == (128,) * 3 for v in by_value) == 1 and len([im for im in x[y == 0] if im[0, 6, 6] == 128]) == 2
    colours = {(tuple(int(v) for v in im[:, 2, 6]), tuple(int(v) for v in im[:, 9, 6])) for im in x[y == 1]}
    assert ((255, 0, 0), (255, 255, 255)) in colours and ((0, 0, 255), (0, 0, 255)) in colours
    gray = load_folder(str(root / "a"), size=12)  # only one-channel modes: a gray dataset
    assert gray.x_train.shape[1] == 1


def test_one_reader_for_cli_runtime_and_datasets():
    """The folder loader, the runtime and the CLI decode through gankit.images, nowhere else."""
    texts = {p: p.read_text() for p in [ROOT / "gankit/data/folder.py", ROOT / "gankit/runtime/io.py",
                                        ROOT / "gankit/runtime/model.py", ROOT / "gankit/runtime/inputs.py",
                                        ROOT / "gankit/cli.py"]}
    for path, text in texts.items():
        assert "Image.open(" not in text, path
    assert "from gankit.images import" in texts[ROOT / "gankit/data/folder.py"]


# == defect 10: two outputs on one path; --n bounded ==========================================
@pytest.fixture
def inpaint_inputs(tmp_path):
    Image.fromarray(np.full((28, 28), 90, np.uint8)).save(tmp_path / "img.png")
    return tmp_path / "img.png", _mask_file(tmp_path / "mask.png")


def test_out_and_compare_on_one_path_are_refused(tiny_runs, cli, tmp_path, inpaint_inputs):
    img, mask = inpaint_inputs
    onnx_path = tiny_runs["inpaint"]["onnx"]
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.png").symlink_to(tmp_path / "a.png")  # dangling until a.png is written
    for compare in ("a.png", "./a.png", "sub/../a.png", str(tmp_path / "a.png"), "link.png"):
        r = cli("inpaint", onnx_path, "--image", img, "--mask", mask, "--out", "a.png", "--compare", compare)
        assert_one_line_error(r, 2)
        assert "same file" in r.err
        assert not (tmp_path / "a.png").exists()
    assert cli("inpaint", onnx_path, "--image", img, "--mask", mask, "--out", "a.png", "--compare", "b.png").code == 0
    restored = (tmp_path / "a.png").read_bytes()
    os.link(tmp_path / "a.png", tmp_path / "hard.png")
    for compare in ("link.png", "hard.png"):
        r = cli("inpaint", onnx_path, "--image", img, "--mask", mask, "--out", "a.png", "--compare", compare, "--overwrite")
        assert_one_line_error(r, 2)
    assert (tmp_path / "a.png").read_bytes() == restored


def test_generate_n_is_bounded(tiny_runs, cli, tmp_path):
    from gankit.cli import _check_grid_size
    from gankit.errors import UsageError

    r = cli("generate", tiny_runs["gan"]["onnx"], "--n", str(10**9), "--out", tmp_path / "g.png")
    assert_one_line_error(r, 2)
    assert "at most" in r.err and not (tmp_path / "g.png").exists()
    largest = int(r.err.split("at most ")[1].split()[0])
    assert 1000 < largest < 10**6
    _check_grid_size(largest, 28, 28, 2)  # the limit it names is exact
    with pytest.raises(UsageError):
        _check_grid_size(largest + 1, 28, 28, 2)
    r = cli("generate", tiny_runs["cgan"]["onnx"], "--n", str(10**9), "--out", tmp_path / "g.png")
    assert_one_line_error(r, 2)  # one row per class: a wider grid, its own exact limit
    per_class = int(r.err.split("at most ")[1].split()[0])
    _check_grid_size(per_class, 28, 28, 2, classes=10)
    with pytest.raises(UsageError):
        _check_grid_size(per_class + 10, 28, 28, 2, classes=10)
    r = cli("generate", tiny_runs["cgan"]["onnx"], "--n", str(10**30), "--label", "3", "--out", tmp_path / "g.png")
    assert_one_line_error(r, 2)
    r = cli("generate", tiny_runs["cgan"]["onnx"], "--label", str(10**30), "--out", tmp_path / "g.png")
    assert_one_line_error(r, 2)
    r = cli("generate", tiny_runs["cgan"]["onnx"], "--seed", "-1", "--out", tmp_path / "g.png")
    assert_one_line_error(r, 2)


# == issue 22: the runtime's layer ============================================================
def _imports(path: Path) -> set[str]:
    """Every module a file imports, at top level or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def test_runtime_layer_imports():
    runtime_files = sorted((ROOT / "gankit" / "runtime").glob("*.py"))
    graph = {}
    for f in runtime_files:
        mods = _imports(f)
        forbidden = [m for m in mods if m.split(".")[0] == "torch"
                     or m.startswith(("gankit.data", "gankit.train", "gankit.export", "gankit.evaluate", "gankit.bench"))]
        assert not forbidden, (f.name, forbidden)
        graph[f.stem] = {m.split(".")[2] for m in mods if m.startswith("gankit.runtime.") and m.count(".") >= 2} - {f.stem}
    assert "model" not in graph["engines"]  # the model imports the engines, never the reverse

    def visit(node, path):  # no cycles among the runtime's modules
        assert node not in path, " -> ".join([*path, node])
        for nxt in graph.get(node, ()):
            visit(nxt, [*path, node])

    for name in graph:
        visit(name, [])
    for f in (ROOT / "gankit" / "data").glob("*.py"):
        assert not [m for m in _imports(f) if m.startswith("gankit.runtime")], f.name
    # images.py is shared by data and runtime: it may lean on the torch-free core helpers only
    assert {m.rsplit(".", 1)[0] if m.count(".") > 1 else m
            for m in _imports(ROOT / "gankit" / "images.py") if m.startswith("gankit")} <= {"gankit.errors", "gankit.fileio"}


def test_runtime_runs_without_importing_torch_or_the_training_layers(tiny_runs):
    code = (
        "import sys, numpy as np, gankit.runtime as gr, gankit.runtime.io\n"
        f"g = gr.load({str(tiny_runs['cgan']['onnx'])!r}); g.generate(3, labels=1, seed=0)\n"
        f"m = gr.load({str(tiny_runs['inpaint']['onnx'])!r}); m.inpaint(np.zeros((9, 9), np.uint8), np.ones((9, 9), bool))\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] == 'torch' or k.startswith(('gankit.data', 'gankit.train',"
        " 'gankit.export', 'gankit.evaluate', 'gankit.bench')))\n"
        "assert not bad, bad\n"
    )
    r = run_subprocess([sys.executable, "-c", code])
    assert r.returncode == 0, r.stderr
