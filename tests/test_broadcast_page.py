"""The livestream operator page and the viewer comment page in real headless Chromium (Playwright)
against a real `avatar live` (no RTMP output: this test is about the pages and the monitor).

The operator watches the monitor over WebRTC (loopback ICE), sees the script being spoken, sends
a comment from the viewer page and sees it accepted and answered in the event log, pauses and
resumes, and a blocked comment is refused with its reason. Screenshots go to
docs/images/livestream_{operator,comment}.png when AVATAR_UPDATE_SCREENSHOTS=1 (else a temp folder).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from avatar.core.system_tools import free_port, stop_process
from tests.conftest import ASSETS, ROOT, SAMPLE_PORTRAIT, screenshot_path

pytest.importorskip("aiortc", reason="the live extra is not installed (pip install -e '.[live]')")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (dev extra)")

SHOTS = Path(tempfile.gettempdir()) / "avatar-screenshots"
START_S = 90.0
SERVER_SCRIPT = (
    "import sys; from avatar.live.ice import install_loopback_only; install_loopback_only(); "
    "from avatar.cli import main; sys.exit(main(sys.argv[1:]))"
)


@contextmanager
def live_process(tmp: Path):
    port = free_port()
    script = tmp / "show.md"
    script.write_text(
        "[happy] Welcome to the Lumen Electronics hour.\n\n"
        "Today we look at headphones, chargers and smart watches.\n\n[pause 1s]\n",
        encoding="utf-8",
    )
    command = [sys.executable, "-c", SERVER_SCRIPT, "live", "--photo", str(SAMPLE_PORTRAIT), "--size", "320"]
    command += ["--script", str(script), "--knowledge", str(ASSETS / "knowledge" / "shop_faq.md")]
    command += ["--blocklist", str(ASSETS / "blocklist_example.txt"), "--port", str(port), "--lang", "en"]
    log = tmp / "live.log"
    with log.open("w") as sink:
        process = subprocess.Popen(command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + START_S
            while True:
                if process.poll() is not None:
                    raise AssertionError(
                        f"avatar live exited ({process.returncode}):\n{log.read_text()[-3000:]}"
                    )
                try:
                    with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                        if json.loads(response.read()).get("state") in ("idle", "speaking"):
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"avatar live did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
            yield url
        finally:
            stop_process(process, grace_s=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with live_process(tmp_path_factory.mktemp("broadcast-page")) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian chromium is not installed (scripts/install_browser.sh)")
    args = [
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--autoplay-policy=no-user-gesture-required",
    ]
    if os.geteuid() == 0:
        args.append("--no-sandbox")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=args, headless=True)
        yield browser
        browser.close()


def test_operator_page_monitor_comments_and_controls(server, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server + "/", wait_until="load")
    # the script is on air; the monitor shows it over WebRTC
    page.wait_for_selector("#events-pill[data-state=connected]", timeout=20_000)
    page.click("#watch")
    page.wait_for_selector("#watch[data-monitor=live]", timeout=30_000)
    page.wait_for_function(
        "() => { const v = document.querySelector('#monitor');"
        " return v && v.videoWidth === 256 && v.videoHeight === 320 && v.currentTime > 1; }",
        timeout=30_000,
    )
    # a viewer comments from the comment page; the operator sees it accepted and answered
    viewer = browser.new_page(viewport={"width": 390, "height": 844})
    viewer.goto(server + "/comment", wait_until="load")
    viewer.fill("#comment-name", "Ann")
    viewer.fill("#comment-text", "Where is your shop?")
    viewer.click("#comment-send")
    viewer.wait_for_selector("#comment-result[data-status=accepted]", timeout=10_000)
    assert "#1" in viewer.inner_text("#comment-result")
    viewer.screenshot(path=str(screenshot_path("livestream_comment.png", SHOTS)))
    viewer.fill("#comment-text", "click here for free followers")
    viewer.click("#comment-send")
    viewer.wait_for_selector("#comment-result[data-status=refused]", timeout=10_000)
    assert "free followers" not in viewer.inner_text("#comment-result")  # the blocked words are not echoed
    viewer.close()

    page.wait_for_selector("#now-kind[data-kind=comment]", timeout=60_000)
    assert "Harbour Road" in page.inner_text("#now-text")
    assert page.inner_text("#now-user").strip().endswith("Ann")
    log = page.inner_text("#event-log")
    assert "blocked" in log and "Ann" in log
    page.screenshot(path=str(screenshot_path("livestream_operator.png", SHOTS)))

    # pause and resume from the page
    page.click("#pause")
    page.wait_for_selector("#state-pill[data-state=paused]", timeout=5_000)
    page.click("#pause")
    page.wait_for_function(
        "() => document.querySelector('#state-pill').dataset.state !== 'paused'", timeout=5_000
    )
    with urllib.request.urlopen(server + "/api/status", timeout=5) as response:
        status = json.loads(response.read())
    assert status["frames"]["sent"] > 100 and status["state"] in ("speaking", "idle")
    assert not errors, errors
    page.close()


def test_monitor_survives_malformed_offers_and_frees_its_slot(server):
    """Issue 16: bad offers used to be 500s that each kept one of the 4 monitor slots."""
    import asyncio

    from aiortc import RTCSessionDescription

    from tests.support.loopback_ice import loopback_only
    from tests.support.offers import browser_like_offer, malformed_offers

    def post(body: bytes) -> tuple[int, dict]:
        request = urllib.request.Request(
            server + "/offer", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def monitors_open() -> int:
        with urllib.request.urlopen(server + "/api/status", timeout=5) as response:
            return json.loads(response.read())["monitors_open"]

    async def scenario():
        pc, valid = await browser_like_offer()
        refused = [(name, *post(body)) for name, (body, _phrase) in malformed_offers(valid).items()]
        after_bad = monitors_open()
        status, answer = await asyncio.to_thread(post, json.dumps({"sdp": valid, "type": "offer"}).encode())
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
        for _ in range(100):
            if pc.connectionState == "connected":
                break
            await asyncio.sleep(0.1)
        connected, while_open = pc.connectionState, monitors_open()
        await pc.close()
        for _ in range(150):
            if monitors_open() == 0:
                break
            await asyncio.sleep(0.1)
        return refused, after_bad, status, connected, while_open, monitors_open()

    from concurrent.futures import ThreadPoolExecutor

    with loopback_only(), ThreadPoolExecutor(1) as thread:  # Playwright's sync API owns this thread's loop
        refused, after_bad, status, connected, while_open, after_close = thread.submit(
            asyncio.run, asyncio.wait_for(scenario(), 60.0)
        ).result()
    assert len(refused) >= 20
    assert all(400 <= code < 500 and body["error"] for _name, code, body in refused), refused
    assert after_bad == 0
    assert status == 200 and connected == "connected" and while_open == 1
    assert after_close == 0
