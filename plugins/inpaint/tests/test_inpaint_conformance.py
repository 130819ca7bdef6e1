"""The inpaint plugin keeps the family contract (gankit's conformance kit)."""

import pytest


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 64, 64)])
def test_inpaint_conforms(gankit_check, shape):
    report = gankit_check("inpaint", shape=shape, overrides={"gen_width": 8, "disc_width": 8})
    assert report.passed == ["contract", "forward", "train", "export", "runtime"]
