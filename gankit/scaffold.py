"""``gankit plugin new NAME``: write a complete, installable third-party plugin package.

The package it writes is what docs/plugins.md walks through: a pyproject with the
``gankit`` entry point, a small but real family (conv generator and discriminator that
train, export and run at any square size divisible by 4), and a test that runs gankit's
conformance kit. ``pip install -e gankit-NAME`` and it shows up in ``gankit plugins``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from string import Template

from gankit.errors import UsageError

NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")

PYPROJECT = Template('''\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "gankit-$name"
version = "0.1.0"
description = "gankit plugin: $name"
requires-python = ">=3.10"
dependencies = ["gankit[train]>=$gankit_version"]  # a family trains: it needs the training extra

[project.optional-dependencies]
test = ["pytest>=8"]

# This line is what makes gankit find the plugin: group "gankit", name = family name,
# value = the module holding the @hookimpl functions.
[project.entry-points.gankit]
$name = "$module"

[tool.setuptools.packages.find]
include = ["$module*"]
''')

INIT = Template('''\
"""gankit plugin ``$name``: registers the ``$name`` model family.

torch is imported only inside the build methods, so listing plugins stays instant.
"""

from __future__ import annotations

from gankit import ModelFamily, hookimpl

__version__ = "0.1.0"

DEFAULTS = {
    "data": "mnist5k",     # default dataset: mnist5k, photos or folder:PATH
    "latent_dim": 64,      # length of z (the generator's input "z")
    "features": 32,        # channels of the widest layer (channels/height/width are the data's)
    "steps": 500,
    "batch_size": 64,
    "lr_g": 2e-4,
    "lr_d": 2e-4,
    "beta1": 0.5,
    "loss": "bce",         # any loss gankit knows: bce, minimax, hinge, lsgan, wgan-gp
    "ema": 0.999,          # the EMA generator is what is sampled and exported
}


class ${cls}Family(ModelFamily):
    """Unconditional image generation: z -> image in [-1, 1]."""

    name = "$name"
    task = "generate"
    condition = "none"
    description = "$name: a third-party gankit family"
    defaults = DEFAULTS

    def build_generator(self, config):
        from $module.model import Generator

        return Generator(int(config["latent_dim"]), int(config["channels"]), int(config["height"]), int(config["features"]))

    def build_discriminator(self, config):
        from $module.model import Discriminator

        return Discriminator(int(config["channels"]), int(config["height"]), int(config["features"]))


def family() -> ${cls}Family:
    return ${cls}Family()


@hookimpl
def register_families(register):
    register(family())
''')

MODEL = Template('''\
"""The networks of ``$name``. Plain torch modules; gankit handles training and export.

Rules the exporter and runtime rely on (checked by gankit.testing.check_family):
- the generator's forward takes its inputs by name (``z``; ``label`` for label-conditioned
  families; ``image`` and ``mask`` for inpainting) and returns images in [-1, 1];
- the discriminator returns one logit per image (or per patch) with the batch first;
- only ONNX-exportable ops (no data-dependent Python control flow on tensor values).
"""

from __future__ import annotations

import torch
from torch import nn


class Generator(nn.Module):
    def __init__(self, latent_dim: int, channels: int, size: int, width: int = 32):
        super().__init__()
        if size % 4:
            raise ValueError(f"image size {size} is not divisible by 4")
        self.base, self.width = size // 4, width
        self.project = nn.Sequential(nn.Linear(latent_dim, width * 2 * self.base * self.base), nn.ReLU(True))
        self.body = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(width * 2, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(True),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(True),
            nn.Conv2d(width, channels, 3, padding=1), nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.project(z).view(z.shape[0], self.width * 2, self.base, self.base)
        return self.body(x)


class Discriminator(nn.Module):
    def __init__(self, channels: int, size: int, width: int = 32):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(width, width * 2, 4, 2, 1), nn.LeakyReLU(0.2, True),
        )
        self.head = nn.Linear(width * 2 * (size // 4) * (size // 4), 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(image).flatten(1)).squeeze(1)
''')

TEST = Template('''\
"""The $name family keeps gankit's plugin contract (the conformance kit)."""

import pytest

from gankit.testing import check_family
from $module import family


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_family_conforms(tmp_path, shape):
    # builds G and D, trains two steps on synthetic data, exports to ONNX (parity and
    # metadata checked) and runs the file through gankit.runtime
    report = check_family(family(), shape=shape, workdir=tmp_path, overrides={"features": 8})
    assert report.passed == ["contract", "forward", "train", "export", "runtime"]


def test_registered_through_the_entry_point(gankit_check):
    # after `pip install -e .` gankit finds the family by name, like a built-in
    gankit_check("$name", overrides={"features": 8})
''')

README = Template('''\
# gankit-$name

A [gankit](https://github.com/) plugin providing the `$name` model family.

```bash
pip install -e ".[test]"      # gankit finds it through the "gankit" entry point
gankit plugins                # $name is listed as loaded
pytest -q                     # gankit's conformance kit: build, train, export, run
gankit train --plugin $name   # train on mnist5k, export to exported/, print next steps
```

Edit `$module/model.py` (the networks) and `$module/__init__.py` (defaults, how the
family is built); the guide is gankit's `docs/plugins.md`.
''')


def module_name(name: str) -> str:
    return "gankit_" + name.replace("-", "_")


def new_plugin(name: str, directory: str | os.PathLike = ".") -> Path:
    """Write ``<directory>/gankit-<name>/`` and return its path; nothing is overwritten."""
    from gankit import __version__

    if not NAME_RE.match(name or ""):
        raise UsageError(f"plugin name {name!r} must be lowercase letters, digits, '-' or '_', starting with a letter")
    from gankit.plugins import get_manager

    fams = get_manager().families
    if name in fams:
        raise UsageError(f"a family named {name!r} is already provided by plugin {fams[name][1]!r}; pick another name")
    parent = Path(directory)
    if parent.exists() and not parent.is_dir():
        raise UsageError(f"--dir {parent} is not a directory")
    target = parent / f"gankit-{name}"
    if target.exists():
        raise UsageError(f"{target} already exists; remove it or choose another --dir")
    module = module_name(name)
    cls = "".join(part.capitalize() for part in re.split(r"[-_]", name))
    values = {"name": name, "module": module, "cls": cls, "gankit_version": __version__}
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"{module}/__init__.py": INIT,
        f"{module}/model.py": MODEL,
        "tests/test_conformance.py": TEST,
    }
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".gankit-{name}-", dir=parent))
    except OSError as exc:
        raise UsageError(f"cannot write to {parent}: {exc.strerror or exc}") from None
    try:
        for rel, template in files.items():
            path = staging / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(template.substitute(values))
        os.rename(staging, target)  # appears whole or not at all
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target
