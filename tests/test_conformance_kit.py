"""The conformance kit catches broken families and names the stage."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gankit.family import ModelFamily
from gankit.testing import ConformanceError, check_family


class _G(nn.Module):
    def __init__(self, size, squash=True):
        super().__init__()
        self.size, self.squash = size, squash
        self.fc = nn.Linear(8, size * size)

    def forward(self, z):
        x = self.fc(z).view(z.shape[0], 1, self.size, self.size) * 10
        return torch.tanh(x) if self.squash else x


class _D(nn.Module):
    def __init__(self, size):
        super().__init__()
        self.fc = nn.Linear(size * size, 1)

    def forward(self, image):
        return self.fc(image.flatten(1)).squeeze(1)


class _Family(ModelFamily):
    squash = True

    def build_generator(self, config):
        return _G(int(config["height"]), self.squash)

    def build_discriminator(self, config):
        return _D(int(config["height"]))


def _family(**kw):
    defaults = {"latent_dim": 8, "steps": 2, "batch_size": 4, "ema": 0.0, **kw.pop("defaults", {})}
    return _Family(name="kit-test", defaults=defaults, **kw)


def test_a_minimal_correct_family_passes(tmp_path):
    report = check_family(_family(), shape=(1, 16, 16), workdir=tmp_path)
    assert report.passed == ["contract", "forward", "train", "export", "runtime"]
    assert (tmp_path / "kit-test.onnx").is_file()


def test_unbounded_generator_output_is_caught(tmp_path):
    fam = _family()
    fam.squash = False
    with pytest.raises(ConformanceError, match=r"^\[generator\].*\[-1, 1\]"):
        check_family(fam, shape=(1, 16, 16), workdir=tmp_path)


def test_reserved_config_keys_are_caught(tmp_path):
    with pytest.raises(ConformanceError, match=r"^\[config\].*reserved.*width"):
        check_family(_family(defaults={"width": 32}), shape=(1, 16, 16), workdir=tmp_path)


def test_inconsistent_task_and_condition_are_caught(tmp_path):
    with pytest.raises(ConformanceError, match=r"^\[contract\]"):
        check_family(_family(task="inpaint", condition="none"), shape=(1, 16, 16), workdir=tmp_path)


def test_missing_latent_dim_is_caught(tmp_path):
    fam = _Family(name="kit-test", defaults={"steps": 2, "batch_size": 4})
    with pytest.raises(ConformanceError, match=r"^\[config\].*latent_dim"):
        check_family(fam, shape=(1, 16, 16), workdir=tmp_path)


def test_a_non_module_is_caught(tmp_path):
    class NotModule(_Family):
        def build_generator(self, config):
            return lambda z: z

    with pytest.raises(ConformanceError, match=r"^\[build\]"):
        check_family(NotModule(name="kit-test", defaults={"latent_dim": 8}), shape=(1, 16, 16), workdir=tmp_path)
