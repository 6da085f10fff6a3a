"""Piper's memory over many sentences: does a text render's voice grow with the speech it made?

Speaks the one-minute unit of `bench.long_render_memory` (its sentences with their emotions, as a
render speaks them: Piper, then the emotion as WORLD prosody) `--units` times in one process with
the heap settings of `avatar render` (two malloc arenas, a fixed mmap threshold). Per unit it
prints the resident memory between sentences and the highest peak of any sentence (VmHWM, reset
before each sentence through /proc/self/clear_refs). `--keep-arena` runs Piper without shrinking
onnxruntime's CPU arena after each call, `--dynamic-mmap` leaves glibc's threshold moving, to
compare with what the render does.

    nice -n 10 .venv/bin/python -m bench.piper_memory --units 6
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

STATUS = Path("/proc/self/status")


def memory_mb() -> dict[str, float]:
    values = {}
    for line in STATUS.read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(value.split()[0]) / 1024
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--units", type=int, default=6)
    parser.add_argument("--keep-arena", action="store_true", help="no onnxruntime arena shrinkage")
    parser.add_argument("--dynamic-mmap", action="store_true", help="leave glibc's mmap threshold moving")
    args = parser.parse_args(argv)
    from avatar.core.heap_trim import fix_mmap_threshold, limit_malloc_arenas

    limit_malloc_arenas()
    if not args.dynamic_mmap:
        fix_mmap_threshold()
    import onnxruntime

    from avatar.core.text_script import parse_script, split_sentences
    from bench.long_render_memory import UNIT
    from voices.piper_tts import PiperTTS

    tts = PiperTTS().load()
    if args.keep_arena:
        tts._voice.session.run_options = onnxruntime.RunOptions()
    sentences = [(s.emotion, text) for s in parse_script(UNIT) for text in split_sentences(s.text)]
    print(json.dumps({"loaded_rss_mb": round(memory_mb()["VmRSS"], 1)}), flush=True)
    for unit in range(1, args.units + 1):
        peak_mb, resting_mb = 0.0, []
        for emotion, text in sentences:
            resting_mb.append(memory_mb()["VmRSS"])
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM from here on
            tts.synthesize(text, emotion=emotion)
            peak_mb = max(peak_mb, memory_mb()["VmHWM"])
        row = {
            "unit": unit,
            "sentence_peak_mb": round(peak_mb, 1),
            "resting_max_mb": round(max(resting_mb), 1),
        }
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
