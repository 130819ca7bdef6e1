"""The page at `/` in a real browser: Playwright driving Debian's Chromium (`apt-get install chromium`).

Playwright's own browser download is not used (nothing is downloaded at run time); without
/usr/bin/chromium the test is skipped with the reason.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.restore_models import make_resize_restorer
from tests.serve_models import make_generator, make_inpainter
from tests.serve_server import LiveServer

CHROMIUM = os.environ.get("GANKIT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "benchmarks" / "figures" / "serve-page.png"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no Chromium: apt-get install -y chromium")


@pytest.fixture
def browser(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        # a fresh profile per test (Playwright wants it as user_data_dir, not as a flag)
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True,
            viewport={"width": 1100, "height": 640},
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        try:
            yield context
        finally:
            context.close()


def _blob_bytes(page, key: str) -> bytes:
    b64 = page.evaluate("""async (key) => {
        const buf = new Uint8Array(await window.gankitPage.last[key].arrayBuffer());
        let s = ""; for (const x of buf) s += String.fromCharCode(x);
        return btoa(s);
    }""", key)
    return base64.b64decode(b64)


def test_page_paints_a_mask_and_inpaints_keeping_known_pixels(tmp_path, browser):
    from PIL import Image

    from gankit.serve import create_app

    inp = make_inpainter(tmp_path / "inpaint-demo.onnx", c=1, h=28, w=28)
    gen = make_generator(tmp_path / "cgan-demo.onnx", latent=8, classes=10, c=1, h=28, w=28)
    server = LiveServer(create_app([gen, inp, make_resize_restorer(tmp_path / "up2.onnx", c=3, scale=2)]))
    try:
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.url + "/")
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        assert page.locator("#tabs button").all_inner_texts() == ["Generate", "Inpaint", "Restore"]

        # generate tab: a grid of the requested size comes back
        page.fill("#gen-n", "4")
        page.click("#gen-run")
        page.wait_for_function("document.querySelectorAll('#gen-grid img').length === 4", timeout=30_000)

        # inpaint tab: pick the sample digit, paint a stroke, undo one, paint again, run
        page.click("#tab-inpaint")
        page.select_option("#inp-sample", "digit")
        page.wait_for_function("!document.getElementById('inp-run').disabled", timeout=30_000)
        box = page.locator("#inp-mask").bounding_box()
        assert box and box["width"] > 100  # the 28x28 image is shown scaled up

        def drag(y_frac, x0=0.2, x1=0.8):
            page.mouse.move(box["x"] + box["width"] * x0, box["y"] + box["height"] * y_frac)
            page.mouse.down()
            for k in range(1, 11):
                x = x0 + (x1 - x0) * k / 10
                page.mouse.move(box["x"] + box["width"] * x, box["y"] + box["height"] * y_frac)
            page.mouse.up()

        page.fill("#inp-brush", "30")
        page.dispatch_event("#inp-brush", "input")
        drag(0.3)
        drag(0.7)
        page.click("#inp-undo")  # the second stroke is gone
        page.click("#inp-run")
        page.wait_for_selector("body[data-inpaint-done='1']", timeout=30_000)
        page.screenshot(path=str(tmp_path / "page.png"))

        image = np.asarray(Image.open(io.BytesIO(_blob_bytes(page, "image"))).convert("L"))
        mask = np.asarray(Image.open(io.BytesIO(_blob_bytes(page, "mask"))).convert("L")) > 127
        result = np.asarray(Image.open(io.BytesIO(_blob_bytes(page, "result"))).convert("L"))
        assert image.shape == mask.shape == result.shape == (28, 28)
        assert 0 < mask.sum() < mask.size
        rows = np.flatnonzero(mask.any(axis=1))
        assert rows.min() >= 4 and rows.max() <= 14, rows  # only the first stroke (y = 0.3) survived the undo
        np.testing.assert_array_equal(result[~mask], image[~mask])  # known pixels come back unchanged
        assert (result[mask] == 191).all()  # the test model fills holes with 0.5 -> 191

        # restore tab: a sample through the (test) 2x upscaler, before and after shown
        page.click("#tab-restore")
        assert page.locator("#res-model option").all_inner_texts() == ["up2 (restore-test, ×2 sr2)"]
        page.select_option("#res-sample", "camera")
        page.wait_for_function("!document.getElementById('res-run').disabled", timeout=30_000)
        page.click("#res-run")
        page.wait_for_function("document.getElementById('res-result').naturalWidth > 0", timeout=30_000)
        sizes = page.evaluate("[document.getElementById('res-before').naturalWidth, document.getElementById('res-result').naturalWidth]")
        assert sizes == [96, 192]
        assert not errors, errors
        assert (tmp_path / "page.png").stat().st_size > 10_000  # a real rendering, not a blank page
        if os.environ.get("GANKIT_UPDATE_FIGURES"):  # refresh the README's screenshot on request only
            shutil.copyfile(tmp_path / "page.png", SCREENSHOT)
    finally:
        server.stop()
