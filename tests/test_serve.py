"""`gankit serve`: the HTTP API against a real uvicorn server on 127.0.0.1 (a free port).

Micro-batching and the queue are checked through the server's own metrics and counters,
never through timing: a long ``max_wait_ms`` with a small ``max_batch`` and ``linger="fixed"``
makes a batch close exactly when it is full, so the merge is deterministic.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import assert_one_line_error, run_subprocess
from tests.restore_models import make_resize_restorer
from tests.serve_models import make_generator, make_inpainter, make_truncation_generator, with_truncation_input
from tests.serve_server import LiveServer, metric, wait_for


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("serve-models")
    return {"cg": make_generator(d / "cg.onnx"), "ug": make_generator(d / "ug.onnx", latent=4, classes=0, c=3, h=4, w=4),
            "inp": make_inpainter(d / "inp.onnx")}


@pytest.fixture
def serve(files):
    """Start a server over the test models; stopped at the end of the test."""
    servers = []

    def start(names=("cg", "ug", "inp"), ready=True, **kw):
        from gankit.serve import create_app

        kw.setdefault("linger", "fixed")  # deterministic merging: a batch closes when it is full
        srv = LiveServer(create_app([files[n] for n in names], **kw), ready=ready)
        servers.append(srv)
        return srv

    yield start
    for s in servers:
        s.stop()


def png_bytes(a: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def read_png(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)))


def get_metrics(srv) -> str:
    r = httpx.get(srv.url + "/metrics")
    assert r.status_code == 200
    return r.text


def assert_json_error(r: httpx.Response, status: int, needle: str = "") -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    assert "\n" not in r.text.strip()
    body = r.json()
    assert body["status"] == status and body["error"]
    assert needle.lower() in body["error"].lower(), body


# ------------------------------------------------------------------------------ import, CLI
def test_importing_gankit_serve_does_not_import_torch():
    code = "import sys, gankit.serve, gankit.serve.command, gankit.serve.triton; assert 'torch' not in sys.modules, 'torch imported'"
    r = run_subprocess([sys.executable, "-c", code])
    assert r.returncode == 0, r.stderr


def test_cli_rejects_bad_models_and_options_in_one_line(cli, files, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_text("not onnx")
    for args, needle in ((["serve", tmp_path / "missing.onnx"], "not found"), (["serve", junk], "not a loadable onnx"),
                         (["serve", tmp_path], "is a folder, not a model file"), (["serve", files["cg"], "--max-batch", "0"], "--max-batch"),
                         (["serve", files["cg"], "--queue", "0"], "--queue"),
                         (["serve", files["cg"], files["cg"]], "named 'cg'")):
        r = cli(*args)
        assert_one_line_error(r)
        assert needle in r.err.lower() or needle in r.err, r.err


def test_cli_serves_until_stopped(files, tmp_path):
    with socket.socket() as s:  # a free port for the subprocess
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "gankit.cli", "serve", str(files["cg"]), str(files["inp"]), "--port",
                             str(port), "--max-wait-ms", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: proc.poll() is None and httpx.get(url + "/readyz").status_code == 200, "gankit serve readiness")
        assert [m["name"] for m in httpx.get(url + "/v1/models").json()["models"]] == ["cg", "inp"]
        r = httpx.post(url + "/v1/models/cg/generate", json={"n": 2, "labels": [1, 2], "seed": 5}, headers={"accept": "application/x-npy"})
        assert r.status_code == 200 and np.load(io.BytesIO(r.content)).shape == (2, 8, 8, 1)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "Traceback" not in out, out
    assert f"127.0.0.1:{port}" in out


# ------------------------------------------------------------------------------ API
def test_models_listing_and_generate_in_every_format(serve, files):
    from gankit import runtime

    srv = serve()
    models = {m["name"]: m for m in httpx.get(srv.url + "/v1/models").json()["models"]}
    assert set(models) == {"cg", "ug", "inp"}
    assert models["cg"]["task"] == "generate" and models["cg"]["num_classes"] == 10 and models["cg"]["latent_dim"] == 8
    assert [i["name"] for i in models["cg"]["inputs"]] == ["z", "label"] and models["cg"]["truncation"] is False
    assert models["inp"]["task"] == "inpaint" and models["inp"]["endpoint"] == "/v1/models/inp/inpaint"
    assert models["cg"]["metadata"]["gankit.format"] == "1"

    ref = runtime.load(files["cg"]).generate(4, labels=["3", 4, 5, 6], seed=11)
    url = srv.url + "/v1/models/cg/generate"
    body = {"n": 4, "labels": ["3", 4, 5, 6], "seed": 11}
    npy = httpx.post(url, json=body, headers={"accept": "application/x-npy"})
    assert npy.status_code == 200 and npy.headers["content-type"] == "application/x-npy"
    np.testing.assert_array_equal(np.load(io.BytesIO(npy.content)), ref)  # served = runtime, bit for bit
    assert npy.headers["x-seed"] == "11" and npy.headers["x-labels"] == "3,4,5,6"

    js = httpx.post(url, json=body, headers={"accept": "application/json"}).json()
    assert js["seed"] == 11 and js["labels"] == [3, 4, 5, 6] and len(js["images"]) == 4
    np.testing.assert_array_equal(read_png(base64.b64decode(js["images"][2])), ref[2, ..., 0])

    one = httpx.post(url, json={"n": 1, "labels": 7, "seed": 3})  # no Accept: PNG
    assert one.headers["content-type"] == "image/png"
    np.testing.assert_array_equal(read_png(one.content), runtime.load(files["cg"]).generate(1, labels=7, seed=3)[0, ..., 0])
    grid = read_png(httpx.post(url, json={"n": 4, "seed": 3}, headers={"accept": "image/png"}).content)
    assert grid.shape[0] > 8 and grid.shape[1] > 8  # n > 1: one grid picture

    empty = httpx.post(srv.url + "/v1/models/ug/generate", headers={"accept": "application/x-npy"})  # no body: n = 1
    assert empty.status_code == 200 and np.load(io.BytesIO(empty.content)).shape == (1, 4, 4, 3)
    drawn = httpx.post(url, json={"n": 1}, headers={"accept": "application/x-npy"})
    seed = int(drawn.headers["x-seed"])  # a drawn seed is reported so the image can be made again
    np.testing.assert_array_equal(np.load(io.BytesIO(drawn.content)), runtime.load(files["cg"]).generate(1, seed=seed))


def test_inpaint_keeps_known_pixels_any_size_and_mode(serve):
    srv = serve()
    rng = np.random.default_rng(0)
    for shape in ((20, 30), (5, 6), (17, 9, 3), (12, 12, 4)):
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        mask = np.zeros(shape[:2], np.uint8)
        mask[1:4, 2:5] = 255
        r = httpx.post(srv.url + "/v1/models/inp/inpaint", files={"image": ("i.png", png_bytes(img), "image/png"),
                                                                    "mask": ("m.png", png_bytes(mask), "image/png")})
        assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
        out = read_png(r.content)
        assert out.shape == img.shape
        keep = mask == 0
        np.testing.assert_array_equal(out[keep], img[keep])
        assert (out[~keep][..., :3] == 191).all()  # the test model fills holes with 0.5


def test_micro_batching_merges_concurrent_requests(serve, files):
    from gankit import runtime

    # max_batch 8 with a long wait: the batch closes exactly when 8 rows are there
    srv = serve(names=("cg",), max_batch=8, max_wait_ms=20_000)
    before = get_metrics(srv)
    calls0 = metric(before, "gankit_serve_batch_size_count", model="cg")
    assert calls0 == 1  # the warm-up call

    def one(seed):
        r = httpx.post(srv.url + "/v1/models/cg/generate", json={"n": 1, "labels": seed % 10, "seed": seed},
                       headers={"accept": "application/x-npy"}, timeout=60)
        assert r.status_code == 200, r.text
        return np.load(io.BytesIO(r.content))

    with ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(one, range(8)))
    after = get_metrics(srv)
    assert metric(after, "gankit_serve_batch_size_count", model="cg") == calls0 + 1  # 8 requests, one runtime call
    assert metric(after, "gankit_serve_batch_size_sum", model="cg") == 1 + 8
    assert metric(after, "gankit_serve_batch_requests_sum", model="cg") == 1 + 8
    ref = runtime.load(files["cg"])
    for seed, out in enumerate(outs):  # merging does not change anyone's images
        np.testing.assert_array_equal(out, ref.generate(1, labels=seed % 10, seed=seed))


def test_concurrent_inpaint_requests_share_runtime_calls(serve):
    # each 8x8 request is one model-sized tile; 4 of them fill a batch of 4
    srv = serve(names=("inp",), max_batch=4, max_wait_ms=20_000)
    calls0 = metric(get_metrics(srv), "gankit_serve_batch_size_count", model="inp")
    images = np.random.default_rng(3).integers(0, 256, (4, 8, 8), dtype=np.uint8)

    def one(k):
        img = images[k]
        mask = np.zeros((8, 8), np.uint8)
        mask[k : k + 2] = 255
        r = httpx.post(srv.url + "/v1/models/inp/inpaint", timeout=60, files={
            "image": ("i.png", png_bytes(img), "image/png"), "mask": ("m.png", png_bytes(mask), "image/png")})
        assert r.status_code == 200, r.text
        out = read_png(r.content)
        np.testing.assert_array_equal(out[mask == 0], img[mask == 0])

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(4)))
    text = get_metrics(srv)
    assert metric(text, "gankit_serve_batch_size_count", model="inp") == calls0 + 1
    assert metric(text, "gankit_serve_batch_requests_sum", model="inp") - 1 == 4  # (the warm-up was 1)


def test_batching_off_runs_one_request_per_call(serve):
    srv = serve(names=("cg",), max_batch=1, max_wait_ms=20_000)
    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda s: httpx.post(srv.url + "/v1/models/cg/generate", json={"seed": s}, timeout=60).status_code, range(4)))
    assert codes == [200] * 4
    text = get_metrics(srv)
    assert metric(text, "gankit_serve_batch_size_count", model="cg") == 1 + 4
    assert metric(text, "gankit_serve_batch_size_sum", model="cg") == 1 + 4


def test_full_queue_answers_503_with_retry_after_and_keeps_the_accepted(serve):
    # queue 2, batches of 4 waiting up to 3 s: two requests sit in the queue, the third is refused
    srv = serve(names=("cg",), max_batch=4, max_wait_ms=3_000, queue=2)
    results = []

    def slow(seed):
        results.append(httpx.post(srv.url + "/v1/models/cg/generate", json={"seed": seed}, timeout=60).status_code)

    threads = [threading.Thread(target=slow, args=(s,)) for s in range(2)]
    for t in threads:
        t.start()
    wait_for(lambda: metric(get_metrics(srv), "gankit_serve_queue_depth", model="cg") == 2, "two queued requests")
    r = httpx.post(srv.url + "/v1/models/cg/generate", json={"seed": 9})
    assert_json_error(r, 503, "queue")
    assert r.headers["retry-after"] == "1"
    assert httpx.get(srv.url + "/readyz").status_code == 200  # busy is not unready
    for t in threads:
        t.join(timeout=60)
    assert results == [200, 200]
    text = get_metrics(srv)
    assert metric(text, "gankit_serve_rejected_total", model="cg") == 1
    assert metric(text, "gankit_serve_queue_depth", model="cg") == 0


def test_client_that_disconnects_costs_no_inference(serve):
    srv = serve(names=("cg",), max_batch=4, max_wait_ms=5_000)
    calls0 = metric(get_metrics(srv), "gankit_serve_batch_size_count", model="cg")
    body = json.dumps({"seed": 1}).encode()
    sock = socket.create_connection(("127.0.0.1", srv.port))
    sock.sendall(b"POST /v1/models/cg/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    wait_for(lambda: metric(get_metrics(srv), "gankit_serve_queue_depth", model="cg") == 1, "the request to queue")
    sock.close()  # gone before its batch ran
    wait_for(lambda: metric(get_metrics(srv), "gankit_serve_cancelled_total", model="cg") == 1, "the cancellation")
    text = get_metrics(srv)
    assert metric(text, "gankit_serve_batch_size_count", model="cg") == calls0  # no runtime call was made for it
    assert metric(text, "gankit_serve_queue_depth", model="cg") == 0
    assert httpx.post(srv.url + "/v1/models/cg/generate", json={"n": 4}, timeout=60).status_code == 200

    # a client that leaves in the middle of its upload: the request ends quietly, nothing runs
    sock = socket.create_connection(("127.0.0.1", srv.port))
    sock.sendall(b"POST /v1/models/cg/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n{\"n\": 1")
    sock.close()
    wait_for(lambda: metric(get_metrics(srv), "gankit_serve_requests_total", route="/v1/models/{name}/generate",
                            status="499") == 2, "the abandoned upload to end")  # both departures logged as 499
    text = get_metrics(srv)
    assert metric(text, "gankit_serve_batch_size_count", model="cg") == calls0 + 1  # only the n=4 request ran
    assert 'status="500"' not in text


def _rgb16_png(h: int, w: int) -> bytes:
    """A 48-bit colour PNG (Pillow cannot write one; OpenCV can)."""
    import cv2

    ok, buf = cv2.imencode(".png", np.full((h, w, 3), 40000, np.uint16))
    assert ok
    return buf.tobytes()


def test_max_wait_beyond_the_batching_window_is_refused(files):
    """inf used to start a server whose batcher thread died on the first request (a wait too long
    for the platform's timeout) while /readyz still said ready."""
    from gankit.errors import UsageError
    from gankit.serve import create_app
    from gankit.serve.command import serve

    for bad in (float("inf"), float("nan"), -1.0, 1e9):
        with pytest.raises(UsageError, match="--max-wait-ms must be from 0 to 600000"):
            serve([files["cg"]], max_wait_ms=bad)
        with pytest.raises(UsageError, match="max_wait_ms must be from 0 to 600000"):
            create_app([files["cg"]], max_wait_ms=bad)


def test_bad_requests_get_4xx_json_never_500(serve, tmp_path):
    srv = serve(max_body_bytes=200_000, max_pixels=4_096)
    gen, inp = srv.url + "/v1/models/cg/generate", srv.url + "/v1/models/inp/inpaint"
    img, mask = png_bytes(np.zeros((10, 10), np.uint8)), png_bytes(np.full((10, 10), 255, np.uint8))
    part_head = b'--zz\r\nContent-Disposition: form-data; name="image"; filename="i.png"\r\nContent-Type: image/png\r\n\r\n'
    cases = [
        (httpx.post(srv.url + "/v1/models/nope/generate", json={}), 404, "no model named"),
        (httpx.post(srv.url + "/v1/models/inp/generate", json={}), 400, "inpaint"),
        (httpx.post(srv.url + "/v1/models/cg/restore", files={"image": ("i.png", img, "image/png")}), 400, "generate"),
        (httpx.post(gen, content=b"n=3", headers={"content-type": "text/plain"}), 415, "application/json"),
        (httpx.post(gen, content=b"{nope", headers={"content-type": "application/json"}), 400, "json"),
        (httpx.post(gen, json=[1, 2]), 422, "object"),
        (httpx.post(gen, json={"n": 0}), 422, "n"),
        (httpx.post(gen, json={"n": 100_000}), 422, "n"),
        (httpx.post(gen, json={"n": 2, "labels": 10}), 422, "out of range"),
        (httpx.post(gen, json={"n": 2, "labels": [1, 2, 3]}), 422, "labels"),
        (httpx.post(gen, json={"labels": "cat"}), 422, "unknown class"),
        (httpx.post(gen, json={"labels": 1.5}), 422, "labels"),
        (httpx.post(gen, json={"seed": -1}), 422, "seed"),
        (httpx.post(gen, json={"n": True}), 422, "n"),  # strict JSON types: true is not 1
        (httpx.post(gen, json={"n": "3"}), 422, "n"),
        (httpx.post(gen, json={"truncation": 0.7}), 422, "truncation"),
        (httpx.post(gen, json={"steps": 3}), 422, "steps"),
        (httpx.post(srv.url + "/v1/models/ug/generate", json={"labels": 1}), 422, "unconditional"),
        (httpx.post(gen, json={}, headers={"accept": "text/html"}), 406, "image/png"),
        (httpx.post(inp, json={"image": 1}), 415, "multipart"),
        (httpx.post(inp, files={"image": ("i.png", img, "image/png")}), 422, "mask"),
        (httpx.post(inp, files={"image": ("i.txt", b"hello", "text/plain"), "mask": ("m.png", mask, "image/png")}), 415, "text/plain"),
        (httpx.post(inp, files={"image": ("i.png", b"\x89PNG\r\n\x1a\nbroken", "image/png"), "mask": ("m.png", mask, "image/png")}), 400, "not a readable image"),
        (httpx.post(inp, files={"image": ("i.png", b"", "image/png"), "mask": ("m.png", mask, "image/png")}), 400, "empty"),
        (httpx.post(inp, files={"image": ("i.png", _rgb16_png(10, 10), "image/png"), "mask": ("m.png", mask, "image/png")}), 400,
         "16 bits per channel"),
        (httpx.post(inp, files={"image": ("i.png", img, "image/png"), "mask": ("m.png", png_bytes(np.zeros((9, 10), np.uint8)), "image/png")}), 422, "must match"),
        (httpx.post(inp, files={"image": ("i.png", png_bytes(np.zeros((100, 100), np.uint8)), "image/png"),
                                "mask": ("m.png", png_bytes(np.zeros((100, 100), np.uint8)), "image/png")}), 413, "pixels"),
        (httpx.post(inp, files={"image": ("i.png", b"x" * 300_000, "image/png"), "mask": ("m.png", mask, "image/png")}), 413, "body"),
        # a chunked upload without Content-Length is counted as it arrives
        (httpx.post(inp, content=iter([part_head] + [b"x" * 100_000] * 3), headers={"content-type": "multipart/form-data; boundary=zz"}), 413, "body"),
        (httpx.post(inp, content=b"--zz\r\nbroken", headers={"content-type": "multipart/form-data; boundary=zz"}), 422, "missing file field"),
        (httpx.get(srv.url + "/v1/nothing"), 404, "not found"),
    ]
    for r, status, needle in cases:
        assert_json_error(r, status, needle)
    garbage = httpx.post(inp, files={"image": ("i.png", b"hello" * 10, "image/png"), "mask": ("m.png", mask, "image/png")})
    assert_json_error(garbage, 400, "not a readable image")
    assert "BytesIO" not in garbage.json()["error"]  # an object's address is no help to the caller
    assert 'status="500"' not in get_metrics(srv)  # no internal error was ever answered
    assert httpx.get(srv.url + "/readyz").status_code == 200


def test_readiness_only_after_warm_up(files):
    from gankit.serve import create_app

    # without the lifespan the warm-up never runs: alive but not ready
    cold = LiveServer(create_app([files["cg"], files["inp"]]), ready=False, lifespan="off")
    try:
        assert httpx.get(cold.url + "/healthz").status_code == 200
        r = httpx.get(cold.url + "/readyz")
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and "warming" in r.json()["error"]
        assert metric(get_metrics(cold), "gankit_serve_ready") == 0
    finally:
        cold.stop()
    warm = LiveServer(create_app([files["cg"], files["inp"]]), ready=True)  # waits for /readyz 200
    try:
        text = get_metrics(warm)
        assert metric(text, "gankit_serve_ready") == 1
        for name in ("cg", "inp"):  # each model made a real runtime call before reporting ready
            assert metric(text, "gankit_serve_batch_size_count", model=name) >= 1
    finally:
        warm.stop()


def test_metrics_parse_and_count_requests(serve):
    from prometheus_client.parser import text_string_to_metric_families

    srv = serve()
    for _ in range(3):
        httpx.post(srv.url + "/v1/models/cg/generate", json={"n": 2})
    httpx.post(srv.url + "/v1/models/cg/generate", json={"n": 0})
    text = get_metrics(srv)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("gankit_serve_requests", "gankit_serve_request_seconds", "gankit_serve_batch_size",
                 "gankit_serve_batch_requests", "gankit_serve_queue_depth", "gankit_serve_rejected", "gankit_serve_ready"):
        assert name in families, sorted(families)
    route = "/v1/models/{name}/generate"
    assert metric(text, "gankit_serve_requests_total", route=route, model="cg", status="200") == 3
    assert metric(text, "gankit_serve_requests_total", route=route, model="cg", status="422") == 1
    assert metric(text, "gankit_serve_request_seconds_count", route=route, model="cg") == 4
    assert metric(text, "gankit_serve_batch_size_sum", model="cg") >= 6


def test_page_docs_and_samples_are_served(serve):
    srv = serve(names=("inp",))
    page = httpx.get(srv.url + "/")
    assert page.status_code == 200 and "gankit serve" in page.text and "/static/app.js" in page.text
    assert httpx.get(srv.url + "/static/app.js").status_code == 200
    assert httpx.get(srv.url + "/docs").status_code == 200
    paths = httpx.get(srv.url + "/openapi.json").json()["paths"]
    assert {"/v1/models", "/v1/models/{name}/generate", "/v1/models/{name}/inpaint", "/v1/models/{name}/restore",
            "/healthz", "/readyz", "/metrics"} <= set(paths)
    names = [s["name"] for s in httpx.get(srv.url + "/v1/samples").json()["samples"]]
    assert "digit" in names
    assert read_png(httpx.get(srv.url + "/v1/samples/digit.png", timeout=120).content).shape == (28, 28)
    assert_json_error(httpx.get(srv.url + "/v1/samples/nope.png"), 404, "no sample")


def test_restore_endpoint_serves_restore_models(files, tmp_path):
    """A real restore file (nearest x2): any size and mode, alpha kept, 16-bit scaled to 8, the
    output-size limit, wrong tasks and junk refused; concurrent requests share runtime calls."""
    from PIL import Image

    from gankit.serve import create_app

    up = make_resize_restorer(tmp_path / "up2.onnx", c=3, scale=2)
    srv = LiveServer(create_app([up, files["inp"]], max_pixels=40_000))
    url = srv.url + "/v1/models/up2/restore"
    try:
        info = httpx.get(srv.url + "/v1/models/up2").json()
        assert (info["task"], info["scale"], info["degradation"], info["endpoint"]) == ("restore", 2, "sr2", "/v1/models/up2/restore")
        calls0 = metric(get_metrics(srv), "gankit_serve_batch_size_count", model="up2")
        assert calls0 == 1  # warmed up through the batcher before ready
        rng = np.random.default_rng(1)
        for shape in ((5, 7, 3), (9, 4), (6, 6, 4), (300, 30, 3)):  # the last one runs in two tiles
            img = rng.integers(0, 256, shape, dtype=np.uint8)
            r = httpx.post(url, files={"image": ("i.png", png_bytes(img), "image/png")}, timeout=60)
            assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
            out = read_png(r.content)
            if len(shape) == 3 and shape[2] == 4:
                np.testing.assert_array_equal(out[..., :3], img[..., :3].repeat(2, 0).repeat(2, 1))
                assert out.shape == (12, 12, 4)
            else:
                np.testing.assert_array_equal(out, img.repeat(2, 0).repeat(2, 1))
        g16 = (np.arange(48, dtype=np.uint16).reshape(6, 8) * 1361)
        buf = io.BytesIO()
        Image.fromarray(g16).save(buf, format="PNG")
        r = httpx.post(url, files={"image": ("g.png", buf.getvalue(), "image/png")})
        assert r.status_code == 200, r.text
        from gankit.images import to_uint8

        np.testing.assert_array_equal(read_png(r.content), to_uint8(g16).repeat(2, 0).repeat(2, 1))  # scaled, not wrapped

        big = png_bytes(np.zeros((120, 100, 3), np.uint8))  # 12,000 pixels in, 48,000 out: over 40,000
        assert_json_error(httpx.post(url, files={"image": ("i.png", big, "image/png")}), 422, "restored image would be 200x240")
        huge = png_bytes(np.zeros((250, 200), np.uint8))
        assert_json_error(httpx.post(url, files={"image": ("i.png", huge, "image/png")}), 413, "pixels")
        assert_json_error(httpx.post(srv.url + "/v1/models/inp/restore", files={"image": ("i.png", png_bytes(img), "image/png")}),
                          400, "does inpaint, not restore")
        assert_json_error(httpx.post(srv.url + "/v1/models/up2/inpaint", files={"image": ("i.png", png_bytes(img), "image/png"),
                                                                                 "mask": ("m.png", png_bytes(img), "image/png")}),
                          400, "does restore, not inpaint")
        assert_json_error(httpx.post(url, files={"image": ("i.png", b"junk", "image/png")}), 400, "not a readable image")
        assert_json_error(httpx.post(url, json={"image": 1}), 415, "multipart")
        assert 'status="500"' not in get_metrics(srv)
    finally:
        srv.stop()


def test_concurrent_restore_requests_share_runtime_calls(tmp_path):
    # max_batch 4 with a long wait: four one-window requests of one shape close the batch together
    from gankit.serve import create_app

    up = make_resize_restorer(tmp_path / "up2.onnx", c=3, scale=2)
    srv = LiveServer(create_app([up], max_batch=4, max_wait_ms=20_000, linger="fixed"))
    url = srv.url + "/v1/models/up2/restore"
    images = np.random.default_rng(4).integers(0, 256, (4, 10, 12, 3), dtype=np.uint8)

    def one(k):
        r = httpx.post(url, files={"image": ("i.png", png_bytes(images[k]), "image/png")}, timeout=60)
        assert r.status_code == 200, r.text
        np.testing.assert_array_equal(read_png(r.content), images[k].repeat(2, 0).repeat(2, 1))

    try:
        before = metric(get_metrics(srv), "gankit_serve_batch_size_count", model="up2")
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(one, range(4)))
        text = get_metrics(srv)
        assert metric(text, "gankit_serve_batch_size_count", model="up2") == before + 1
        assert metric(text, "gankit_serve_batch_requests_sum", model="up2") - 1 == 4  # (the warm-up was 1)
    finally:
        srv.stop()


def test_truncation_is_offered_and_fed_where_the_model_has_it(tmp_path):
    from gankit.serve import create_app

    plain = make_generator(tmp_path / "plain.onnx", latent=4, classes=0, c=1, h=4, w=4)
    model = with_truncation_input(plain, make_truncation_generator(tmp_path / "sg.onnx", latent=4, c=1, h=4, w=4))
    srv = LiveServer(create_app([model], max_batch=8, max_wait_ms=20_000, linger="fixed"))
    try:
        info = httpx.get(srv.url + "/v1/models").json()["models"][0]
        assert info["name"] == "sg" and info["truncation"] is True

        def gen(body):
            r = httpx.post(srv.url + "/v1/models/sg/generate", json=body, headers={"accept": "application/x-npy"}, timeout=60)
            assert r.status_code == 200, r.text
            return np.load(io.BytesIO(r.content))

        with ThreadPoolExecutor(8) as pool:  # different psi values merge into one call (psi is per row)
            outs = list(pool.map(gen, [{"seed": 1, "truncation": 0.0}] * 4 + [{"seed": 1, "truncation": 1.0}] * 4))
        assert metric(get_metrics(srv), "gankit_serve_batch_size_count", model="sg") == 1 + 1  # warm-up + one merged call
        assert all((o == 128).all() for o in outs[:4])  # psi 0: tanh(0) everywhere
        assert all(not (o == 128).all() for o in outs[4:])
        # no truncation given means psi 1 (n = 8 fills a batch, and its first row has the n = 1 noise)
        np.testing.assert_array_equal(outs[4], gen({"seed": 1, "n": 8})[:1])
        assert_json_error(httpx.post(srv.url + "/v1/models/sg/generate", json={"truncation": 3}), 422, "truncation")
        # NaN is legal JSON to Python's reader: named as not finite, not as "above 2"
        assert_json_error(httpx.post(srv.url + "/v1/models/sg/generate", content=b'{"truncation": NaN}',
                                     headers={"content-type": "application/json"}), 422, "truncation: input should be a finite number")
    finally:
        srv.stop()


def test_docs_cover_every_route_and_option(files):
    import re

    from gankit.serve import create_app

    docs = (Path(__file__).resolve().parents[1] / "docs" / "serve.md").read_text()
    paths = create_app([files["cg"]]).openapi()["paths"]
    for path in paths:
        assert f"`GET {path}`" in docs or f"`POST {path}`" in docs, f"docs/serve.md does not list {path}"
    from gankit.cli import app as cli_app
    import typer

    serve_cmd = next(c for c in typer.main.get_command(cli_app).commands.values() if c.name == "serve")
    for param in serve_cmd.params:
        for opt in param.opts:
            if opt.startswith("--") and opt != "--help":
                assert f"`{opt}`" in docs, opt
    assert re.search(r"gankit export --triton", docs)


def test_adaptive_batcher_takes_what_queued_during_a_run_and_does_not_sit_out_the_window():
    from gankit.serve.batcher import Batcher

    gate, started, sizes = threading.Event(), threading.Event(), []

    def run(feed):
        sizes.append(len(feed["x"]))
        started.set()
        gate.wait(30)  # the first run holds the worker until the test has queued more
        return feed["x"] * 2

    b = Batcher("t", run, max_batch=16, max_wait_ms=60_000)  # adaptive is the default
    try:
        first = b.submit({"x": np.zeros((1, 1), np.float32)})
        assert started.wait(30)
        rest = [b.submit({"x": np.full((1, 1), k, np.float32)}) for k in range(1, 8)]
        gate.set()
        # the first run took well under the 60 s window, so the next batch is run without
        # waiting for the window: a fixed linger would hold these answers for a minute
        outs = [f.result(timeout=30) for f in [first, *rest]]
    finally:
        b.stop()
    assert sizes == [1, 7]  # everything that queued during the first run went in one call
    assert [float(o[0, 0]) for o in outs] == [2.0 * k for k in range(8)]


def test_a_fixed_linger_holds_every_batch_but_the_warm_up():
    from gankit.serve.batcher import Batcher

    sizes = []

    def run(feed):
        sizes.append(len(feed["x"]))
        return feed["x"] + 1

    b = Batcher("t", run, max_batch=3, max_wait_ms=600_000, linger="fixed")
    try:
        # the server's warm-up runs alone at once, not after 10 minutes
        with b.warming():
            assert float(b.submit({"x": np.zeros((1, 1), np.float32)}).result(timeout=60)[0, 0]) == 1.0
        later = [b.submit({"x": np.full((1, 1), k, np.float32)}) for k in range(3)]  # closes when full
        outs = [f.result(timeout=60) for f in later]
    finally:
        b.stop()
    assert sizes == [1, 3] and [float(o[0, 0]) for o in outs] == [1.0, 2.0, 3.0]


def test_batcher_refuses_an_unknown_linger():
    from gankit.serve.batcher import Batcher

    with pytest.raises(ValueError, match="linger"):
        Batcher("t", lambda f: f, linger="sometimes")
