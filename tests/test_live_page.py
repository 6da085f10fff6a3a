"""The built-in conversation page, end to end in real headless Chromium against a real `avatar serve`.

Chromium's fake microphone plays a recorded question (the JFK clip, padded with silence, looped by
Chromium); the page must connect over WebRTC, show the user's transcript and the avatar's reply, play
the avatar's video, and handle the Interrupt button. Chromium is driven through the DevTools protocol
over a websocket (aiohttp, already a dependency of the live extra), so no browser-automation package
or browser download is needed: only Debian's `chromium` (scripts/install_browser.sh).
A screenshot taken during the conversation is written to docs/images/live_page.png when
AVATAR_UPDATE_SCREENSHOTS=1 (else to a temporary folder, so test runs leave the tree clean).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest

from avatar.core.system_tools import free_port, stop_process
from tests.conftest import ROOT, SAMPLE_PORTRAIT, eval_file, screenshot_path

pytest.importorskip("aiortc", reason="the live extra is not installed (pip install -e '.[live]')")
aiohttp = pytest.importorskip("aiohttp", reason="the live extra is not installed (pip install -e '.[live]')")

SCREENSHOT = screenshot_path("live_page.png", Path(tempfile.gettempdir()) / "avatar-screenshots")
VIEWPORT = (1280, 800)
SERVER_START_S = 90.0
CONVERSATION_S = 60.0
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}",
]


# --- processes -------------------------------------------------------------------------------------
def _find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    path = _find_chromium()
    if path is None:
        can_install = shutil.which("apt-get") and (os.geteuid() == 0 or shutil.which("sudo"))
        if can_install:
            subprocess.run(
                ["bash", str(ROOT / "scripts" / "install_browser.sh")],
                timeout=900,
                check=False,
                stdin=subprocess.DEVNULL,
            )
            path = _find_chromium()
    if path is None:
        pytest.skip("chromium is not installed and could not be installed (run scripts/install_browser.sh)")
    return path


@pytest.fixture(scope="module")
def fake_microphone(tmp_path_factory) -> Path:
    """The JFK clip's first phrase as 48 kHz mono 16-bit WAV, padded with silence; Chromium loops it.

    Only "And so, my fellow Americans" (the first 2.9 s): the clip pauses for a second there, which
    ends the user's turn, and the next phrase would barge in on it before its transcript is out.
    1 s of silence, the phrase, then 9 s of silence: the avatar's reply plays out before it repeats.
    """
    source = eval_file("speech/en_male_jfk.flac")
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    out = tmp_path_factory.mktemp("fake-mic") / "question.wav"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-i",
            str(source),
            "-af",
            "atrim=0:2.9,afade=t=out:st=2.7:d=0.2,adelay=1000:all=1,apad=pad_dur=9",
            "-ar",
            "48000",
            "-ac",
            "1",
            "-c:a",
            "pcm_s16le",
            str(out),
        ],
        check=True,
        timeout=60,
    )
    return out


def _get_json(url: str, timeout: float = 2.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def _wait_json(url: str, deadline_s: float, process: subprocess.Popen, log: Path):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if process.poll() is not None:
            raise AssertionError(
                f"{process.args[0]} exited early ({process.returncode}):\n{log.read_text()[-3000:]}"
            )
        try:
            return _get_json(url)
        except (OSError, ValueError):
            time.sleep(0.25)
    raise AssertionError(f"{url} did not answer within {deadline_s:.0f} s:\n{log.read_text()[-3000:]}")


@contextmanager
def _process(args: list[str], log: Path):
    with log.open("wb") as sink:
        process = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        yield process
    finally:
        stop_process(process, grace_s=10)


@contextmanager
def _serve(logs: Path, *extra: str):
    """`avatar serve --llm stub` on a free localhost port; yields its base URL."""
    port = free_port()
    log = logs / f"serve-{port}.log"
    args = [sys.executable, "-m", "avatar", "serve", "--photo", str(SAMPLE_PORTRAIT), "--host", "127.0.0.1",
            "--port", str(port), "--llm", "stub", *extra]  # fmt: skip
    with _process(args, log) as process:
        _wait_json(f"http://127.0.0.1:{port}/health", SERVER_START_S, process, log)
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def browser(chromium, fake_microphone, tmp_path_factory) -> int:
    """Headless Chromium whose microphone is the recorded question; yields its DevTools port."""
    home = tmp_path_factory.mktemp("chromium")
    port = free_port()
    args = [chromium, *CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={fake_microphone}",
            f"--user-data-dir={home / 'profile'}", f"--remote-debugging-port={port}", "about:blank"]  # fmt: skip
    with _process(args, home / "chromium.log") as process:
        _wait_json(f"http://127.0.0.1:{port}/json/version", 30, process, home / "chromium.log")
        yield port


# --- a minimal DevTools-protocol client ---------------------------------------------------------------
class DevTools:
    """Commands over Chromium's DevTools websocket, with one page session attached (flat mode)."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.next_id = 0
        self.pending: dict[int, asyncio.Future] = {}
        self.session_id: str | None = None
        self.console: list[str] = []
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            future = self.pending.pop(data.get("id"), None)
            if future is not None and not future.done():
                future.set_result(data)
            elif data.get("method") == "Runtime.exceptionThrown":
                self.console.append(str(data["params"]["exceptionDetails"])[:500])
            elif data.get("method") == "Runtime.consoleAPICalled":
                args = data["params"].get("args", [])
                self.console.append(
                    " ".join(str(a.get("value", a.get("description", ""))) for a in args)[:500]
                )

    async def send(self, method: str, timeout: float = 30.0, page: bool = True, **params):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if page and self.session_id:
            message["sessionId"] = self.session_id
        future = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = future
        await self.ws.send_str(json.dumps(message))
        reply = await asyncio.wait_for(future, timeout)
        if "error" in reply:
            raise AssertionError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    async def js(self, expression: str):
        """Evaluate in the page as if from a user gesture (clicks may start audio)."""
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True, userGesture=True
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")


PAGE_STATE = """(() => {
  const q = (sel) => [...document.querySelectorAll(sel)];
  const v = document.getElementById('avatar');
  const err = document.getElementById('error');
  if (!v || !err || !window.avatarPage) return {phase: null, error: null};
  return {
    phase: window.avatarPage && window.avatarPage.phase,
    user: q('.msg.user:not(.pending) .text').map((e) => e.textContent),
    avatar: q('.msg.avatar .text').map((e) => e.textContent).filter((t) => t.trim()),
    interrupted: q('.msg.avatar.interrupted .note').map((e) => e.textContent),
    voice: q('.msg.avatar .chip.voice').map((e) => [e.textContent, e.title]),
    error: err.classList.contains('show') ? err.textContent : null,
    videoTime: v.currentTime, videoWidth: v.videoWidth, paused: v.paused,
    speaking: document.getElementById('stage').classList.contains('speaking'),
    serverLatency: document.getElementById('latServer').textContent,
    clientLatency: document.getElementById('latClient').textContent,
    events: (window.avatarPage ? window.avatarPage.events : []).map((e) => e.type),
  };
})()"""


async def _wait_for(
    tools: DevTools, condition, timeout_s: float, what: str, allow_error: bool = False
) -> dict:
    end = time.monotonic() + timeout_s
    state = {}
    while time.monotonic() < end:
        state = await tools.js(PAGE_STATE)
        assert allow_error or not state["error"], f"the page shows an error: {state['error']}"
        if condition(state):
            return state
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}; page state: {state}")


@asynccontextmanager
async def _page(devtools_port: int, url: str, viewport: tuple[int, int] = VIEWPORT):
    """A new tab showing `url`, loaded; yields its DevTools client."""
    version = await asyncio.to_thread(_get_json, f"http://127.0.0.1:{devtools_port}/json/version")
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(version["webSocketDebuggerUrl"], max_msg_size=64 * 1024 * 1024) as ws,
    ):
        tools = DevTools(ws)
        target = await tools.send("Target.createTarget", page=False, url="about:blank")
        attached = await tools.send(
            "Target.attachToTarget", page=False, targetId=target["targetId"], flatten=True
        )
        tools.session_id = attached["sessionId"]
        await tools.send("Runtime.enable")
        await tools.send(
            "Emulation.setDeviceMetricsOverride", width=viewport[0], height=viewport[1], deviceScaleFactor=1,
            mobile=viewport[0] < 600,
        )  # fmt: skip
        await tools.send("Page.enable")
        await tools.send("Page.navigate", url=url)
        await _wait_for(tools, lambda s: s["phase"] == "idle", 15, "the page to load")
        try:
            yield tools
        finally:
            await tools.send("Target.closeTarget", page=False, targetId=target["targetId"])
            tools.reader.cancel()


async def _screenshot(tools: DevTools, path: Path) -> None:
    shot = await tools.send("Page.captureScreenshot", format="png", captureBeyondViewport=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


async def _conversation(devtools_port: int, url: str) -> dict:
    async with _page(devtools_port, url) as tools:
        started = time.monotonic()
        await tools.js("document.getElementById('connect').click()")
        await _wait_for(tools, lambda s: s["phase"] == "connected", 20, "the WebRTC connection")

        def answered(state: dict) -> bool:
            heard = any("fellow america" in text.lower() for text in state["user"])
            return heard and bool(state["avatar"])

        await _wait_for(tools, answered, CONVERSATION_S, "the user's transcript and the avatar's reply")
        answered_s = time.monotonic() - started

        # The video plays: frames of the photo's size, and its clock advances.
        first = await _wait_for(tools, lambda s: s["videoWidth"] > 0 and not s["paused"], 10, "video frames")
        await asyncio.sleep(1.0)
        second = await tools.js(PAGE_STATE)
        assert second["videoTime"] > first["videoTime"] + 0.5, (first["videoTime"], second["videoTime"])

        # The looped microphone asks again; press Interrupt while the avatar is answering it.
        await _wait_for(
            tools, lambda s: len(s["user"]) >= 2 and len(s["avatar"]) >= 2 and s["speaking"], 30,
            "the second reply to be audible",
        )  # fmt: skip
        await asyncio.sleep(0.5)
        await tools.js("document.getElementById('interrupt').click()")
        try:
            interrupted = await _wait_for(tools, lambda s: bool(s["interrupted"]), 5, "an interrupted reply")
        except AssertionError:
            interrupted = None  # the reply had already ended: nothing to mark, and no error shown
        await asyncio.sleep(0.8)  # let the speaking ring fade before the screenshot

        await _screenshot(tools, SCREENSHOT)
        final = await tools.js(PAGE_STATE)
        await tools.js("document.getElementById('connect').click()")  # disconnect cleanly
        return {
            "answered_s": answered_s,
            "interrupted": interrupted,
            "final": final,
            "console": tools.console,
        }


def test_live_page_conversation_in_headless_chromium(browser, tmp_path):
    with _serve(tmp_path) as url:
        result = asyncio.run(asyncio.wait_for(_conversation(browser, url + "/"), 120))
    final = result["final"]
    print(json.dumps({k: v for k, v in result.items() if k != "final"}, indent=1))
    assert final["error"] is None, final["error"]
    assert any("fellow america" in text.lower() for text in final["user"]), final["user"]
    assert final["avatar"]
    # Each reply shows its voice's time to first audio (tts_first_chunk), Piper's whole sentences here.
    assert final["voice"], final
    for label, title in final["voice"]:
        assert re.fullmatch(r"voice \d+ ms", label) and title.endswith("(whole sentences)"), (label, title)
    if result["interrupted"] is not None:
        assert any("Interrupt button" in note for note in final["interrupted"]), final["interrupted"]
    assert final["clientLatency"].endswith("s"), final["clientLatency"]
    assert SCREENSHOT.stat().st_size > 10_000


async def _token_flow(devtools_port: int, url: str) -> list[str]:
    """Connect without a token, with a wrong one, then the right one; returns the errors shown."""
    shown = []
    async with _page(devtools_port, url) as tools:
        # The page asks /health whether a token is needed right after loading: wait for it.
        for _ in range(100):
            if await tools.js("document.getElementById('tokenBox').classList.contains('show')"):
                break
            await asyncio.sleep(0.1)
        assert await tools.js("document.getElementById('tokenBox').classList.contains('show')")
        for token in ("", "wrong-token"):
            await tools.js(f"document.getElementById('token').value = {json.dumps(token)}")
            await tools.js("document.getElementById('connect').click()")
            state = await _wait_for(tools, lambda s: s["phase"] == "error", 20, "an error", allow_error=True)
            shown.append(state["error"])
        await tools.js("document.getElementById('token').value = 's3cret'")
        await tools.js("document.getElementById('connect').click()")
        await _wait_for(tools, lambda s: s["phase"] == "connected", 20, "the WebRTC connection")
        await tools.js("document.getElementById('connect').click()")
        await _wait_for(tools, lambda s: s["phase"] == "idle", 10, "the disconnection")
    return shown


def test_live_page_token_and_error_messages(browser, tmp_path):
    with _serve(tmp_path, "--token", "s3cret") as url:
        # With --token the page itself needs it (avatar.playout.http_edge): open it with ?token=,
        # as a shared link would; the flow then clears the field and types a wrong one.
        missing, wrong = asyncio.run(asyncio.wait_for(_token_flow(browser, url + "/?token=s3cret"), 90))
    assert "requires an access token" in missing
    assert "401" in wrong and "token" in wrong
