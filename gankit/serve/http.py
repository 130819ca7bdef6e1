"""HTTP plumbing of ``gankit serve``: content negotiation, image and array codecs, the request-body
guard and one-line JSON errors. Kept apart from :mod:`gankit.serve.app` (models, batching and the
endpoints) so that each reads in one sitting; nothing here knows about models.
"""

from __future__ import annotations

import io
import json
import re
import time
import warnings
from typing import Any, Sequence

import numpy as np
from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


FORMATS = {"image/png": "png", "application/json": "json", "application/x-npy": "npy", "application/octet-stream": "npy"}


class ServeError(Exception):
    """A request the server refuses: status, one-line message, optional headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class _ClientGone(Exception):
    pass


def _negotiate(accept: str | None, allowed: Sequence[str]) -> str:
    """The media type to answer with: the client's highest-q acceptable one; PNG when it does not care."""
    if not accept or not accept.strip():
        return allowed[0]
    prefs = []
    for pos, part in enumerate(accept.split(",")):
        fields = [f.strip() for f in part.split(";")]
        q = 1.0
        for f in fields[1:]:
            if f.startswith("q="):
                try:
                    q = float(f[2:])
                except ValueError:
                    q = 0.0
        prefs.append((-q, pos, fields[0].lower()))
    for negq, _, media in sorted(prefs):
        if negq == 0:
            continue
        if media in ("*/*", "image/*") and allowed[0] in FORMATS:
            return allowed[0]
        if media in allowed:
            return media
    raise ServeError(406, f"cannot answer with {accept!r}; this endpoint returns {', '.join(allowed)}")


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    from gankit.images import to_uint8

    a = to_uint8(array)  # 16-bit and float results are scaled to 8 bits, never wrapped or truncated
    im = Image.fromarray(a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=1)  # fast: this is on the request path
    return buf.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def _decode_image(data: bytes, what: str, max_pixels: int):
    """A PIL image from uploaded bytes: 413 when too large, 400 when not an image."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ServeError(400, f"{what} is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if w * h > max_pixels:
                raise ServeError(413, f"{what} is {w}x{h}: over the limit of {max_pixels} pixels")
            from gankit.images import colour_bits

            if colour_bits(im) == 16:  # Pillow would decode it at 8 bits: say so rather than lose them
                raise ServeError(400, f"{what} has 16 bits per channel in colour, which gankit serve does not read "
                                      "(the CLI does, with OpenCV); send it at 8 bits, or as 16-bit gray")
            im.load()
    except ServeError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ServeError(413, f"{what} is too large to decode safely") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else "corrupt file"
        detail = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-f]+>", "", detail)  # an object address, not a name
        raise ServeError(400, f"{what} is not a readable image ({detail[:120]})") from None
    return im


class BodyTooLarge(Exception):
    pass


class _Guard:
    """Pure ASGI middleware: request-size limit and per-route metrics.

    The size limit is checked on Content-Length up front and on the bytes actually
    received (chunked uploads), so an oversized body is never buffered whole.
    """

    def __init__(self, app, state: Any):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.state.max_body
        start = time.perf_counter()
        status = {"code": 500, "t": None}

        async def send_wrapped(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["t"] = time.perf_counter()
            await send(message)

        length = dict(scope.get("headers") or {}).get(b"content-length")
        try:
            too_big = length is not None and int(length) > limit
        except ValueError:
            too_big = False
        if too_big:
            await _send_error(send_wrapped, 413, f"request body over the limit of {limit} bytes")
        else:
            seen = 0

            async def receive_limited():
                nonlocal seen
                message = await receive()
                if message["type"] == "http.request":
                    seen += len(message.get("body", b""))
                    if seen > limit:
                        raise BodyTooLarge
                return message

            await self.app(scope, receive_limited, send_wrapped)
        route = scope.get("route")
        template = getattr(route, "path", None) or ("/static" if scope["path"].startswith("/static/") else "unmatched")
        name = (scope.get("path_params") or {}).get("name")
        model = name if name in self.state.models else "-"
        m = self.state.metrics
        m.requests.labels(template, model, str(status["code"])).inc()
        m.latency.labels(template, model).observe((status["t"] or time.perf_counter()) - start)


async def _send_error(send, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"error": message, "status": status}).encode()
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    hdrs += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split()), "status": status}, status_code=status, headers=headers)


async def _read_form(request: Request, fields: Sequence[str], optional: Sequence[str] = ()) -> dict[str, bytes]:
    from starlette.formparsers import MultiPartException

    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        raise ServeError(415, f"send multipart/form-data with the file field(s) {', '.join(fields)}; got {ctype or 'no content type'!r}")
    try:
        form = await request.form(max_files=len(fields) + len(optional), max_fields=8)
    except BodyTooLarge:
        raise
    except MultiPartException as exc:
        raise ServeError(400, f"malformed multipart body ({exc.message})") from None
    except StarletteHTTPException as exc:  # starlette reports a parse failure as a 400
        raise ServeError(400, f"malformed multipart body ({exc.detail})") from None
    out: dict[str, bytes] = {}
    try:
        for name in (*fields, *optional):
            part = form.get(name)
            if part is None:
                if name in fields:
                    raise ServeError(422, f"missing file field {name!r}")
                continue
            if isinstance(part, str):
                raise ServeError(422, f"field {name!r} must be a file upload, not text")
            ptype = (part.content_type or "").lower()
            if ptype and not (ptype.startswith("image/") or ptype == "application/octet-stream"):
                raise ServeError(415, f"{name} has content type {ptype!r}; send an image (PNG, JPEG, ...)")
            out[name] = await part.read()
    finally:
        await form.close()
    return out


def _validation_message(errors: Sequence[dict]) -> str:
    parts = []
    for e in errors[:3]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body",)) or "body"
        parts.append(f"{loc}: {e.get('msg', 'invalid')}")
    return "; ".join(parts)
