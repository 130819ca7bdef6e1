"""The cgan plugin keeps the family contract (gankit's conformance kit)."""

import pytest


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_cgan_conforms(gankit_check, shape):
    report = gankit_check("cgan", shape=shape, num_classes=4, overrides={"ngf": 8, "ndf": 8})
    assert report.passed == ["contract", "forward", "train", "export", "runtime"]
