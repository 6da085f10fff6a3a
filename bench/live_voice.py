"""The voice of bench/live_latency.py's server: its own (Piper), or a cloned voice on a known clock.

Issue 15 asks whether a cloned voice that streams (first chunk after 150 ms) moves the mouth
sooner at the WebRTC receiver than the same voice giving whole sentences (after 1.5 s), and
whether a barge-in during a stream falls silent as fast as with Piper. `--voice fake-cosyvoice`
starts the CosyVoice stand-in server (tests/support/streaming_voice.py) in its own process and
points `avatar serve --tts cosyvoice-http` at it; `--no-tts-stream` makes the server speak whole
sentences; `--no-speech-cache` makes it say every sentence anew (the stub's reply is the same
every turn, and the cache would otherwise answer from memory after the first);
`--barge-in-after-s 0.3` talks over the reply while the voice still streams its first sentence.

    nice -n 10 .venv/bin/python -m bench.live_latency --llm stub --questions synthetic \\
        --voice fake-cosyvoice --no-speech-cache --barge-in-after-s 0.3 \\
        --turns 10 --barge-ins 10 --capacity ''

Kept apart from bench/live_latency.py, which only adds these options and the voice's report.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from avatar.core.system_tools import free_port, stop_process

ROOT = Path(__file__).resolve().parents[1]
VOICES = ("embedded", "fake-cosyvoice")
VOICE_START_TIMEOUT_S = 60.0


def add_voice_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("voice (issue 15: a streaming cloned voice against whole sentences)")
    group.add_argument(
        "--voice",
        choices=VOICES,
        default="embedded",
        help="embedded: the server's Piper voice (default); fake-cosyvoice: --tts cosyvoice-http against "
        "a CosyVoice stand-in on loopback that speaks on the clock of --first-chunk-s / --sentence-s",
    )
    group.add_argument(
        "--first-chunk-s", type=float, default=0.15, help="fake-cosyvoice: a sentence's first audio"
    )
    group.add_argument(
        "--sentence-s", type=float, default=1.5, help="fake-cosyvoice: a sentence's last audio"
    )
    group.add_argument(
        "--no-tts-stream",
        action="store_true",
        help="avatar serve --no-tts-stream: the cloned voice speaks whole sentences",
    )
    group.add_argument(
        "--barge-in-after-s",
        type=float,
        default=1.0,
        help="barge-ins talk over the reply this long after its first sound arrived (default 1.0; "
        "0.3 lands while the voice still streams the first sentence)",
    )
    group.add_argument(
        "--no-speech-cache",
        action="store_true",
        help="avatar serve --no-speech-cache: every sentence synthesized anew",
    )


def check_voice_options(args: argparse.Namespace) -> None:
    """Combinations that would measure something else than asked, refused in one line."""
    if args.url and (args.voice != "embedded" or args.no_speech_cache):
        raise SystemExit(
            "--voice and --no-speech-cache choose how the benchmark starts its server: not with --url"
        )
    if args.no_tts_stream and args.voice == "embedded":
        raise SystemExit("--no-tts-stream changes only a cloned voice: add --voice fake-cosyvoice")
    if not 0 <= args.barge_in_after_s <= 10:
        raise SystemExit("--barge-in-after-s must be between 0 and 10 s")
    if not 0 <= args.first_chunk_s <= args.sentence_s:
        raise SystemExit("need 0 <= --first-chunk-s <= --sentence-s")


@contextlib.contextmanager
def voice_server(args: argparse.Namespace, stem: Path) -> Iterator[tuple[list[str], dict]]:
    """Yields the `avatar serve` arguments for the voice and the voice's report; with
    fake-cosyvoice, the report gets the stand-in's requests (and how many a client hung up on)
    once it has stopped, so the avatar server must be stopped inside this block. The stand-in's
    log and requests go to `stem`.voice.log and `stem`.voice_requests.json."""
    serve_args = ["--no-speech-cache"] if args.no_speech_cache else []
    report: dict = {
        "voice": args.voice,
        "tts_stream": not args.no_tts_stream,
        "speech_cache": not args.no_speech_cache,
    }
    if args.voice == "embedded":
        yield serve_args, report
        return
    from bench.cosyvoice_streaming import SAMPLE_TEXT, SAMPLE_VOICE

    port, record = free_port(), stem.with_suffix(".voice_requests.json")
    command = [sys.executable, "-m", "tests.support.streaming_voice", "--port", str(port)]
    command += ["--first-chunk-s", str(args.first_chunk_s), "--sentence-s", str(args.sentence_s)]
    command += ["--record", str(record)]
    url = f"http://127.0.0.1:{port}"
    with stem.with_suffix(".voice.log").open("w") as log:
        child = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_voice(url, child)
            serve_args += ["--tts", "cosyvoice-http", "--cosyvoice-url", url]
            serve_args += ["--voice", str(SAMPLE_VOICE), "--voice-text", SAMPLE_TEXT]
            serve_args += ["--no-tts-stream"] if args.no_tts_stream else []
            report.update(first_chunk_s=args.first_chunk_s, sentence_s=args.sentence_s)
            yield serve_args, report
        finally:
            stop_process(child, grace_s=10)
    if record.exists():
        requests = json.loads(record.read_text())
        report["voice_requests"] = len(requests)
        report["voice_requests_aborted"] = sum(bool(r.get("aborted")) for r in requests)


def wait_for_voice(url: str, child: subprocess.Popen) -> None:
    deadline = time.monotonic() + VOICE_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"the voice stand-in exited with {child.returncode}; see voice.log")
        try:
            with urllib.request.urlopen(f"{url}/docs", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"the voice stand-in did not answer within {VOICE_START_TIMEOUT_S:.0f} s")
