"""``gankit serve``: exported models over HTTP (FastAPI + uvicorn), micro-batched, with a page at ``/``.

    >>> from gankit.serve import create_app
    >>> app = create_app(["exported/cgan-001.onnx"])      # any ASGI server can run it

Built on the torch-free :mod:`gankit.runtime`; importing this package never imports torch.
"""

from gankit.serve.app import create_app

__all__ = ["create_app"]
