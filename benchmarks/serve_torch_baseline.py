"""The server people write first: FastAPI + PyTorch eager, one forward per request.

Usage: python benchmarks/serve_torch_baseline.py FAMILY_OR_RUN_DIR --port P [--fresh] [--workdir DIR]

Kept as the baseline for ``benchmarks/serve_load.py``. It loads the same generator that
``gankit.bench.core.prepare_model`` exports (so both servers run identical weights), and
answers ``POST /v1/models/NAME/generate`` with one PNG per request, exactly the request
shape the load test sends to ``gankit serve``. A sync endpoint: FastAPI runs it in its
thread pool, which is what a first server does.
"""

# no `from __future__ import annotations`: FastAPI must see the real Body type of the local handler

import argparse
import io
import tempfile
from pathlib import Path


def build_app(spec: str, fresh: bool, workdir: Path):
    import numpy as np
    import torch
    from fastapi import FastAPI, Response
    from pydantic import BaseModel
    from PIL import Image

    from gankit.bench.core import prepare_model

    bm = prepare_model(spec, workdir, fresh=fresh)
    net = bm.module.eval()
    latent = int(bm.config.get("latent_dim", 0))
    classes = int(bm.config.get("num_classes", 0) or 0) if bm.family.condition == "label" else 0
    app = FastAPI()

    @app.get("/readyz")
    def readyz():
        return {"status": "ready"}

    class Body(BaseModel):
        seed: int = 0
        labels: int = 0

    @app.post("/v1/models/{name}/generate")
    def generate(name: str, body: Body):
        z = torch.from_numpy(np.random.default_rng(body.seed).standard_normal((1, latent)).astype(np.float32))
        inputs = {"z": z}
        if classes:
            inputs["label"] = torch.tensor([body.labels], dtype=torch.int64)
        with torch.inference_mode():
            y = net(**inputs)
        a = ((y[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
        buf = io.BytesIO()
        Image.fromarray(a[..., 0] if a.shape[2] == 1 else a).save(buf, format="PNG", compress_level=1)
        return Response(buf.getvalue(), media_type="image/png")

    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    import uvicorn

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="torch-baseline-"))
    uvicorn.run(build_app(args.spec, args.fresh, workdir), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
