"""Reply start -> first moving mouth with a cloned voice that streams, against whole sentences.

A CosyVoice stand-in server (tests/fake_cosyvoice.py, upstream's FastAPI protocol, on loopback)
speaks on a clock: each sentence's first piece (0.5 s of audio) after --first-chunk-s, its last
piece at --sentence-s, the rest evenly between, 80 ms of audio per character (every reply
sentence lasts longer than 1.5 s, so a stream never runs dry). Modes:

* `stream`: a cloned voice's chunks go to the face as they come (the default of `avatar serve`);
* `whole`: `--no-tts-stream` (each sentence synthesized whole before it is drawn);
* `piper`: the embedded voice, the barge-in reference.

The session is the real `ConversationSession` with the real engines of `avatar serve`
(`LiveEngines`: the CosyVoice HTTP client, the procedural lip-sync renderer at 512 px, the speech
cache, per-engine locks, worker threads) on the system clock; a pump takes one playout tick
every 40 ms as the WebRTC tracks do, and the face landmarker looks at every frame (the probe's
rule, tests/support/live_probe_mouth.py: the inner-lip gap leaves the idle range by 1% of face
height for two frames). Each turn says a reply no turn said before (the speech cache would
otherwise answer from memory), modes alternate turn by turn so that both see the same machine
load, and the reply starts where a turn ends, so speech recognition and turn-taking, the same in
every mode, are left out. A barge-in interrupts the reply 0.5 s after its mouth moved and
measures the time to the first silent tick; the stand-in records whether the voice's request was
aborted.

    nice -n 10 .venv/bin/python -m bench.cosyvoice_streaming --turns 12 --barge-ins 8 \\
        --out cosyvoice_streaming.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_VOICE = ROOT / "assets" / "sample_voice.flac"
SAMPLE_TEXT = (
    "unless a system is established for the frequent formal review of activities thereunder. in this regard"
)
FAKE_PORT = 18201  # this benchmark's loopback port
PIECE_BYTES = 24000  # 0.5 s of 24 kHz int16 audio per piece, like one upstream streaming chunk
TICK_S = 0.04
IDLE_S = 1.6  # idle frames before the reply: the mouth's idle range
REPLY_WINDOW_S = 4.0


def reply_text(index: int) -> str:
    return f"[happy] Thank you for question {index}! I heard you loud and clear, and I am happy to help."


def engines_for(modes: list[str], photo: Path, voice_url: str) -> dict:
    """One `LiveEngines` per mode over one engine set (the renderer and the voice load once)."""
    from avatar.engines.choice import EngineChoice
    from avatar.engines.engine_set import EngineSet
    from avatar.engines.live_set import LiveConfig, LiveEngines

    cloned = EngineChoice(tts="cosyvoice-http", cosyvoice_url=voice_url, voice_text=SAMPLE_TEXT)
    base = LiveConfig(photo_path=photo, size_px=512, llm="stub", language="en")
    configs = {
        "stream": replace(base, tts_choice=cloned, voice_sample_path=SAMPLE_VOICE),
        "whole": replace(base, tts_choice=cloned, voice_sample_path=SAMPLE_VOICE, tts_stream=False),
        "piper": base,
    }
    shared = {"cloned": EngineSet(cloned), "embedded": EngineSet(EngineChoice())}
    out = {}
    for mode in modes:
        engine_set = shared["embedded" if mode == "piper" else "cloned"]
        out[mode] = LiveEngines(configs[mode], engines=engine_set).load(listening=False)
    return out


async def one_turn(live, landmarker, text: str, barge_in: bool) -> dict:
    """Say `text` as a reply, pump ticks on the clock, measure its mouth (and a barge-in)."""
    from avatar.core.clock import SystemClock
    from avatar.live.conversation import ConversationSession
    from avatar.playout.av_output import AVOutputQueue, AVPlayout
    from lipsync.streaming_lipsync import StreamingLipSync
    from tests.support.live_probe_mouth import ColourFrame, first_moving_mouth

    clock, events = SystemClock(), []
    lipsync = StreamingLipSync(live.renderer, seed=7)
    queue = AVOutputQueue()
    playout = AVPlayout(queue, lambda tick: lipsync.idle_frame())
    session = ConversationSession(
        vad=None, turn_detector=None, asr=None, llm=None, tts=live, lipsync=lipsync, queue=queue,
        playout=playout, clock=clock, run_blocking=live.run_blocking, on_event=events.append,
    )  # fmt: skip
    frames, speech_at = [], []
    start_s, index = clock.now_s(), 0

    async def pump(until_s: float, stop_when_silent: bool = False, stop_when_speaking: bool = False):
        nonlocal index
        while clock.now_s() < until_s and not (stop_when_speaking and speech_at):
            index += 1
            await clock.sleep_until(start_s + index * TICK_S)
            tick = playout.next_tick()
            frame = await asyncio.to_thread(lambda t=tick: t.frame[::2, ::2].copy())
            frames.append(ColourFrame(clock.now_s(), frame))
            if tick.is_speech:
                speech_at.append(clock.now_s())
            elif stop_when_silent:
                return clock.now_s()
        return None

    await pump(start_s + IDLE_S)
    said_s = clock.now_s()
    await session.say(text)
    result: dict = {"text": text}
    if not barge_in:
        await pump(said_s + REPLY_WINDOW_S)
    else:
        await pump(said_s + REPLY_WINDOW_S, stop_when_speaking=True)
        await pump(clock.now_s() + 0.5)  # talk over the reply 0.5 s after its first sound
        interrupted_s = clock.now_s()
        await session.interrupt("barge-in")
        silent_s = await pump(interrupted_s + 2.0, stop_when_silent=True)
        result["barge_in_to_silence_ms"] = None if silent_s is None else 1000 * (silent_s - interrupted_s)
    await session.close()
    onset = first_moving_mouth(frames, said_s, landmarker)
    result["first_speech_tick_ms"] = 1000 * (speech_at[0] - said_s) if speech_at else None
    result["first_moving_mouth_ms"] = None if onset.arrival_s is None else 1000 * (onset.arrival_s - said_s)
    first_chunk = [e for e in events if e["type"] == "tts_first_chunk"]
    result["tts_first_chunk_ms"] = first_chunk[0]["latency_ms"] if first_chunk else None
    return result


def summary(values: list[float | None]) -> dict:
    measured = [v for v in values if v is not None]
    if not measured:
        return {"n": 0}
    return {
        "n": len(measured),
        "p50": round(float(np.percentile(measured, 50)), 1),
        "p95": round(float(np.percentile(measured, 95)), 1),
        "max": round(max(measured), 1),
    }


def main(argv: list[str] | None = None) -> int:
    from bench.live_latency import top_square
    from lipsync.face_landmarker import FaceLandmarker
    from tests.fake_cosyvoice import FakeCosyVoiceServer

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modes", default="stream,whole,piper")
    parser.add_argument("--turns", type=int, default=12, help="replies per mode, from quiet")
    parser.add_argument("--barge-ins", type=int, default=8, help="interrupted replies per mode")
    parser.add_argument("--first-chunk-s", type=float, default=0.15)
    parser.add_argument("--sentence-s", type=float, default=1.5)
    parser.add_argument("--photo", type=Path, default=ROOT / "assets/sample_portrait.jpg")
    parser.add_argument("--out", type=Path, help="JSON results")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]

    fake = FakeCosyVoiceServer(
        piece_bytes=PIECE_BYTES,
        first_piece_s=args.first_chunk_s,
        sentence_s=args.sentence_s,
        seconds_per_char=0.08,
        port=FAKE_PORT,
    )
    report: dict = {
        "voice": {"first_chunk_s": args.first_chunk_s, "sentence_s": args.sentence_s, "piece_s": 0.5},
        "cores": os.cpu_count(),
        "load_before": os.getloadavg(),
        "turns": {mode: [] for mode in modes},
    }
    landmarker = FaceLandmarker()
    with tempfile.TemporaryDirectory() as folder, fake:
        engines = engines_for(modes, top_square(args.photo, Path(folder)), fake.url)
        number = 0
        for round_index in range(-1, args.turns + args.barge_ins):  # round -1 warms up, unrecorded
            barge_in = round_index >= args.turns
            for mode in modes:  # alternate: every mode sees the same load
                number += 1
                before = len(fake.requests)
                result = asyncio.run(one_turn(engines[mode], landmarker, reply_text(number), barge_in))
                if round_index < 0:
                    continue
                result.update(mode=mode, barge_in=barge_in, started_at=time.time())
                result["voice_requests"] = (before, len(fake.requests))  # aborts are seen later
                report["turns"][mode].append(result)
                print(mode, json.dumps({k: v for k, v in result.items() if k != "text"}), flush=True)
        time.sleep(1.0)  # the stand-in notices a hang-up at its next write
        for rows in report["turns"].values():
            for row in rows:
                first, last = row.pop("voice_requests")
                row["voice_requests_aborted"] = sum(bool(r.get("aborted")) for r in fake.requests[first:last])
        for live in engines.values():
            live.close()
    report["load_after"] = os.getloadavg()
    report["summary"] = {
        mode: {
            "first_moving_mouth_ms": summary([r["first_moving_mouth_ms"] for r in rows if not r["barge_in"]]),
            "first_speech_tick_ms": summary([r["first_speech_tick_ms"] for r in rows if not r["barge_in"]]),
            "tts_first_chunk_ms": summary([r["tts_first_chunk_ms"] for r in rows]),
            "barge_in_to_silence_ms": summary([r.get("barge_in_to_silence_ms") for r in rows if r["barge_in"]]),
            "barge_ins_with_voice_request_aborted": sum(r["voice_requests_aborted"] > 0 for r in rows if r["barge_in"]),
        }
        for mode, rows in report["turns"].items()
    }  # fmt: skip
    print(json.dumps(report["summary"], indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
