"""Mask generators: coverage range, determinism, shapes (property-based)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gankit.data import masks

sizes = st.integers(min_value=8, max_value=64)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 6), h=sizes, w=sizes, seed=st.integers(0, 2**31))
def test_rectangles(n, h, w, seed):
    m = masks.rectangles(n, h, w, seed=seed)
    assert m.shape == (n, 1, h, w) and m.dtype == np.float32
    assert set(np.unique(m)) <= {0.0, 1.0}
    # one or two rectangles, each side a quarter to a half of the image's (rounded to pixels)
    holes = m.sum(axis=(1, 2, 3))
    assert (holes >= max(1, round(h / 4)) * max(1, round(w / 4))).all()
    assert (holes <= 2 * round(h / 2 + 0.5) * round(w / 2 + 0.5)).all()
    assert np.array_equal(m, masks.rectangles(n, h, w, seed=seed))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 6), h=sizes, w=sizes, seed=st.integers(0, 2**31))
def test_strokes(n, h, w, seed):
    m = masks.strokes(n, h, w, seed=seed)
    assert m.shape == (n, 1, h, w)
    assert set(np.unique(m)) <= {0.0, 1.0}
    assert (m.mean(axis=(1, 2, 3)) > 0).all()
    assert (m.mean(axis=(1, 2, 3)) < 1).all()
    assert np.array_equal(m, masks.strokes(n, h, w, seed=seed))


def test_mixed_masks_mix_both_kinds_and_cover_a_sensible_range():
    m = masks.mixed_masks(400, 28, 28, seed=0)
    frac = m.mean(axis=(1, 2, 3))
    assert 0.1 < frac.mean() < 0.4
    assert frac.min() > 0 and frac.max() < 0.9
    assert not np.array_equal(m, masks.mixed_masks(400, 28, 28, seed=1))


def test_fixed_rectangle():
    m = masks.fixed_rectangle(10, 28, 28, side=10, seed=3)
    assert (m.sum(axis=(1, 2, 3)) == 100).all()


def test_read_mask_thresholds_grey_above_127(tmp_path):
    from PIL import Image

    from gankit.runtime.io import read_mask

    a = np.zeros((12, 20), np.uint8)
    a[2:5, 3:9] = 255
    a[0, 0], a[0, 1] = 127, 128  # the threshold: 127 stays known, 128 is missing
    Image.fromarray(a).save(tmp_path / "m.png")
    m = read_mask(tmp_path / "m.png")
    assert m.dtype == bool and m.shape == (12, 20) and m.sum() == 19
    assert not m[0, 0] and m[0, 1]
