"""The gan plugin keeps the family contract (gankit's conformance kit)."""

import pytest


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_gan_conforms(gankit_check, shape):
    report = gankit_check("gan", shape=shape, overrides={"ngf": 8, "ndf": 8})
    assert report.passed == ["contract", "forward", "train", "export", "runtime"]


def test_pixelshuffle_upsampling_conforms(gankit_check):
    gankit_check("gan", overrides={"ngf": 8, "ndf": 8, "upsample": "pixelshuffle"})
