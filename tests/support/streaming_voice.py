"""The CosyVoice stand-in server (tests/fake_cosyvoice.py) speaking on a clock, as its own process.

A live benchmark over WebRTC (bench/live_latency.py --voice fake-cosyvoice) needs a cloned voice
whose timing is known: each sentence's first piece (0.5 s of audio) after --first-chunk-s, its
last piece at --sentence-s, the others evenly between, 80 ms of audio per character (so a stream
never runs dry), exactly as bench/cosyvoice_streaming.py's in-process run. It runs in a process
of its own, like a real voice server on its own GPU: the benchmark client's decoding and
landmarker then cannot delay its pieces through a shared interpreter lock.

    python -m tests.support.streaming_voice --port 18401 --record voice_requests.json

It serves until SIGTERM or SIGINT, then writes what each request got (`--record`: path, text,
pieces sent of how many, whether the client hung up before the end, i.e. a barge-in closed it).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path

PIECE_BYTES = 24000  # 0.5 s of 24 kHz int16 audio per piece, like one upstream streaming chunk
SECONDS_PER_CHAR = 0.08  # every reply sentence outlasts the time the voice takes to make it


def request_summary(requests: list[dict]) -> list[dict]:
    """The stand-in's records without the uploaded prompt audio (kept small and JSON-ready)."""
    keys = ("path", "pieces", "pieces_sent", "aborted")
    return [{"text": r["fields"].get("tts_text", ""), **{k: r[k] for k in keys if k in r}} for r in requests]


def main(argv: list[str] | None = None) -> int:
    from tests.fake_cosyvoice import FakeCosyVoiceServer

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True, help="loopback port to listen on")
    parser.add_argument("--first-chunk-s", type=float, default=0.15)
    parser.add_argument("--sentence-s", type=float, default=1.5)
    parser.add_argument("--record", type=Path, help="JSON file written at exit: one row per request")
    args = parser.parse_args(argv)
    if not 0 <= args.first_chunk_s <= args.sentence_s:
        parser.error("need 0 <= --first-chunk-s <= --sentence-s")
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    fake = FakeCosyVoiceServer(
        piece_bytes=PIECE_BYTES,
        first_piece_s=args.first_chunk_s,
        sentence_s=args.sentence_s,
        seconds_per_char=SECONDS_PER_CHAR,
        port=args.port,
    )
    with fake:
        print(f"streaming voice on {fake.url}", flush=True)
        while not stop.wait(0.5):
            pass
        time.sleep(1.0)  # a hung-up client is noticed at the next write
    if args.record is not None:
        args.record.write_text(json.dumps(request_summary(fake.requests), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
