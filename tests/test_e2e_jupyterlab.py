"""JupyterLab in a real Chromium: run 08_gradcam, move the Explorer's sliders, watch the heatmaps change.

Needs Debian's Chromium at /usr/bin/chromium (`.ci/run` installs it); Playwright
drives it through ``executable_path`` and never downloads a browser. The notebook
runs from a copy in a temporary folder, so JupyterLab never writes to the repository.

It also times what a user waits for: from the key press on the topn slider to the new
Explorer picture painted in the page, over several moves. ``pytest -s`` prints the figures
(``docs/benchmarks.md`` quotes them); the JUnit report (``--junitxml``) records them too.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
NOTEBOOK = "notebooks/08_gradcam.ipynb"

# A content hash of every image in the output areas, read back through a canvas:
# ipywidgets.Image swaps its blob URL on every update, so the pixels are what count.
IMAGE_HASHES = """() => Array.from(document.querySelectorAll('.jp-OutputArea-output img')).map(img => {
    if (!img.complete || !img.naturalWidth) return null;
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    const ctx = canvas.getContext('2d'); ctx.drawImage(img, 0, 0);
    const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data; let h = 0;
    for (let i = 0; i < px.length; i += 4) h = (h * 31 + px[i] + 7 * px[i + 1] + 13 * px[i + 2]) % 1000000007;
    return h; })"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settings(folder: Path) -> None:
    """No autosave, no news check: the test must not write files or reach the network."""
    plugins = {
        "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
    }
    for name, value in plugins.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


@pytest.fixture
def jupyterlab(tmp_path):
    """A JupyterLab server on 127.0.0.1 with token auth over a copy of the notebooks."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)")
    root = tmp_path / "workbook"
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    (root / "data_samples").symlink_to(REPO / "data_samples")
    _settings(tmp_path / "settings")
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "config"), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "ws"))
    log = open(tmp_path / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", "--expose-app-in-browser", f"--ServerApp.root_dir={root}"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start:\n{(tmp_path / 'jupyterlab.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}", token
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


# Resolves with the milliseconds from the next key press to the first paint of a new Explorer
# picture: the keydown is timed in the page, then the <img> gets a new src (the kernel's PNG),
# is decoded, and the frame after the next animation frame shows it.
ARM_LATENCY = """() => { window.sferLatency = new Promise((resolve, reject) => {
    let pressed = null;
    document.addEventListener('keydown', () => { pressed = performance.now(); }, {capture: true, once: true});
    const views = Array.from(document.querySelectorAll('img.sfer-explorer-view'));
    const observer = new MutationObserver(async records => {
        if (pressed === null) return;
        observer.disconnect();
        await records[0].target.decode();
        requestAnimationFrame(() => requestAnimationFrame(() => resolve(performance.now() - pressed)));
    });
    views.forEach(img => observer.observe(img, {attributes: true, attributeFilter: ['src']}));
    setTimeout(() => reject(new Error('no new Explorer picture within 60 s')), 60000);
}); }"""
LATENCY_MOVES = 9  # topn moves timed, alternately down and up


def _wait_for_new_images(page, before, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = page.evaluate(IMAGE_HASHES)
        if None not in now and now != before:
            return now
        time.sleep(0.25)
    return page.evaluate(IMAGE_HASHES)


def _move(page, slider, key, shots, name):
    before = page.evaluate(IMAGE_HASHES)
    value_before = slider.locator(".widget-readout").inner_text()
    slider.locator(".noUi-handle").focus()
    page.keyboard.press(key)
    after = _wait_for_new_images(page, before)
    page.screenshot(path=str(shots / f"{name}.png"))
    assert slider.locator(".widget-readout").inner_text() != value_before, f"{name}: the slider did not move"
    assert after != before, f"{name}: no rendered image changed after moving the slider"


def _run_all(page):
    """Run every cell (the command resolves when the run ends); again if the kernel never went busy,
    as happens when the request is sent before the kernel is ready for it."""
    for _ in range(3):
        page.evaluate("""() => { window.sferBusy = false;
            window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.statusChanged.connect(
                (_, status) => { if (status === 'busy') window.sferBusy = true; }); }""")
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        if page.evaluate("window.sferBusy"):
            return
        time.sleep(2)
    pytest.fail("the notebook did not run: the kernel never went busy after run-all-cells")


def _kernel_idle(page):
    page.wait_for_function(
        "window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'", timeout=120_000)


def _latencies(page, slider) -> list[float]:
    """Seconds from each key press on ``slider`` to the new Explorer picture on screen."""
    out = []
    for i in range(LATENCY_MOVES):
        _kernel_idle(page)
        page.evaluate(ARM_LATENCY)
        slider.locator(".noUi-handle").focus()
        page.keyboard.press("ArrowLeft" if i % 2 == 0 else "ArrowRight")
        out.append(page.evaluate("window.sferLatency") / 1000)
    return out


def test_explorer_sliders_redraw_heatmaps(jupyterlab, tmp_path, record_property):
    from playwright.sync_api import sync_playwright

    url, token = jupyterlab
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1500, "height": 1100})
        page = context.new_page()
        try:
            page.goto(f"{url}/lab/tree/{NOTEBOOK}?token={token}")
            page.wait_for_function(
                "window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel?.status === 'idle'",
                timeout=120_000)
            _run_all(page)
            topn = page.locator(".widget-slider", has_text="topn")
            regions = page.locator(".widget-slider", has_text="regions")
            topn.wait_for(timeout=600_000)
            regions.wait_for(timeout=60_000)
            page.wait_for_function(
                "window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'",
                timeout=600_000)
            page.wait_for_function(f"({IMAGE_HASHES})().length > 0 && !({IMAGE_HASHES})().includes(null)",
                                   timeout=60_000)
            page.screenshot(path=str(shots / "ran.png"))

            _move(page, topn, "ArrowLeft", shots, "topn")
            _move(page, regions, "ArrowLeft", shots, "regions")

            # the latency a user sees: key press -> kernel -> PNG -> browser -> painted
            latencies = _latencies(page, topn)
            median = statistics.median(latencies)
            record_property("slider_latency_median_s", round(median, 3))
            record_property("slider_latency_s", [round(x, 3) for x in latencies])
            print(f"\nExplorer topn slider in Chromium, key press to new heatmap on screen: median {median:.3f} s, "
                  f"worst {max(latencies):.3f} s over {len(latencies)} moves (SFER_THREADS="
                  f"{os.environ.get('SFER_THREADS', '')!r}, load average {os.getloadavg()[0]:.2f}): "
                  f"{', '.join(f'{x:.3f}' for x in latencies)}")

            errors = [t for t in page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
                      .all_inner_texts() if "Traceback" in t or "Error" in t]
            assert errors == [], f"cells show errors: {errors[:2]}"
        except Exception:
            page.screenshot(path=str(shots / "failure.png"))
            raise
        finally:
            browser.close()
