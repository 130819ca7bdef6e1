"""The FastAPI app behind ``gankit serve``: :func:`create_app`.

Models are loaded when the app is created (a bad file fails there, before any port is
opened); they are warmed up in a background thread once the server starts, and ``/readyz``
answers 200 only after that. Inference never runs on the event loop: generate requests go
straight to the model's :class:`~gankit.serve.batcher.Batcher`; inpainting and restore
requests are decoded and tiled on a worker thread whose tile batches go through the same
batcher, so concurrent requests share runtime calls either way.

Over 400 lines on purpose: the endpoints share the app's state, admission and error mapping;
the HTTP plumbing is in serve/http.py, micro-batching in serve/batcher.py, metrics in serve/metrics.py.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from gankit.errors import UsageError
from gankit.runtime.errors import RuntimeInputError
from gankit.serve.batcher import LINGER, MAX_WAIT_MS, Admission, Batcher, QueueFull
from gankit.serve.metrics import Metrics
from gankit.serve.http import (  # noqa: F401 - the app's HTTP plumbing
    FORMATS, ServeError, _ClientGone, BodyTooLarge, _Guard, _decode_image, _error, _negotiate, _npy, _png, _read_form, _send_error, _validation_message,
)

STATIC = Path(__file__).parent / "static"
MAX_N = 256  # images per generate request, the runtime's own batch cap
INLINE_BYTES = 64 * 1024  # answers up to this many pixel bytes are PNG-encoded on the event loop
TASKS = ("generate", "inpaint", "restore")


class GenerateRequest(BaseModel):
    """Body of ``POST /v1/models/{name}/generate`` (every field optional)."""

    model_config = ConfigDict(extra="forbid", strict=True)  # JSON true is not n=1, "3" is not 3
    n: int = Field(1, ge=1, le=MAX_N, description="How many images.")
    labels: int | str | list[int | str] | None = Field(
        None, description="One class (index or name) for all images, a list of n, or null to cycle through the classes.")
    seed: int | None = Field(None, ge=0, lt=2**63, description="Seed for the noise; null draws one (returned in X-Seed).")
    truncation: float | None = Field(None, ge=0.0, le=2.0, allow_inf_nan=False, description="Truncation psi, for models with a truncation input.")


class ServedModel:
    """One loaded model with its batcher, queue bound and description."""

    def __init__(self, name: str, model: Any, *, max_batch: int, max_wait_ms: float, queue: int, metrics: Metrics,
                 linger: str = "adaptive"):
        self.name, self.model, self.task = name, model, model.task
        self.max_batch = max_batch
        self.truncation_rank: int | None = None
        if self.task == "generate" and "truncation" in getattr(model, "input_names", []):
            self.truncation_rank = _input_rank(model, "truncation")
        m = metrics
        self.admission = Admission(queue, on_change=lambda d: m.queue_depth.labels(name).set(d))
        m.queue_depth.labels(name).set(0)

        def on_batch(rows: int, requests: int) -> None:
            m.batch_rows.labels(name).observe(rows)
            m.batch_requests.labels(name).observe(requests)

        self.batcher = Batcher(name, self._run, max_batch=max_batch, max_wait_ms=max_wait_ms, linger=linger, on_batch=on_batch,
                               on_cancel=lambda: m.cancelled.labels(name).inc())
        self.shadow = None
        if self.task == "inpaint":
            # The runtime's own tiling and channel handling, with every tile batch sent
            # through the batcher: a shallow copy whose run_raw_inpaint is the batched one.
            self.shadow = copy.copy(model)
            self.shadow.run_raw_inpaint = lambda images, masks, batch_size=None: self.batcher.run_sync(
                {"image": np.asarray(images, np.float32), "mask": np.asarray(masks, np.float32)})
        elif self.task == "restore" and hasattr(model, "_run_restore"):
            # the same for restore: the runtime's tiling, each tile batch through the batcher. Only
            # windows of one shape can share a call, so the window shape is the batching key
            # (with the default 256-pixel tiles every image of 288 pixels or more gives the same).
            self.shadow = copy.copy(model)
            self.shadow._run_restore = lambda batch: self.batcher.run_sync(
                {"image": np.asarray(batch, np.float32)}, key=tuple(batch.shape[2:]))

    def _run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        if self.task == "inpaint":
            return self.model.run_raw_inpaint(feed["image"], feed["mask"], batch_size=self.max_batch)
        if self.task == "restore":
            return self.model.run_raw_restore(feed["image"], batch_size=self.max_batch)
        if self.truncation_rank is None:
            return self.model.run_raw(feed["z"], feed.get("label"), batch_size=self.max_batch)
        outs = []  # a model with a truncation input: feed it in the rank the graph declares
        for i in range(0, len(feed["z"]), self.max_batch):
            part = {k: v[i : i + self.max_batch] for k, v in feed.items()}
            t = part["truncation"].astype(np.float32)
            part["truncation"] = t[0] if self.truncation_rank == 0 else t.reshape((-1,) + (1,) * (self.truncation_rank - 1))
            outs.append(self.model.engine.run(part))
        return np.concatenate(outs)

    def describe(self) -> dict[str, Any]:
        m = self.model
        info: dict[str, Any] = {
            "name": self.name, "task": self.task, "plugin": getattr(m, "plugin", ""),
            "file": Path(getattr(m, "path", self.name)).name,
            "channels": m.channels, "height": m.height, "width": m.width,
            "latent_dim": getattr(m, "latent_dim", 0), "num_classes": getattr(m, "num_classes", 0),
            "class_names": list(getattr(m, "class_names", [])),
            "truncation": self.truncation_rank is not None,
            "inputs": _io_description(m),
            "metadata": dict(getattr(m, "metadata", {})),
            "endpoint": f"/v1/models/{self.name}/{self.task}",
        }
        if self.task == "restore":
            info["scale"] = getattr(m, "scale", 1)
            info["degradation"] = getattr(m, "degradation", "")
        return info

    def warm(self) -> None:
        """One real call through the batcher, so the first user does not pay for lazy init."""
        with self.batcher.warming():  # runs at once: no client waits on it to fill a batch
            self._warm()

    def _warm(self) -> None:
        if self.task == "generate":
            z = np.zeros((1, self.model.latent_dim), np.float32)
            feed = {"z": z}
            if self.model.num_classes:
                feed["label"] = np.zeros(1, np.int64)
            if self.truncation_rank is not None:
                feed["truncation"] = np.ones(1, np.float32)
            self.batcher.run_sync(feed, key=1.0 if self.truncation_rank == 0 else None)
        elif self.task == "inpaint":
            img = np.zeros((self.model.height, self.model.width, self.model.channels), np.uint8)
            mask = np.zeros(img.shape[:2], bool)
            mask[: max(1, img.shape[0] // 2)] = True
            self.shadow.inpaint(img, mask)
        elif self.shadow is not None:  # restore: one tile through the batcher
            self.shadow.restore(np.zeros((self.model.height, self.model.width, self.model.channels), np.uint8))
        elif hasattr(self.model, "restore"):  # an embedding app's own restore object
            self.model.restore(np.zeros((self.model.height or 16, self.model.width or 16, self.model.channels), np.uint8))


def _input_rank(model: Any, name: str) -> int:
    session = getattr(model, "session", None)
    if session is None:
        return 1
    for i in session.get_inputs():
        if i.name == name:
            return len(i.shape)
    return 1


def _io_description(model: Any) -> list[dict[str, Any]]:
    session = getattr(model, "session", None)
    if session is None:
        return [{"name": n} for n in getattr(model, "input_names", [])]
    return [{"name": i.name, "shape": [d if isinstance(d, int) else str(d) for d in i.shape], "type": i.type}
            for i in session.get_inputs()]


def _load(paths: Sequence[Any]) -> list[tuple[str, Any]]:
    from gankit import runtime

    if not paths:
        raise UsageError("no models given: pass one or more exported .onnx files")
    loaded: dict[str, Any] = {}
    for p in paths:
        if isinstance(p, (str, Path)):
            path = Path(p)
            if path.is_dir():
                raise UsageError(f"{path} is a directory; pass exported .onnx files")
            # no intra-op spinning: between sporadic batches, spinning threads would take the
            # CPU that the event loop needs for parsing and answering requests
            model = runtime.load(path, session_config={"session.intra_op.allow_spinning": "0"})
            name = path.stem
        else:  # an already loaded model object (embedding apps, tests)
            model = p
            name = Path(getattr(p, "path", getattr(p, "name", "model"))).stem
        if model.task not in TASKS:
            raise UsageError(f"{name}: task {model.task!r} cannot be served (tasks: {', '.join(TASKS)})")
        if name in loaded:
            raise UsageError(f"two models are named {name!r}; model names come from the file names and must differ")
        loaded[name] = model
    return list(loaded.items())


class _State:
    def __init__(self, models, *, max_batch, max_wait_ms, queue, max_body, max_pixels, linger="adaptive"):
        self.metrics = Metrics()
        self.max_body, self.max_pixels = max_body, max_pixels
        self.models = {name: ServedModel(name, model, max_batch=max_batch, max_wait_ms=max_wait_ms, queue=queue, linger=linger,
                                         metrics=self.metrics) for name, model in models}
        # decoding + tiling of inpaint/restore requests; their tile batches still merge in the batcher
        self.pool = ThreadPoolExecutor(max_workers=max(2, min(64, queue)), thread_name_prefix="gankit-serve")
        self.ready = False
        self.warm_error: str | None = None

    def model(self, name: str) -> ServedModel:
        sm = self.models.get(name)
        if sm is None:
            raise ServeError(404, f"no model named {name!r}; models: {', '.join(sorted(self.models))}")
        return sm

    def warm_all(self) -> None:
        try:
            for sm in self.models.values():
                sm.warm()
        except Exception as exc:  # noqa: BLE001 - reported by /readyz, the server stays up
            self.warm_error = f"warm-up failed: {type(exc).__name__}: {exc}"
            return
        self.ready = True
        self.metrics.ready.set(1)

    def close(self) -> None:
        for sm in self.models.values():
            sm.batcher.stop()
        self.pool.shutdown(wait=False, cancel_futures=True)


async def _until_disconnect(request: Request) -> None:
    # After the body is read, the next ASGI message is http.disconnect, whenever it comes.
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _answer(request: Request, cfut) -> Any:
    """Await a concurrent future; if the client leaves first, cancel it (a queued item is then skipped)."""
    fut = asyncio.wrap_future(cfut)
    gone = asyncio.ensure_future(_until_disconnect(request))
    try:
        done, _ = await asyncio.wait({fut, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not gone.done():
            gone.cancel()
    if fut in done:
        return fut.result()
    fut.cancel()
    raise _ClientGone


def _admit(state: _State, sm: ServedModel) -> None:
    try:
        sm.admission.enter()
    except QueueFull:
        state.metrics.rejected.labels(sm.name).inc()
        raise ServeError(503, f"model {sm.name!r} is busy: its queue of {sm.admission.limit} requests is full",
                         {"Retry-After": "1"}) from None


def _require_task(sm: ServedModel, task: str) -> None:
    if sm.task != task:
        raise ServeError(400, f"model {sm.name!r} does {sm.task}, not {task}; use /v1/models/{sm.name}/{sm.task}")


async def _image_job(state, sm, request, job):
    """Run ``job()`` (one image in, one image out) on the pool after admission; answer a PNG.

    A client that left while queued costs nothing more (499); a runtime refusal is a 422."""
    _admit(state, sm)
    try:
        cfut = state.pool.submit(lambda: _png(_hwc(job())))
        png = await _answer(request, cfut)
    except _ClientGone:
        return Response(status_code=499)
    except RuntimeInputError as exc:
        raise ServeError(422, str(exc)) from None
    finally:
        sm.admission.leave()
    return Response(png, media_type="image/png")


def create_app(paths: Sequence[Any], max_batch: int = 32, max_wait_ms: float = 5, queue: int = 256, *,
               max_body_bytes: int = 32 * 1024 * 1024, max_pixels: int = 4096 * 4096,
               linger: str = "adaptive") -> FastAPI:
    """The serving app for exported ``.onnx`` files (or already loaded runtime models).

    ``max_batch``: most rows per runtime call; ``max_wait_ms``: how long the first request
    of a batch may wait for company (``linger="adaptive"``: no longer than the model's last
    run took; ``"fixed"``: the whole window); ``queue``: requests per model accepted at once (more get
    503 + Retry-After). Raises :class:`gankit.UsageError` for a bad file or option.
    """
    for opt, value, low in (("max_batch", max_batch, 1), ("queue", queue, 1), ("max_body_bytes", max_body_bytes, 1),
                            ("max_pixels", max_pixels, 1)):
        if isinstance(value, bool) or int(value) != value or value < low:
            raise UsageError(f"{opt} must be an integer >= {low}, got {value!r}")
    if not (0 <= max_wait_ms <= MAX_WAIT_MS):
        raise UsageError(f"max_wait_ms must be from 0 to {MAX_WAIT_MS:g}, got {max_wait_ms!r}")
    if linger not in LINGER:
        raise UsageError(f"linger must be one of {', '.join(LINGER)}, got {linger!r}")
    state = _State(_load(paths), max_batch=int(max_batch), max_wait_ms=float(max_wait_ms), queue=int(queue),
                   max_body=int(max_body_bytes), max_pixels=int(max_pixels), linger=linger)

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_app):
        # Warm up in the background: /healthz answers at once, /readyz once this is done.
        threading.Thread(target=state.warm_all, name="gankit-serve-warmup", daemon=True).start()
        yield
        state.close()

    app = FastAPI(title="gankit serve", version=_version(), lifespan=lifespan,
                  description="Exported gankit models over HTTP, micro-batched. The page is at `/`.")
    app.state.gankit = state

    @app.exception_handler(ServeError)
    async def _serve_error(_req, exc: ServeError):
        return _error(exc.status, exc.message, exc.headers)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(_req, _exc):
        return _error(413, f"request body over the limit of {state.max_body} bytes")

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req, exc: RequestValidationError):
        return _error(422, _validation_message(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req, exc: StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(ClientDisconnect)
    async def _gone(_req, _exc):
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def _internal(_req, exc: Exception):
        return _error(500, f"internal error ({type(exc).__name__})")

    # -- service endpoints ---------------------------------------------------------------
    @app.get("/healthz", tags=["service"], summary="The process is up")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", tags=["service"], summary="Every model is loaded and warmed up")
    async def readyz():
        if state.ready:
            return {"status": "ready", "models": sorted(state.models)}
        msg = state.warm_error or "warming up"
        return _error(503, msg, {"Retry-After": "1"})

    @app.get("/metrics", tags=["service"], summary="Prometheus metrics")
    async def metrics():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models", tags=["models"], summary="Every served model: task, shapes, classes, inputs")
    async def list_models():
        return {"models": [sm.describe() for sm in state.models.values()]}

    @app.get("/v1/models/{name}", tags=["models"], summary="One model's description")
    async def get_model(name: str):
        return state.model(name).describe()

    # -- generate ------------------------------------------------------------------------
    @app.post("/v1/models/{name}/generate", tags=["models"], summary="Generate images",
              openapi_extra={"requestBody": {"required": False, "content": {"application/json": {
                  "schema": GenerateRequest.model_json_schema()}}},
                  "responses": {"200": {"description": "One PNG (a grid when n > 1), a JSON list of base64 PNGs, "
                                        "or uint8 [n, H, W, C] as .npy, chosen by Accept",
                                        "content": {"image/png": {}, "application/json": {}, "application/x-npy": {}}}}})
    async def generate(name: str, request: Request):
        sm = state.model(name)
        _require_task(sm, "generate")
        fmt = _negotiate(request.headers.get("accept"), ["image/png", "application/json", "application/x-npy",
                                                         "application/octet-stream"])
        body = await request.body()
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if body.strip() and ctype != "application/json":
            raise ServeError(415, f"send the parameters as application/json, got {ctype or 'no content type'!r}")
        try:
            raw = json.loads(body) if body.strip() else {}
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ServeError(400, f"body is not valid JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise ServeError(422, "body must be a JSON object like {\"n\": 4, \"labels\": 3, \"seed\": 0}")
        try:
            req = GenerateRequest.model_validate(raw)
        except ValidationError as exc:
            raise ServeError(422, _validation_message(exc.errors())) from None
        model = sm.model
        if req.truncation is not None and sm.truncation_rank is None:
            raise ServeError(422, f"model {name!r} has no truncation input")
        try:
            labels = model._labels(req.n, req.labels)
        except RuntimeInputError as exc:
            raise ServeError(422, str(exc)) from None
        seed = secrets.randbits(63) if req.seed is None else req.seed
        # the same noise as gankit.runtime's generate(n, labels, seed): served images match it exactly
        z = np.random.default_rng(seed).standard_normal((req.n, model.latent_dim)).astype(np.float32)
        feed = {"z": z}
        if labels is not None:
            feed["label"] = labels
        key = None
        if sm.truncation_rank is not None:
            psi = 1.0 if req.truncation is None else float(req.truncation)
            feed["truncation"] = np.full(req.n, psi, np.float32)
            key = psi if sm.truncation_rank == 0 else None
        _admit(state, sm)
        try:
            out = await _answer(request, sm.batcher.submit(feed, key))
        except _ClientGone:
            return Response(status_code=499)
        finally:
            sm.admission.leave()
        images = np.clip(np.rint((out + 1.0) * 127.5), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
        headers = {"X-Seed": str(seed)}
        if labels is not None:
            headers["X-Labels"] = ",".join(str(int(x)) for x in labels)
        # small answers are encoded right here: a hop to a worker thread costs more than the encoding
        encode = _inline if images.nbytes <= INLINE_BYTES else asyncio.to_thread
        if fmt == "application/json":
            pngs = await encode(lambda: [base64.b64encode(_png(im)).decode() for im in images])
            return JSONResponse({"model": name, "seed": seed, "labels": None if labels is None else labels.tolist(),
                                 "images": pngs}, headers=headers)
        if fmt in ("application/x-npy", "application/octet-stream"):
            return Response(_npy(images), media_type="application/x-npy", headers=headers)
        from gankit.images import grid

        picture = images[0] if req.n == 1 else grid(images)
        return Response(await encode(_png, picture), media_type="image/png", headers=headers)

    # -- inpaint / restore ---------------------------------------------------------------
    def _multipart_doc(fields: dict[str, str]) -> dict:
        return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": list(fields),
            "properties": {k: {"type": "string", "format": "binary", "description": v} for k, v in fields.items()}}}}},
            "responses": {"200": {"description": "The restored image as PNG", "content": {"image/png": {}}}}}

    @app.post("/v1/models/{name}/inpaint", tags=["models"], summary="Fill the masked pixels of an image",
              openapi_extra=_multipart_doc({"image": "PNG/JPEG, gray, RGB or RGBA, any size",
                                            "mask": "same size; white (nonzero) = missing pixel"}))
    async def inpaint(name: str, request: Request):
        sm = state.model(name)
        _require_task(sm, "inpaint")
        _negotiate(request.headers.get("accept"), ["image/png"])
        files = await _read_form(request, ["image", "mask"])
        image = _decode_image(files["image"], "image", state.max_pixels)
        mask = _decode_image(files["mask"], "mask", state.max_pixels)
        if image.size != mask.size:
            raise ServeError(422, f"mask is {mask.size[0]}x{mask.size[1]} but image is {image.size[0]}x{image.size[1]}; they must match")
        return await _image_job(state, sm, request, lambda: sm.shadow.inpaint(image, mask, batch_size=sm.max_batch))

    @app.post("/v1/models/{name}/restore", tags=["models"], summary="Restore (e.g. upscale) an image",
              openapi_extra=_multipart_doc({"image": "PNG/JPEG, gray, RGB or RGBA"}))
    async def restore(name: str, request: Request):
        sm = state.model(name)
        _require_task(sm, "restore")
        _negotiate(request.headers.get("accept"), ["image/png"])
        files = await _read_form(request, ["image"])
        image = _decode_image(files["image"], "image", state.max_pixels)
        scale = int(getattr(sm.model, "scale", 1))
        w, h = image.size
        if w * h * scale * scale > state.max_pixels:
            raise ServeError(422, f"the restored image would be {w * scale}x{h * scale}: over the limit of "
                                  f"{state.max_pixels} pixels; send a smaller image")
        # tiled on a pool thread; the tile batches of concurrent requests share runtime calls
        if sm.shadow is not None:
            return await _image_job(state, sm, request, lambda: sm.shadow.restore(image, as_pil=False))
        return await _image_job(state, sm, request, lambda: sm.model.restore(image))

    # -- sample images and the page ------------------------------------------------------
    @app.get("/v1/samples", tags=["page"], summary="Sample images for trying inpainting and restore")
    async def samples():
        from gankit.serve.samples import available

        return {"samples": [{"name": k, "url": f"/v1/samples/{k}.png"} for k in available()]}

    @app.get("/v1/samples/{sample}.png", tags=["page"], summary="One sample image")
    async def sample(sample: str):
        from gankit.serve.samples import SAMPLES, available, sample_png

        if sample not in SAMPLES:
            raise ServeError(404, f"no sample named {sample!r}; samples: {', '.join(SAMPLES)}")
        if sample not in available():
            raise ServeError(404, f"sample {sample!r} needs its source package here: pip install 'gankit[train]'")
        return Response(await asyncio.to_thread(sample_png, sample), media_type="image/png")

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(_Guard, state=state)
    return app


async def _inline(fn, *args):
    return fn(*args)


def _hwc(result: Any) -> np.ndarray:
    a = np.asarray(result)
    return a[..., None] if a.ndim == 2 else a


def _version() -> str:
    from gankit import __version__

    return __version__
