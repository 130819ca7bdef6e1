"""gankit's core plugin: the built-in datasets, losses and regularisers, registered through the same
hooks a third-party plugin uses (listed as ``core`` by ``gankit plugins``)."""

from gankit.data.builtin import register_datasets  # noqa: F401 - hook implementation
from gankit.losses import register_losses  # noqa: F401 - hook implementation
from gankit.regularizers import register_regularizers  # noqa: F401 - hook implementation
