"""The gan plugin keeps the family contract (gankit's conformance kit)."""

import pytest


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_gan_conforms(gankit_check, shape):
    report = gankit_check("gan", shape=shape, overrides={"ngf": 8, "ndf": 8})
    assert report.passed == ["contract", "forward", "train", "export", "runtime"]


@pytest.mark.parametrize("key,value", [("upsample", "pixelshuffle"), ("d_condition", "concat")])
def test_removed_experiment_switches_are_refused_not_ignored(key, value):
    """Old run configs carry the one remaining value and still load; another value is an error."""
    from gankit.errors import UsageError
    from gankit.plugins import get_family

    fam = get_family("cgan")
    config = {**fam.defaults, "channels": 1, "height": 28, "width": 28, "num_classes": 10, key: value}
    build = fam.build_generator if key == "upsample" else fam.build_discriminator
    with pytest.raises(UsageError, match=key):
        build(config)
    build({**config, key: {"upsample": "convtranspose", "d_condition": "projection"}[key]})
