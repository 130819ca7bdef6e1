"""The inpaint plugin keeps the family contract (gankit's conformance kit)."""

import pytest


@pytest.mark.parametrize("shape,coarse_fill", [((1, 28, 28), "none"), ((3, 64, 64), "none"), ((3, 20, 20), "biharmonic")])
def test_inpaint_conforms(gankit_check, shape, coarse_fill):
    # the classical coarse fills (pooling, resizing, fixed convolutions) must export and run too;
    # one biharmonic case, in colour and with odd-sized pyramid levels (20, 10, 5, 3) where
    # pooling and resizing can go wrong; two smoothed levels, not 28x28's three: the export of
    # the unrolled steps took 39 s at 28x28, 16 s here
    report = gankit_check("inpaint", shape=shape, overrides={"gen_width": 8, "disc_width": 8, "coarse_fill": coarse_fill})
    assert report.passed == ["contract", "forward", "train", "export", "runtime"]
