"""`gankit restore` (issue 24): one image or a folder, lossless PNG out, depth and alpha kept,
every refusal one line with exit 2 before anything is written."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import GANKIT, assert_one_line_error, run_subprocess
from tests.restore_models import make_resize_restorer
from tests.serve_models import make_generator, make_inpainter


@pytest.fixture(scope="module")
def up2(tmp_path_factory):
    return make_resize_restorer(tmp_path_factory.mktemp("restore-cli") / "up2.onnx", c=3, scale=2)


def _img(h, w, c=3, seed=0):
    a = np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)
    return a[..., 0] if c == 1 else a


def test_one_image_with_compare(cli, up2, tmp_path):
    x = _img(37, 23)
    Image.fromarray(x).save(tmp_path / "in.png")
    r = cli("restore", up2, "--image", tmp_path / "in.png", "--out", tmp_path / "out.png", "--compare",
            tmp_path / "cmp.png", "--tile", "8", "--tile-pad", "2")
    assert r.code == 0, r.err
    assert "46x74, x2" in " ".join(r.out.split())  # rich wraps long paths onto a second line
    out = np.asarray(Image.open(tmp_path / "out.png"))
    np.testing.assert_array_equal(out, x.repeat(2, 0).repeat(2, 1))
    cmp = np.asarray(Image.open(tmp_path / "cmp.png"))
    assert cmp.shape == (74, 2 * 46 + 4, 3)
    np.testing.assert_array_equal(cmp[:, :46], x.repeat(2, 0).repeat(2, 1))  # the input, upscaled nearest
    np.testing.assert_array_equal(cmp[:, -46:], out)


def test_sixteen_bit_stays_sixteen_bit_and_alpha_passes_through(cli, up2, tmp_path):
    g16 = (np.arange(15 * 11, dtype=np.uint32).reshape(15, 11) * 397 % 65536).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    assert cli("restore", up2, "--image", tmp_path / "g16.png", "--out", tmp_path / "g16_out.png").code == 0
    with Image.open(tmp_path / "g16_out.png") as im:
        assert im.mode in ("I;16", "I") and im.size == (22, 30)
        np.testing.assert_array_equal(np.asarray(im).astype(np.uint16), g16.repeat(2, 0).repeat(2, 1))
    rgba = _img(9, 12, c=4, seed=2)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    assert cli("restore", up2, "--image", tmp_path / "a.png", "--out", tmp_path / "a_out.png").code == 0
    with Image.open(tmp_path / "a_out.png") as im:
        assert im.mode == "RGBA" and im.size == (24, 18)
        out = np.asarray(im)
    np.testing.assert_array_equal(out[..., :3], rgba[..., :3].repeat(2, 0).repeat(2, 1))
    assert abs(int(out[..., 3].astype(int).mean()) - int(rgba[..., 3].mean())) <= 3  # resized, not dropped


def _wide_colour_files(folder):
    """Colour files with 16 bits per channel, which Pillow would read at 8: 48-bit and 64-bit
    PNG, 16-bit PPM and TIFF (written by OpenCV), and 16-bit gray+alpha PNG (written by hand:
    neither library writes one). Returns {name: (rgb or gray pixels, alpha or None)}."""
    import struct
    import zlib

    import cv2

    rng = np.random.default_rng(5)
    rgb, rgba, la = (rng.integers(0, 65536, (5, 7, c), dtype=np.uint16) for c in (3, 4, 2))
    cv2.imwrite(str(folder / "rgb48.png"), rgb[..., ::-1])
    cv2.imwrite(str(folder / "rgba64.png"), rgba[..., [2, 1, 0, 3]])
    cv2.imwrite(str(folder / "tif48.tif"), rgb[..., ::-1])
    (folder / "ppm48.ppm").write_bytes(b"P6\n7 5\n65535\n" + rgb.astype(">u2").tobytes())
    chunk = lambda kind, body: struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))  # noqa: E731
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in la)
    (folder / "la32.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 7, 5, 16, 4, 0, 0, 0))
                                      + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return {"rgb48.png": (rgb, None), "rgba64.png": (rgba[..., :3], rgba[..., 3]), "tif48.tif": (rgb, None),
            "ppm48.ppm": (rgb, None), "la32.png": (la[..., :1], la[..., 1])}


def test_sixteen_bit_colour_comes_back_at_sixteen_bits(cli, up2, tmp_path):
    """Read and written by OpenCV (Pillow has no such modes): every 16-bit colour layout, alpha
    included, survives a nearest x2 model bit for bit, one file at a time and as a folder; gray
    with a 16-bit alpha comes back as 16-bit RGBA (PNG has no 16-bit gray+alpha writer here)."""
    import cv2

    src = tmp_path / "in"
    src.mkdir()
    files = _wide_colour_files(src)
    r = cli("restore", up2, "--input-dir", src, "--output-dir", tmp_path / "out")
    assert r.code == 0, r.err
    for name, (pixels, alpha) in files.items():
        for out in (tmp_path / "out" / f"{Path(name).stem}.png", tmp_path / f"one-{name}.png"):
            if out.parent == tmp_path:
                assert cli("restore", up2, "--image", src / name, "--out", out, "--tile", "4").code == 0
            got = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
            assert got.dtype == np.uint16 and got.shape[:2] == (10, 14), (name, got.shape, got.dtype)
            rgb = np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels
            np.testing.assert_array_equal(got[..., 2::-1], rgb.repeat(2, 0).repeat(2, 1), err_msg=name)
            if alpha is None:
                assert got.shape[2] == 3, name
            else:  # resized by bicubic at 16 bits, like an 8-bit alpha
                assert got.shape[2] == 4 and abs(got[..., 3].astype(float).mean() - alpha.mean()) < 2000, name


def _cmyk16_tiff(path, h=4, w=5):
    """An uncompressed 16-bit CMYK TIFF (no library here writes one), which OpenCV cannot read at 16 bits."""
    import struct

    data = (np.arange(h * w * 4, dtype="<u2") * 997).tobytes()
    entries, ifd_at = 10, 8
    bps_at = ifd_at + 2 + entries * 12 + 4
    tag = lambda t, typ, n, v: struct.pack("<HHII", t, typ, n, v)  # noqa: E731
    ifd = [tag(256, 4, 1, w), tag(257, 4, 1, h), tag(258, 3, 4, bps_at), tag(259, 3, 1, 1), tag(262, 3, 1, 5),
           tag(273, 4, 1, bps_at + 8), tag(277, 3, 1, 4), tag(278, 4, 1, h), tag(279, 4, 1, len(data)), tag(284, 3, 1, 1)]
    path.write_bytes(b"II*\x00" + struct.pack("<IH", ifd_at, entries) + b"".join(ifd) + struct.pack("<I", 0)
                     + struct.pack("<4H", 16, 16, 16, 16) + data)
    return path


def test_sixteen_bit_layouts_opencv_reads_differently(cli, up2, tmp_path):
    """A 10-bit PPM (maxval 1023) is scaled to 16 bits as Pillow scales a 10-bit PGM (OpenCV
    returned it unscaled, 64 times too dark); 16-bit CMYK, which OpenCV cannot read at 16 bits,
    is refused before anything in its folder is written, in one line (OpenCV logged three)."""
    ten = np.random.default_rng(6).integers(0, 1024, (5, 7, 3), dtype=np.uint16)
    (tmp_path / "ten.ppm").write_bytes(b"P6\n7 5\n1023\n" + ten.astype(">u2").tobytes())
    assert cli("restore", up2, "--image", tmp_path / "ten.ppm", "--out", tmp_path / "ten.png").code == 0
    import cv2

    got = cv2.imread(str(tmp_path / "ten.png"), cv2.IMREAD_UNCHANGED)[..., ::-1]
    want = np.rint(ten.astype(np.float64) * 65535 / 1023).astype(np.uint16)
    np.testing.assert_array_equal(got, want.repeat(2, 0).repeat(2, 1))
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(_img(8, 8)).save(src / "a.png")
    _cmyk16_tiff(src / "b.tif")
    for args in (("--image", src / "b.tif", "--out", tmp_path / "o.png"), ("--input-dir", src, "--output-dir", tmp_path / "d")):
        r = cli("restore", up2, *args)
        assert_one_line_error(r)
        assert r.err.count("\n") == 1 and "CMYK with 16 bits per channel" in r.err, r.err
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "d").exists()


def test_sixteen_bit_colour_without_opencv_is_refused_not_read_at_eight(cli, up2, tmp_path, monkeypatch):
    import gankit.images

    monkeypatch.setattr(gankit.images, "cv2_or_none", lambda: None)
    src = tmp_path / "in"
    src.mkdir()
    _wide_colour_files(src)
    Image.fromarray(_img(8, 8)).save(src / "a.png")  # sorted first: the folder is refused before it is written
    for args in (("--image", src / "rgb48.png", "--out", tmp_path / "o.png"), ("--input-dir", src, "--output-dir", tmp_path / "d")):
        r = cli("restore", up2, *args)
        assert_one_line_error(r)
        assert "16 bits per channel" in r.err and "opencv-python-headless" in r.err
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "d").exists()


def test_folder_mode_never_overwrites_without_asking(cli, up2, tmp_path):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    images = {"a": _img(10, 14, seed=1), "b": _img(7, 5, c=1, seed=2), "c": _img(12, 9, seed=3)}
    Image.fromarray(images["a"]).save(src / "a.png")
    Image.fromarray(images["b"]).save(src / "b.png")
    Image.fromarray(images["c"]).save(src / "c.jpg", quality=95)
    # 16-bit gray in a folder: the header check that finds it also keeps OpenVINO (auto) in fp32
    g16 = (np.arange(6 * 7, dtype=np.uint32).reshape(6, 7) * 1531 % 65536).astype(np.uint16)
    Image.fromarray(g16).save(src / "d.png")
    (src / "notes.txt").write_text("not an image")
    (src / ".hidden.png").write_bytes(b"junk")
    r = cli("restore", up2, "--input-dir", src, "--output-dir", dst)
    assert r.code == 0, r.err
    assert "wrote 4 restored images" in " ".join(r.out.split())
    assert sorted(p.name for p in dst.iterdir()) == ["a.png", "b.png", "c.png", "d.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(dst / "d.png")).astype(np.uint16), g16.repeat(2, 0).repeat(2, 1))
    np.testing.assert_array_equal(np.asarray(Image.open(dst / "a.png")), images["a"].repeat(2, 0).repeat(2, 1))
    np.testing.assert_array_equal(np.asarray(Image.open(dst / "b.png")), images["b"].repeat(2, 0).repeat(2, 1))
    assert Image.open(dst / "c.png").size == (18, 24)

    # a second run: one existing output is enough to refuse, before any image is written
    (dst / "a.png").unlink()
    stamp = {p.name: p.stat().st_mtime_ns for p in dst.iterdir()}
    r = cli("restore", up2, "--input-dir", src, "--output-dir", dst)
    assert_one_line_error(r)
    assert "already exists" in r.err and "--overwrite" in r.err
    assert {p.name: p.stat().st_mtime_ns for p in dst.iterdir()} == stamp and not (dst / "a.png").exists()
    assert cli("restore", up2, "--input-dir", src, "--output-dir", dst, "--overwrite").code == 0
    assert (dst / "a.png").exists()


def test_a_file_whose_pixels_do_not_read_stops_the_folder_in_one_line(cli, up2, tmp_path):
    """Its header reads, so the check before writing passes it; the message counts what was
    written, and stderr holds that line only (the progress bar left a blank line in logs)."""
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.fromarray(_img(8, 8)).save(src / "a.png")
    Image.fromarray(_img(300, 300, seed=4)).save(tmp_path / "big.png")
    whole = (tmp_path / "big.png").read_bytes()
    (src / "b.png").write_bytes(whole[: len(whole) // 2])
    r = cli("restore", up2, "--input-dir", src, "--output-dir", dst)
    assert_one_line_error(r)
    assert r.err.startswith("error: ") and r.err.count("\n") == 1, repr(r.err)
    assert "1 of 2 written" in r.err and sorted(p.name for p in dst.iterdir()) == ["a.png"]


def test_refusals_are_one_line_exit_2_and_write_nothing(cli, up2, tmp_path):
    gen = make_generator(tmp_path / "gen.onnx", latent=4, classes=0, c=1, h=8, w=8)
    inp = make_inpainter(tmp_path / "inp.onnx")
    img = tmp_path / "in.png"
    Image.fromarray(_img(8, 8)).save(img)
    (tmp_path / "exists.png").write_bytes(b"keep me")
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(_img(8, 8)).save(src / "x.png")
    (tmp_path / "empty").mkdir()
    out = tmp_path / "o.png"
    import cv2

    # a folder with one file that is not an image (sorted after a good one): refused before the
    # good one is written, where it used to stop half way
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.fromarray(_img(8, 8)).save(mixed / "a.png")
    (mixed / "b.png").write_text("not an image")
    # a folder holding a PNG whose header claims 30000x30000 pixels: refused by its header, in one line
    import struct
    import zlib

    huge = tmp_path / "huge"
    huge.mkdir()
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    chunk = lambda kind, body: struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))  # noqa: E731
    (huge / "h.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    cases = [
        ((gen, "--image", img, "--out", out), "is a generate model; gankit restore needs a restore model"),
        ((inp, "--image", img, "--out", out), "is an inpaint model; gankit restore needs a restore model"),
        ((tmp_path / "missing.onnx", "--image", img, "--out", out), "not found"),
        ((up2, "--image", tmp_path / "nope.png", "--out", out), "image not found"),
        ((up2, "--out", out), "either --image"),
        ((up2, "--image", img, "--input-dir", src, "--output-dir", tmp_path / "d"), "either --image"),
        ((up2, "--input-dir", src), "needs --output-dir"),
        ((up2, "--input-dir", tmp_path / "empty", "--output-dir", tmp_path / "d"), "no images"),
        ((up2, "--input-dir", tmp_path / "nodir", "--output-dir", tmp_path / "d"), "not a directory"),
        ((up2, "--input-dir", src, "--output-dir", src, "--overwrite"), "is one of the input images"),
        ((up2, "--input-dir", src, "--output-dir", tmp_path / "d", "--compare", tmp_path / "c.png"), "apply to --image"),
        ((up2, "--image", img, "--out", tmp_path / "exists.png"), "already exists"),
        ((up2, "--image", img, "--out", img, "--overwrite"), "is the input image"),
        ((up2, "--image", img, "--out", tmp_path / "o.jpg"), "should end in .png"),
        ((up2, "--image", img, "--out", out, "--compare", out), "--out and --compare name the same file"),
        ((up2, "--image", img, "--out", out, "--compare", img, "--overwrite"), "--compare"),
        ((up2, "--image", src, "--out", out), "is a folder; use --input-dir"),
        ((up2, "--input-dir", huge, "--output-dir", tmp_path / "d"), "too large to decode safely"),
        ((up2, "--input-dir", mixed, "--output-dir", tmp_path / "d"), "cannot read image"),
        ((up2, "--image", img, "--out", out, "--tile", "-1"), "--tile must be a non-negative integer"),
        ((up2, "--image", img, "--out", out, "--tile-pad", "-3"), "--tile-pad must be"),
        ((up2, "--image", img, "--out", out, "--tile", "x"), "--tile"),
    ]
    for args, needle in cases:
        r = cli("restore", *args)
        assert_one_line_error(r)
        assert needle in r.err, (args, r.err)
    assert not out.exists() and not (tmp_path / "d").exists()
    assert (tmp_path / "exists.png").read_bytes() == b"keep me"


def test_restore_command_runs_without_torch(up2, tmp_path):
    Image.fromarray(_img(6, 6)).save(tmp_path / "in.png")
    code = ("import sys; from gankit.cli import main; "
            "rc = main(['restore', sys.argv[1], '--image', sys.argv[2], '--out', sys.argv[3]]); "
            "assert rc == 0, rc; assert 'torch' not in sys.modules, 'torch imported'")
    r = run_subprocess([sys.executable, "-c", code, str(up2), str(tmp_path / "in.png"), str(tmp_path / "o.png")])
    assert r.returncode == 0, r.stderr
    r = run_subprocess([*GANKIT, "restore", str(up2), "--image", str(tmp_path / "in.png"), "--out", str(tmp_path / "o.png")])
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "already exists" in r.stderr
