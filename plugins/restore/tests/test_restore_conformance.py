"""The restore plugin keeps the family contract (gankit's conformance kit)."""

import pytest


@pytest.mark.parametrize("shape,degradation", [((1, 28, 28), "sr2"), ((1, 28, 28), "sr4"), ((3, 16, 16), "noise"),
                                               ((3, 16, 16), "real")])
def test_restore_conforms(gankit_check, shape, degradation):
    report = gankit_check("restore", shape=shape, overrides={"features": 8, "blocks": 1, "disc_width": 8,
                                                             "degradation": degradation})
    assert report.passed == ["contract", "forward", "train", "export", "runtime"]
    assert report.parity_max_abs_diff <= 1e-4


def test_psnr_model_conforms_and_skips_the_discriminator(gankit_check):
    report = gankit_check("restore", shape=(1, 28, 28), overrides={"features": 8, "blocks": 1, "disc_width": 8,
                                                                   "gan_weight": 0.0})
    assert "d_loss" not in report.losses and report.losses["l1"] > 0
