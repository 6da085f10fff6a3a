"""Peak memory of `avatar render` against the length of the video: 1, 10 and 60 minutes of speech,
from a recording (--audio) and from text (--text-file).

Long inputs are built here and never committed: the recording is the English eval clips
(/work/shared/eval/speech, ../shared/eval from the repo) laid end to end with half-second pauses
until it lasts N minutes, written block by block as 24 kHz FLAC; the text is one unit of about a minute
(the sample show's lines and the eval transcripts) repeated N times in numbered paragraphs, so
every length speaks the same sentences (the table reports the real video length).

Each render runs as its own process (`nice -n 10`), and every `SAMPLE_EVERY_S` the resident memory
of its whole process tree is added up from /proc (the Python process and its ffmpeg children);
the peak of that sum is the figure. The video is reopened with ffprobe for its length and streams.

    .venv/bin/python -m bench.long_render_memory --minutes 1 10 60 --source audio text \\
        --report docs/measurements/long_renders.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EVAL = Path(os.environ.get("AVATAR_EVAL_DIR", ROOT.parent / "shared" / "eval"))
CLIPS = ("en_male_jfk.flac", "en_female_ljspeech_LJ050-0131.wav", "en_female_librispeech_1995-1837-0001.wav")
TRANSCRIPTS = (
    "And so my fellow Americans, ask not what your country can do for you, ask what you can do for "
    "your country.",
    "Unless a system is established for the frequent formal review of activities thereunder. In this "
    "regard, the committee has made its views known.",
    "It was the first great sorrow of his life. It was not so much the loss of the cotton itself, but "
    "the fantasy, the hopes, the dreams built around it.",
)
# About a minute of Piper speech (18 characters a second), with the tags a show script uses.
UNIT = (
    "[happy] Hello and welcome to Leaf and Kettle, the little tea shop on the corner of Mill Lane. "
    "I am glad you dropped by this afternoon. Today we are tasting three teas from our shelves: a "
    "bright spring green tea, picked in April, a toasty roasted oolong that smells a little like "
    "caramel, and a smooth black tea for anyone who likes a splash of milk. [pause 1s] [neutral] "
    "Green tea likes water that is hot, not boiling: about eighty degrees. Give it two minutes, "
    "then taste before you add another. [surprised] Did you know the same leaves can be brewed "
    "three or four times? Each cup tastes a little different. [neutral] " + " ".join(TRANSCRIPTS) + " "
    "Questions are welcome at any time. Type them in the chat and I will answer as many as I can."
)
SAMPLE_EVERY_S = 0.2
PROGRESS_EVERY_S = 60.0
RATE_HZ = 24000


def build_audio(path: Path, minutes: float) -> Path:
    import soundfile

    from avatar.core.audio_io import load_audio

    clips = [load_audio(EVAL / "speech" / name, RATE_HZ).pcm for name in CLIPS]
    pause = np.zeros(RATE_HZ // 2, np.float32)
    target = int(minutes * 60 * RATE_HZ)
    written = 0
    with soundfile.SoundFile(path, "w", RATE_HZ, 1, format="FLAC") as sound:
        while written < target:
            for clip in clips:
                piece = np.concatenate([clip, pause])[: target - written]
                sound.write(piece)
                written += len(piece)
    return path


def build_text(path: Path, minutes: float) -> Path:
    """`minutes` copies of one unit of about a minute of speech, so every length speaks the same
    sentences (the voice's buffers grow with the longest sentence it has seen, not with time)."""
    units = [f"Part {number}. {UNIT}" for number in range(1, max(1, round(minutes)) + 1)]
    path.write_text("\n\n".join(units), encoding="utf-8")
    return path


def tree_rss_mb(pid: int) -> float:
    """Resident memory of `pid` and all its descendants (threads' children included)."""
    total_kb, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
            for task in Path(f"/proc/{current}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total_kb / 1024


def high_water_mb(pid: int, known: dict[int, float]) -> None:
    """Record in `known` the kernel's exact peak RSS (VmHWM) of `pid` and of its descendants:
    a sampled sum can miss a peak shorter than the sampling period, VmHWM cannot."""
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    known[current] = max(known.get(current, 0.0), int(line.split()[1]) / 1024)
            for task in Path(f"/proc/{current}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue


def written_audio_bytes(workdir: Path) -> int:
    """Size of the render's streamed audio (float32): how far it has got."""
    total = 0
    for path in workdir.glob(".*.audio.wav"):
        try:
            total += path.stat().st_size
        except FileNotFoundError:  # the render just finished with it
            continue
    return total


def render(source: str, minutes: float, size_px: int, workdir: Path, code: Path = ROOT) -> dict:
    from tests.support.media_probe import probe_media

    if source == "audio":
        input_path = build_audio(workdir / f"speech_{minutes:g}min.flac", minutes)
        flag = ["--audio", str(input_path)]
    else:
        input_path = build_text(workdir / f"script_{minutes:g}min.txt", minutes)
        flag = ["--text-file", str(input_path)]
    out = workdir / f"{source}_{minutes:g}min.mp4"
    command = ["nice", "-n", "10", sys.executable, "-m", "avatar", "render"]
    command += ["--photo", str(ROOT / "assets/sample_portrait.jpg"), "--size", str(size_px), *flag]
    command += ["-o", str(out), "-q"]
    load_before = os.getloadavg()
    started = time.monotonic()
    child = subprocess.Popen(command, cwd=code, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak_mb, series, next_note_s = 0.0, [], started + PROGRESS_EVERY_S
    high_water: dict[int, float] = {}
    while child.poll() is None:
        high_water_mb(child.pid, high_water)
        rss = tree_rss_mb(child.pid)
        peak_mb = max(peak_mb, rss)
        series.append((round(time.monotonic() - started, 1), round(rss, 1)))
        if time.monotonic() >= next_note_s:  # a long run killed at a deadline still leaves its trend
            next_note_s += PROGRESS_EVERY_S
            note = {"progress": f"{source} {minutes:g} min", "t_s": series[-1][0], "rss_mb": series[-1][1]}
            note.update(peak_mb=round(peak_mb, 1), audio_written_bytes=written_audio_bytes(workdir))
            print(json.dumps(note), file=sys.stderr, flush=True)
        time.sleep(SAMPLE_EVERY_S)
    wall_s = time.monotonic() - started
    stdout, stderr = child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"render failed ({child.returncode}): {stderr[-2000:]}")
    info = probe_media(out)
    kinds = {s.kind: s for s in info.streams}
    result = {
        "source": source,
        "minutes_asked": minutes,
        "size_px": size_px,
        "input_bytes": input_path.stat().st_size,
        "video_s": round(kinds["video"].duration_s, 2),
        "audio_s": round(kinds["audio"].duration_s, 2),
        "frames": kinds["video"].frame_count,
        "streams": sorted(kinds),
        "peak_tree_rss_mb": round(peak_mb, 1),
        "python_vmhwm_mb": round(high_water.get(child.pid, float("nan")), 1),
        "largest_child_vmhwm_mb": round(
            max((v for k, v in high_water.items() if k != child.pid), default=0.0), 1
        ),
        "wall_s": round(wall_s, 1),
        "realtime_factor": round(kinds["video"].duration_s / wall_s, 2),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "command": " ".join(["avatar", "render", *command[command.index("render") + 1 :]]),
        "rss_series_every_10s": series[:: max(1, int(10 / SAMPLE_EVERY_S))],
        "summary_line": stdout.strip().splitlines()[-1] if stdout.strip() else "",
    }
    out.unlink()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 10.0, 60.0])
    parser.add_argument("--source", nargs="+", choices=("audio", "text"), default=["audio", "text"])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--report", type=Path, help="append each result as one JSON line here")
    parser.add_argument(
        "--code",
        type=Path,
        default=ROOT,
        help="run the `avatar` package found in this folder (e.g. an export of an older commit)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="long-render-") as tmp:
        for minutes in args.minutes:
            for source in args.source:
                result = render(source, minutes, args.size, Path(tmp), args.code)
                result["code"] = str(args.code)
                line = json.dumps(result)
                print(line, flush=True)
                if args.report:
                    with args.report.open("a") as report:
                        report.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
