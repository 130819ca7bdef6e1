"""The command line: help, errors (one line, exit 2, no traceback), fast start."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import GANKIT, assert_one_line_error, run_subprocess


def test_help_lists_commands(cli):
    r = cli("--help")
    assert r.code == 0
    for cmd in ("train", "export", "generate", "inpaint", "restore", "evaluate", "plugins"):
        assert cmd in r.out


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--plugin", "no-such-plugin"],
        ["train", "--plugin", "gan", "--steps", "0"],
        ["train", "--plugin", "gan", "--steps", "-5"],
        ["train", "--plugin", "gan", "--steps", "many"],
        ["train", "--plugin", "gan", "--batch-size", "0"],
        ["train", "--plugin", "gan", "--data", "folder:/definitely/not/here"],
        ["train", "--plugin", "gan", "--data", "imagenet"],
        ["train", "--plugin", "gan", "--loss", "nope"],
        ["train", "--plugin", "gan", "--device", "tpu"],
        ["train", "--plugin", "gan", "--set", "novalue"],
        ["train"],
        ["export", "/no/such/run"],
        ["generate", "/no/such/model.onnx"],
        ["restore", "/no/such/model.onnx", "--image", "/no/such/image.png"],
        ["evaluate", "/no/such/thing"],
        ["frobnicate"],
    ],
)
def test_bad_input_is_one_line_exit_2(cli, args):
    assert_one_line_error(cli(*args), 2)


def test_train_refuses_what_it_cannot_build_by_name(cli, tmp_path):
    r = cli("train", "--plugin", "gan", "--image-size", "64", "--steps", "1", "--out", tmp_path / "a")
    assert_one_line_error(r)  # mnist5k's digits do not resize: it used to train at 28x28 anyway
    assert "image_size 64: dataset mnist5k is 28x28" in r.err and not (tmp_path / "a").exists()
    r = cli("train", "--plugin", "stylegan", "--set", "base_convs=0", "--steps", "1", "--out", tmp_path / "b")
    assert_one_line_error(r)  # was built with one convolution while config.json said 0
    assert "base_convs" in r.err and not (tmp_path / "b").exists()


def test_values_that_cannot_work_are_refused_by_name(cli, tiny_runs, tmp_path):
    """Each of these used to be an internal error, a silent default, or an option ignored."""
    cgan, inpaint = tiny_runs["cgan"]["onnx"], tiny_runs["inpaint"]["onnx"]
    (tmp_path / "file.png").write_bytes(b"mine")
    gif = tmp_path / "w.gif"
    cases = [
        (("evaluate", cgan, "--seed", "-1"), "--seed must be a non-negative integer"),
        (("interpolate", cgan, "--seed", "-1", "--out", gif), "--seed must be a non-negative integer"),
        (("interpolate", cgan, "--fps", "60", "--out", gif), "from 0.01 to 50"),
        (("interpolate", cgan, "--fps", "0.001", "--out", gif), "from 0.01 to 50"),
        (("interpolate", cgan, "--frames", "100000", "--out", gif), "--frames must be at most"),
        (("interpolate", inpaint, "--out", gif), "is an inpaint model"),
        (("mix", cgan, "--seed", "-2", "--out", tmp_path / "m.png"), "--seed must be a non-negative integer"),
        (("generate", tmp_path, "--out", tmp_path / "g.png"), "is a folder, not a model file"),
        (("train", "--plugin", "cgan", "--steps", "1", "--out", tmp_path / "file.png"), "is a file, not a run directory"),
        (("train", "--plugin", "cgan", "--steps", "1", "--force", "--out", tmp_path / "r"), "--force applies to --resume"),
        (("train", "--plugin", "cgan", "--force", "--nproc", "2", "--out", tmp_path / "r"), "--force applies to --resume"),
        (("train", "--plugin", "cgan", "--set", "steps=null", "--out", tmp_path / "r"), "steps: null is not a value"),
    ]
    for args, needle in cases:
        r = cli(*args)
        assert_one_line_error(r, 2)
        assert needle in r.err, (args, r.err)
    assert (tmp_path / "file.png").read_bytes() == b"mine" and not (tmp_path / "r").exists() and not gif.exists()


def test_train_refuses_existing_run_dir(cli, tmp_path):
    out = tmp_path / "runs" / "x"
    out.mkdir(parents=True)
    (out / "keep.txt").write_text("precious")
    assert_one_line_error(cli("train", "--plugin", "gan", "--out", out, "--steps", "1"), 2)
    assert (out / "keep.txt").read_text() == "precious"


def test_help_and_plugins_do_not_import_torch():
    code = (
        "import sys; from gankit.cli import main; "
        "rc = main(['--help']); rc2 = main(['plugins']); "
        "assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    )
    r = run_subprocess([sys.executable, "-c", code])
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_importtime_of_help_has_no_torch():
    r = run_subprocess([sys.executable, "-X", "importtime", "-m", "gankit.cli", "--help"])
    assert r.returncode == 0
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if "|" in line}
    assert "torch" not in imported and "onnxruntime" not in imported


def test_runtime_import_does_not_import_torch():
    r = run_subprocess([sys.executable, "-c", "import gankit.runtime, sys; assert 'torch' not in sys.modules"])
    assert r.returncode == 0, r.stderr


def test_version(cli):
    r = cli("--version")
    assert r.code == 0 and r.out.startswith("gankit ")


def test_console_script_exit_code():
    r = run_subprocess(GANKIT + ["train", "--plugin", "nope"])
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
