"""A headless WebRTC client that talks to `avatar serve` and measures it (test and benchmark tool).

    python -m tests.support.live_probe --url http://127.0.0.1:8080 --audio question.wav [--turns 5]

Prints one JSON line per turn and a p50/p95 summary. The client is
tests.support.live_probe_client.LiveProbe; what is measured and how is in
tests.support.live_probe_analysis. With the server on this machine, start it with
AVATAR_LOOPBACK_ONLY=1 and pass --loopback-only here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from tests.support.live_probe_analysis import MIC_RATE_HZ, TurnResult, summarize
from tests.support.live_probe_client import LiveProbe


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.live_probe", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument(
        "--audio", type=Path, required=True, help="recorded question (any format ffmpeg reads)"
    )
    parser.add_argument("--turns", type=int, default=5, help="questions per client")
    parser.add_argument("--clients", type=int, default=1, help="concurrent clients")
    parser.add_argument("--barge-in", action="store_true", help="talk over every reply and time the silence")
    parser.add_argument("--token", help="bearer token when the server requires one")
    parser.add_argument("--json", type=Path, help="write every turn and the summary as JSON here")
    parser.add_argument(
        "--loopback-only", action="store_true", help="gather ICE on 127.0.0.1 only (server on this machine)"
    )
    return parser


async def run_clients(
    url: str, question: np.ndarray, *, turns: int, clients: int, barge_in: bool, token: str | None = None
) -> list[TurnResult]:
    """`clients` probes in parallel, `turns` turns each; all tasks are awaited."""

    async def one(index: int) -> list[TurnResult]:
        async with LiveProbe(url, token, index) as probe:
            out = []
            for turn in range(turns):
                if barge_in:
                    out.append(await probe.measure_barge_in(question, question, turn))
                else:
                    out.append(await probe.measure_turn(question, turn))
            return out

    per_client = await asyncio.gather(*(one(i) for i in range(clients)))
    return [r for results in per_client for r in results]


def probe_main(argv: list[str] | None = None) -> int:
    """Entry of `python -m tests.support.live_probe`: prints one line per turn and a p50/p95 summary."""
    from avatar.core.audio_io import load_audio

    args = _build_parser().parse_args(argv)
    if args.loopback_only:
        from avatar.live.ice import install_loopback_only

        install_loopback_only()
    question = load_audio(args.audio, MIC_RATE_HZ).pcm.astype(np.float32)
    question = np.concatenate([question, np.zeros(MIC_RATE_HZ // 2, np.float32)])
    results = asyncio.run(
        run_clients(
            args.url,
            question,
            turns=args.turns,
            clients=args.clients,
            barge_in=args.barge_in,
            token=args.token,
        )
    )
    for r in results:
        print(json.dumps({k: v for k, v in asdict(r).items() if v not in (None, [], "")}, ensure_ascii=False))
    summary = summarize(results)
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(
            json.dumps({"turns": [asdict(r) for r in results], "summary": summary}, indent=1)
        )
    return 0 if all(r.reply_started for r in results) else 1


if __name__ == "__main__":
    sys.exit(probe_main())
