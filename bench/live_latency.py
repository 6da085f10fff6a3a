"""Live conversation latency and capacity, measured from a headless WebRTC client.

Starts `avatar serve` as a separate process on 127.0.0.1 (so the server gets its own interpreter
and GIL, as in production; the client's decoding still shares this machine's cores) or uses
--url, then drives it with `tests.support.live_probe_client.LiveProbe`:

1. turns: speech end -> first avatar audio / first lip-synced frame, A/V offset (p50/p95);
2. barge-in: talk over the reply, time until the avatar is silent at the receiver (p50/p95);
3. capacity: N clients for a 20 s window with one question each; a session is real time when
   it receives >= 24 video fps and its audio has no gap > 100 ms and no missing packets.

The question is synthesized with the project's Piper voice ("What are your opening hours?"),
which is in the domain of assets/knowledge/shop_faq.md, so the same audio serves --llm stub
and --llm answerer.

    .venv/bin/python -m bench.live_latency --llm stub --turns 20 --barge-ins 20 --capacity 1,2,4
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from avatar.core.system_tools import free_port, stop_process

ROOT = Path(__file__).resolve().parents[1]
QUESTION_TEXT = "What are your opening hours?"
SERVER_START_TIMEOUT_S = 120.0
CAPACITY_WINDOW_S = 20.0
REALTIME_MIN_FPS = 24.0
REALTIME_MAX_AUDIO_GAP_MS = 100.0
SERVER_SCRIPT = (
    "import sys; from avatar.live.ice import install_loopback_only; install_loopback_only(); "
    "from avatar.cli import main; sys.exit(main(sys.argv[1:]))"
)


def synthesize_question(text: str = QUESTION_TEXT) -> np.ndarray:
    """The question as 16 kHz float PCM with 0.5 s of silence either side."""
    from avatar.core.audio_io import resample
    from voices.piper_tts import PiperTTS

    tts = PiperTTS().load()
    speech = tts.synthesize(text)
    pcm = resample(speech.audio.pcm.astype(np.float32), speech.audio.sample_rate_hz, 16000)
    pad = np.zeros(8000, np.float32)
    return np.concatenate([pad, pcm.astype(np.float32), pad])


def top_square(photo: Path, folder: Path) -> Path:
    """The photo's top square (a portrait's face is in its upper part), so frames come out square."""
    import cv2

    image = cv2.imread(str(photo))
    if image is None:
        raise SystemExit(f"cannot read {photo}")
    height, width = image.shape[:2]
    side = min(height, width)
    x0 = (width - side) // 2
    y0 = max(0, min((height - side) // 4, height - side))
    out = folder / f"{photo.stem}_square.png"
    cv2.imwrite(str(out), image[y0 : y0 + side, x0 : x0 + side])
    return out


@contextlib.contextmanager
def server_process(args: argparse.Namespace, log_path: Path):
    """`avatar serve` in a child process with loopback-only ICE; yields its URL, stops it after."""
    port = free_port()
    command = [sys.executable, "-c", SERVER_SCRIPT, "serve", "--photo", str(args.photo)]
    command += ["--size", str(args.size), "--port", str(port), "--llm", args.llm, "--max-sessions", "16"]
    if args.llm == "answerer":
        command += ["--knowledge", str(args.knowledge)]
    with log_path.open("w") as log:
        child = subprocess.Popen(
            command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ)
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for_health(url, child)
            yield url
        finally:
            stop_process(child, grace_s=15)


def wait_for_health(url: str, child: subprocess.Popen) -> None:
    import urllib.request

    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"the server exited with {child.returncode}; see its log")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"the server did not answer /health within {SERVER_START_TIMEOUT_S:.0f} s")


async def measure_turns(url: str, question: np.ndarray, turns: int, barge_ins: int) -> tuple[list, list]:
    from tests.support.live_probe_client import LiveProbe

    async with LiveProbe(url) as probe:
        await asyncio.sleep(1.0)
        plain = [await probe.measure_turn(question, t) for t in range(turns)]
        barged = [await probe.measure_barge_in(question, question, t) for t in range(barge_ins)]
    return plain, barged


@contextlib.contextmanager
def counting_video_decoders():
    """Clients that count video frames instead of decoding them (this process only).

    In production each client is a browser on its own machine; here every probe shares the
    server's two cores, and decoding 4-5 VP8 streams (plus converting each picture) costs the
    client process about half a core, which the server then lacks. With this, a probe still gets
    one (tiny, blank) frame per received encoded frame with its RTP timestamp, so frame rates, pts
    and gaps are measured exactly as before; only the picture content is gone, so the capacity run
    reports no lip-sync or A/V offset figures (the latency runs decode normally).
    """
    import av
    from aiortc import rtcrtpreceiver
    from aiortc.mediastreams import VIDEO_TIME_BASE

    original = rtcrtpreceiver.get_decoder

    class CountingDecoder:
        def decode(self, encoded_frame):
            frame = av.VideoFrame(16, 16, "yuv420p")
            frame.pts = encoded_frame.timestamp
            frame.time_base = VIDEO_TIME_BASE
            return [frame]

    def get_decoder(codec):
        return CountingDecoder() if codec.mimeType.lower().startswith("video/") else original(codec)

    rtcrtpreceiver.get_decoder = get_decoder
    try:
        yield
    finally:
        rtcrtpreceiver.get_decoder = original


async def measure_capacity(url: str, question: np.ndarray, clients: int) -> list[dict]:
    """`clients` sessions over one window, one question each (staggered), real-time stats each."""
    from tests.support.live_probe_client import LiveProbe

    probes = [LiveProbe(url, client_index=i) for i in range(clients)]
    try:
        for probe in probes:
            await probe.connect()
        await asyncio.sleep(1.0)
        start_s = time.monotonic()
        stagger_s = min(2.0, CAPACITY_WINDOW_S / (2 * clients))

        async def ask(index: int) -> None:
            await asyncio.sleep(index * stagger_s)
            probes[index].mic.play(question)

        await asyncio.gather(*(ask(i) for i in range(clients)))
        await asyncio.sleep(max(0.0, start_s + CAPACITY_WINDOW_S - time.monotonic()))
        stats = [probe.realtime_stats(start_s, start_s + CAPACITY_WINDOW_S) for probe in probes]
        for probe, item in zip(probes, stats, strict=True):
            item["replied"] = any(e.get("type") == "turn_rendered" for _, e in probe.events)
            item["realtime"] = (
                item["video_fps"] >= REALTIME_MIN_FPS
                and item["audio_max_gap_ms"] <= REALTIME_MAX_AUDIO_GAP_MS
                and item["audio_pts_jumps"] == 0
            )
        return stats
    finally:
        await asyncio.gather(*(probe.close() for probe in probes), return_exceptions=True)


def main(argv: list[str] | None = None) -> int:
    from tests.support.live_probe_analysis import summarize

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="use a running server instead of starting one")
    parser.add_argument("--llm", choices=("stub", "answerer"), default="stub")
    parser.add_argument("--knowledge", type=Path, default=ROOT / "assets/knowledge/shop_faq.md")
    parser.add_argument("--photo", type=Path, default=ROOT / "assets/sample_portrait.jpg")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--barge-ins", type=int, default=20)
    parser.add_argument(
        "--capacity", default="1,2,4", help="client counts to try, comma separated ('' = skip)"
    )
    parser.add_argument("--out", type=Path, help="JSON results")
    parser.add_argument(
        "--light-clients",
        action="store_true",
        help="capacity clients count video frames without decoding them (see counting_video_decoders)",
    )
    parser.add_argument(
        "--keep-aspect",
        action="store_true",
        help="use the photo as it is (default: its top square, so frames are size x size as the target says)",
    )
    args = parser.parse_args(argv)

    from avatar.live.ice import install_loopback_only

    install_loopback_only()
    question = synthesize_question()
    report: dict = {"llm": args.llm, "size_px": args.size, "cores": os.cpu_count()}
    log_path = Path(args.out or "live_latency").with_suffix(".server.log")
    with contextlib.ExitStack() as stack:
        if not args.keep_aspect and not args.url:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            args.photo = top_square(args.photo, folder)
        report["photo"] = str(args.photo)
        url = args.url or stack.enter_context(server_process(args, log_path))
        plain, barged = asyncio.run(measure_turns(url, question, args.turns, args.barge_ins))
        report["turns"] = [asdict(r) for r in plain + barged]
        report["summary_turns"] = summarize(plain)
        report["summary_barge_in"] = summarize(barged)
        print(
            json.dumps({"turns": report["summary_turns"], "barge_in": report["summary_barge_in"]}, indent=1)
        )
        capacity = {}
        for clients in [int(c) for c in args.capacity.split(",") if c.strip()]:
            with counting_video_decoders() if args.light_clients else contextlib.nullcontext():
                stats = asyncio.run(measure_capacity(url, question, clients))
            capacity[clients] = stats
            print(clients, json.dumps(stats), flush=True)
        report["capacity"] = capacity
        report["capacity_clients"] = "counting (no video decode)" if args.light_clients else "decoding"
    if args.out:
        args.out.write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
