"""The web console end to end: a real `python -m webui` driven by headless Chromium (Playwright).

One console on a free 127.0.0.1 port with a temporary library serves the whole module: create an
avatar through the page (photo upload, face preview, voice sample with its ASR transcript,
preview clip, save), render "Hello there." and fetch the page's <video> file back (video/mp4,
one H.264 stream, > 0.5 s, playable by Chromium), a photo with no face shows its error, the live
tab embeds a running `avatar serve`, which is stopped when the console exits, and a second console
with a password shows Gradio's login. Every request the page makes must stay on 127.0.0.1.

Chromium is Debian's (/usr/bin/chromium, scripts/install_browser.sh), launched by the `playwright`
package through `executable_path`: no browser download. Screenshots of each tab are written to
docs/images/webui_<tab>.png when AVATAR_UPDATE_SCREENSHOTS=1 (else a temporary folder).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from avatar.core.system_tools import free_port, stop_process
from tests.conftest import ROOT, SAMPLE_PORTRAIT, SAMPLE_VOICE, eval_file, screenshot_path

pytest.importorskip("gradio", reason="the webui extra is not installed (pip install -e '.[webui]')")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (dev extra)")

VIEWPORT = {"width": 1280, "height": 900}
CONSOLE_START_S = 60.0
LOOPBACK = ("127.0.0.1", "localhost")
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]


# --- processes -------------------------------------------------------------------------------------


def _find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _alive(pid: int) -> bool:
    """Running and not a zombie (a reaped or re-parented child is gone from /proc)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@contextmanager
def _console(tmp: Path, password: str | None = None):
    """`python -m webui` on a free port; yields (base URL, process)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("AVATAR_WEBUI_PASSWORD", "GRADIO_TEMP_DIR")}
    env["AVATAR_LOOPBACK_ONLY"] = "1"  # the live server it starts offers ICE on 127.0.0.1 (sandboxes, CI)
    if password:
        env["AVATAR_WEBUI_PASSWORD"] = password
    log = tmp / f"console-{port}.log"
    args = [sys.executable, "-m", "webui", "--library", str(tmp / "library"), "--port", str(port)]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        end = time.monotonic() + CONSOLE_START_S
        while True:
            if process.poll() is not None:
                raise AssertionError(
                    f"the console exited early ({process.returncode}):\n{log.read_text()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2):
                    break
            except OSError:
                if time.monotonic() > end:
                    raise AssertionError(f"the console did not answer:\n{log.read_text()[-3000:]}") from None
                time.sleep(0.25)
        yield url, process
    finally:
        stop_process(process, grace_s=20)


@pytest.fixture(scope="module")
def chromium() -> str:
    path = _find_chromium()
    if path is None:
        pytest.skip("chromium is not installed (run scripts/install_browser.sh)")
    return path


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    """The console under test; at teardown, the live server it started must be gone with it."""
    tmp = tmp_path_factory.mktemp("webui-e2e")
    state = {"tmp": tmp, "live_pids": []}
    with _console(tmp) as (url, process):
        state.update(url=url, process=process)
        yield state
    assert process.returncode is not None
    end = time.monotonic() + 10
    for pid in state["live_pids"]:
        while _alive(pid) and time.monotonic() < end:
            time.sleep(0.1)
        assert not _alive(pid), f"the live server (pid {pid}) outlived the console"


@pytest.fixture(scope="module")
def browser(chromium):
    with sync_api.sync_playwright() as playwright:
        args = [*CHROMIUM_ARGS, *(["--no-sandbox"] if os.geteuid() == 0 else [])]
        browser = playwright.chromium.launch(executable_path=chromium, args=args, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def page(browser, console):
    """One tab on the console for the whole module; records every URL it requests."""
    context = browser.new_context(viewport=VIEWPORT, permissions=["camera", "microphone"])
    page = context.new_page()
    page.requests = []
    page.on("request", lambda request: page.requests.append(request.url))
    page.set_default_timeout(30_000)
    page.goto(console["url"], wait_until="load")
    page.wait_for_selector("#tab-create", state="attached")
    try:
        yield page
    finally:
        context.close()


# --- page helpers ----------------------------------------------------------------------------------
def _status(page, element_id: str, timeout_s: float = 60.0) -> str:
    """The text of a status line once a handler has written it (✓ ... or ✗ ...)."""
    page.wait_for_function(
        """(id) => { const e = document.getElementById(id);
                     return e && /^[✓✗]/.test(e.innerText.trim()); }""",
        arg=element_id,
        timeout=timeout_s * 1000,
    )
    return page.inner_text(f"#{element_id}").strip()


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()
    page.wait_for_timeout(400)


def _screenshot(page, name: str) -> Path:
    path = screenshot_path(f"webui_{name}.png", Path(tempfile.gettempdir()) / "avatar-screenshots")
    page.mouse.move(5, 5)  # no hover highlight on the last button clicked
    page.wait_for_timeout(300)
    page.screenshot(path=str(path), full_page=True)
    return path


def _fill(page, element_id: str, text: str) -> None:
    page.locator(f"#{element_id}").locator("textarea, input").first.fill(text)


@pytest.fixture(scope="module")
def created(page):
    """Create "Mona" through the page; returns what the page showed along the way."""
    _tab(page, "Create avatar")
    page.set_input_files("#photo-upload input[type=file]", str(SAMPLE_PORTRAIT))
    photo_status = _status(page, "photo-status")
    preview_src = page.get_attribute("#face-preview img", "src")
    page.set_input_files("#voice-input input[type=file]", str(SAMPLE_VOICE))
    voice_status = _status(page, "voice-status", 90)
    transcript = page.input_value("#voice-transcript textarea")
    _fill(page, "avatar-name", "Mona")
    _fill(page, "avatar-persona", "You are Mona, a friendly museum guide. Answer in one sentence.")
    page.click("#preview-button")
    preview_status = _status(page, "preview-status", 120)
    page.wait_for_selector("#preview-video video")
    page.click("#save-button")
    save_status = _status(page, "save-status", 60)
    page.wait_for_timeout(500)
    _screenshot(page, "create")
    return {
        "photo": photo_status,
        "preview_src": preview_src,
        "voice": voice_status,
        "transcript": transcript,
        "preview": preview_status,
        "save": save_status,
    }


# --- tests -----------------------------------------------------------------------------------------
def test_create_avatar_through_the_page(created):
    assert created["photo"].startswith("✓ 1 face found"), created["photo"]
    assert created["preview_src"], "no face preview image"
    assert created["voice"].startswith("✓ 7.7 s"), created["voice"]
    assert "formal review" in created["transcript"].lower(), created["transcript"]
    assert created["preview"].startswith("✓ preview clip in the matched voice"), created["preview"]
    assert created["save"].startswith("✓ saved Mona"), created["save"]


def test_library_lists_the_new_avatar(page, created):
    _tab(page, "Library")
    page.wait_for_selector("#library-gallery img")
    assert "Mona" in page.inner_text("#library-gallery")
    assert "voice_sample.flac" in page.inner_text("#library-details")
    _screenshot(page, "library")


def test_render_hello_there(page, created, console):
    from tests.support.media_probe import probe_media

    _tab(page, "Render")
    assert page.input_value("#render-pick input") == "Mona"
    _fill(page, "render-text", "Hello there.")
    page.get_by_role("button", name="[happy]", exact=True).click()
    page.wait_for_function("document.querySelector('#render-text textarea').value.endsWith('[happy] ')")
    _fill(page, "render-text", "Hello there.")
    size = page.locator("#render-size input[type=number]")
    size.fill("256")
    size.press("Enter")
    page.click("#render-button")
    status = _status(page, "render-status", 120)
    assert status.startswith("✓ rendered"), status
    video = page.locator("#render-video video")
    video.wait_for()
    page.wait_for_function(
        "(() => { const v = document.querySelector('#render-video video');"
        " return v && v.readyState >= 1 && v.duration > 0.5; })()"
    )  # Chromium itself loaded the file's metadata: playable in the page
    src = urllib.parse.urljoin(console["url"], video.get_attribute("src"))
    assert urllib.parse.urlsplit(src).hostname == "127.0.0.1", src
    with urllib.request.urlopen(src, timeout=10) as response:
        assert response.headers.get_content_type() == "video/mp4"
        data = response.read()
    downloaded = console["tmp"] / "downloaded.mp4"
    downloaded.write_bytes(data)
    info = probe_media(downloaded)
    videos = info.of_kind("video")
    assert len(videos) == 1 and videos[0].codec_name == "h264", info
    assert info.duration_s is not None and info.duration_s > 0.5, info
    assert max(videos[0].width, videos[0].height) == 256, videos[0]
    assert page.locator("#render-file a").count() >= 1  # the download link
    _screenshot(page, "render")


def test_photo_without_a_face_shows_the_error(page, created):
    cup = eval_file("faces/no_face_coffee_cup.png")
    _tab(page, "Create avatar")
    page.click("#photo-upload button[aria-label=Clear]")  # replace the portrait, as a user would
    page.wait_for_selector("#photo-upload input[type=file]", state="attached")
    page.set_input_files("#photo-upload input[type=file]", str(cup))
    page.wait_for_function(
        "document.getElementById('photo-status').innerText.includes('no_face_coffee_cup.png')", timeout=60_000
    )
    status = _status(page, "photo-status")
    assert status.startswith("✗ no face found in no_face_coffee_cup.png"), status
    assert "\n" not in status
    assert page.locator("#face-preview img").count() == 0  # the old preview is cleared


def test_webcam_photo_is_checked(page, created):
    """Chromium's fake camera (a moving green pattern, no face) through the webcam source."""
    _tab(page, "Create avatar")
    page.get_by_role("tab", name="Take a photo").click()
    page.get_by_text("Click to Access Webcam").click()
    page.wait_for_function(
        "(() => { const v = document.querySelector('#photo-webcam video');"
        " return v && v.readyState >= 2 && v.videoWidth > 0; })()"
    )  # the camera is streaming: a capture now holds a frame
    page.locator("#photo-webcam button[aria-label='capture photo']").click()
    page.wait_for_function(
        "document.getElementById('photo-status').innerText.includes('image.png')", timeout=60_000
    )
    status = _status(page, "photo-status")
    assert status.startswith("✗ no face found in image.png"), status
    page.get_by_role("tab", name="Upload").click()


def test_live_tab_embeds_the_live_server(page, created, console):
    _tab(page, "Live")
    assert page.input_value("#live-pick input") == "Mona"
    page.click("#live-start")
    page.wait_for_function(
        "/Live server: [✓✗]/.test(document.getElementById('live-status').innerText)", timeout=120_000
    )
    status = page.inner_text("#live-status").strip()
    assert "✓ serving mona at http://127.0.0.1:" in status, status
    pid = int(status.split("(pid ")[1].split(")")[0])
    console["live_pids"].append(pid)
    frame = page.locator("#live-frame iframe")
    assert frame.get_attribute("allow") == "microphone; autoplay"
    live_url = frame.get_attribute("src")
    assert urllib.parse.urlsplit(live_url).hostname == "127.0.0.1"
    with urllib.request.urlopen(urllib.parse.urljoin(live_url, "/health"), timeout=5) as response:
        assert json.loads(response.read())["persona"] == "Mona"
    inner = page.frame_locator("#live-frame iframe")
    inner.locator("#connect").click()  # the iframe may use the microphone: WebRTC connects
    live_page = next(frame for frame in page.frames if frame.url.startswith(live_url.rstrip("/")))
    live_page.wait_for_function(
        "window.avatarPage && window.avatarPage.phase === 'connected'", timeout=30_000
    )
    live_page.wait_for_function("document.getElementById('avatar').videoWidth > 0", timeout=30_000)
    page.wait_for_timeout(1500)
    _screenshot(page, "live")
    inner.locator("#connect").click()  # disconnect
    live_page.wait_for_function("window.avatarPage.phase === 'idle'", timeout=10_000)
    # Left running on purpose: the console fixture checks it dies with the console.


class _FakeModels(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"data": [{"id": "qwen2.5-7b-instruct"}]}).encode()
        self.send_response(200 if self.path == "/v1/models" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_settings_engines_and_llm_connection(page):
    _tab(page, "Settings")
    table = page.inner_text("#engines-table")
    assert "Piper English voice" in table and "✓ embedded" in table
    from webui import health

    neural = [status for status in health.probe_neural() if not status.available]
    for name in ("SenseVoiceSmall", "CosyVoice 2", "Wav2Lip"):
        assert name in table
    assert table.count("✗ not set up") == len(neural) >= 6  # the six weight engines, at least
    closed = free_port()
    _fill(page, "llm-url", f"http://127.0.0.1:{closed}/v1")
    page.click("#llm-test")
    assert _status(page, "llm-result", 20).startswith("✗ unreachable")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeModels)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _fill(page, "llm-url", f"http://127.0.0.1:{server.server_address[1]}/v1")
        page.click("#llm-test")
        page.wait_for_function(
            "document.getElementById('llm-result').innerText.includes('reachable: HTTP 200')"
        )
        result = page.inner_text("#llm-result").strip()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert result.startswith("✓ reachable: HTTP 200") and "qwen2.5-7b-instruct" in result, result
    _screenshot(page, "settings")


def test_the_page_only_talks_to_this_machine(page):
    """Run last in the module: every request of every tab (and the embedded live page) so far."""
    assert len(page.requests) > 20
    outside = [
        url
        for url in page.requests
        if not url.startswith(("data:", "blob:")) and urllib.parse.urlsplit(url).hostname not in LOOPBACK
    ]
    assert not outside, outside


def test_password_shows_the_login_page(browser, tmp_path):
    with _console(tmp_path, password="s3cret") as (url, _process):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + "config", timeout=5)
        assert refused.value.code == 401
        context = browser.new_context(viewport=VIEWPORT)
        try:
            page = context.new_page()
            page.goto(url)
            page.wait_for_selector("input[type=password]")
            assert page.locator("#tab-create").count() == 0
            user = page.locator("input:not([type=password])").first
            user.fill("anyone")  # any user name: only the password is checked
            page.fill("input[type=password]", "wrong")
            page.get_by_role("button", name="Login").click()
            page.get_by_text("Incorrect Credentials").wait_for()
            user.fill("anyone")  # the form clears both fields after a failure
            page.fill("input[type=password]", "s3cret")
            page.get_by_role("button", name="Login").click()
            page.wait_for_selector("#tab-create", state="attached")
        finally:
            context.close()
