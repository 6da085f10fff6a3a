"""`avatar` command line: a thin layer over library functions.

argparse is built inside `main()` (never at import) and engines load only inside the command that
needs them, so `avatar --help` answers instantly. Every AvatarError becomes one line on stderr
and a non-zero exit code; no traceback for bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from avatar.errors import AvatarError
from avatar.render_request import EMOTIONS

EXAMPLES = """examples:
  avatar render --photo me.jpg --text "Hello! [happy] Nice to meet you." -o hello.mp4
  avatar render --photo me.jpg --audio speech.wav -o lipsync.mp4
  avatar render --photo me.jpg --text "你好，欢迎光临。" --voice my_voice.wav -o zh.mp4
  avatar batch jobs.csv --out-dir videos/ --jobs 2
  avatar transcribe speech.wav
  avatar voice-profile my_voice.wav -o me.voice.json
"""


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avatar",
        description="Talking avatar from one photo: lip-synced video, offline, on the CPU.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")

    render = sub.add_parser(
        "render",
        help="render one talking-head MP4",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    render.add_argument("--photo", required=True, type=Path, help="portrait photo (JPEG/PNG/WebP, any size)")
    source = render.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="what to say; inline tags like [happy], [sad], [pause 0.5s]")
    source.add_argument("--text-file", type=Path, help="read the text from a UTF-8 file")
    source.add_argument("--audio", type=Path, help="lip-sync this recording instead of synthesizing speech")
    render.add_argument(
        "--audio-timing",
        choices=("loudness", "asr"),
        default="loudness",
        help="with --audio: mouth from loudness (default) or also from ASR word timing + phonemes",
    )
    render.add_argument(
        "--voice",
        type=Path,
        help="3-30 s recording (or a saved .json voice profile): match the synthetic voice to it (DSP)",
    )
    render.add_argument(
        "--emotion", default="neutral", choices=EMOTIONS, help="expression where no tag is given"
    )
    render.add_argument(
        "--lang", choices=("en", "zh"), help="speech language (default: detected from the text)"
    )
    render.add_argument(
        "--size", type=int, help="longest side of the video in pixels (default: photo, max 1024)"
    )
    render.add_argument("--face", type=int, help="which face to animate when there are several (0 = largest)")
    render.add_argument(
        "-o", "--output", type=Path, default=Path("out.mp4"), help="output .mp4 (default out.mp4)"
    )
    render.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    batch = sub.add_parser("batch", help="render many videos from a CSV or JSONL manifest, using all cores")
    batch.add_argument(
        "manifest",
        type=Path,
        help="CSV (header: photo,text,audio,voice,emotion,lang,size,face,output) or JSONL",
    )
    batch.add_argument("--out-dir", type=Path, default=Path("videos"), help="where outputs without a path go")
    batch.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel worker processes")

    transcribe = sub.add_parser("transcribe", help="speech to text with the embedded Whisper model")
    transcribe.add_argument("file", type=Path, help="audio file (any format ffmpeg reads)")
    transcribe.add_argument("--lang", help="language hint, e.g. en or zh (default: detect)")

    voice = sub.add_parser(
        "voice-profile", help="analyse a 3-30 s recording into a reusable voice profile (DSP voice matching)"
    )
    voice.add_argument("sample", type=Path, help="recording of the target speaker, 3-30 s")
    voice.add_argument("-o", "--output", type=Path, help="profile file (default: SAMPLE.voice.json)")
    voice.add_argument("--name", help="profile name (default: the sample's file name)")

    serve = sub.add_parser("serve", help="talk to the avatar live in a browser (WebRTC)")
    serve.add_argument(
        "--photo", type=Path, default=Path("assets/sample_portrait.jpg"), help="portrait photo"
    )
    serve.add_argument(
        "--size", type=int, default=512, help="longest side of the video in pixels (default 512)"
    )
    serve.add_argument("--face", type=int, help="which face when the photo has several (0 = largest)")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--token", help="require 'Authorization: Bearer TOKEN' on /offer (default: env AVATAR_TOKEN)"
    )
    serve.add_argument(
        "--llm",
        choices=("stub", "answerer"),
        default="stub",
        help="stub: instant fixed reply (benchmarks); answerer: offline knowledge-base answers",
    )
    serve.add_argument(
        "--knowledge",
        type=Path,
        action="append",
        default=[],
        help="FAQ / markdown / text file for --llm answerer (repeatable)",
    )
    serve.add_argument("--persona", default="Mona", help="the avatar's name")
    serve.add_argument("--lang", choices=("en", "zh"), help="voice language (default: detected per sentence)")
    serve.add_argument(
        "--ice-server", action="append", default=[], help="STUN/TURN URL for clients behind NAT"
    )
    serve.add_argument("--max-sessions", type=int, default=8)

    sub.add_parser("probe", help="measure a running server with a headless WebRTC client", add_help=False)

    preview = sub.add_parser("preview", help="draw the detected face and landmarks on the photo (PNG)")
    preview.add_argument("--photo", required=True, type=Path)
    preview.add_argument("--size", type=int)
    preview.add_argument("--face", type=int)
    preview.add_argument("-o", "--output", type=Path, default=Path("preview.png"))
    return parser


def _progress_bar(quiet: bool):
    """Returns (callback, close): a tqdm bar per stage on stderr."""
    if quiet:
        return None, lambda: None
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}
    labels = {"speech": "synthesizing speech", "video": "rendering video"}

    def update(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            for other in bars.values():
                other.close()
            bar = bars[stage] = tqdm(
                total=total,
                desc=labels.get(stage, stage),
                unit="frame" if stage == "video" else "sentence",
                leave=True,
            )
        bar.n = done
        bar.refresh()

    def close() -> None:
        for bar in bars.values():
            bar.close()

    return update, close


def _cmd_render(args: argparse.Namespace) -> int:
    from avatar.render_job import render_video
    from avatar.render_request import RenderRequest

    text = args.text
    if args.text_file is not None:
        try:
            text = args.text_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AvatarError(f"cannot read --text-file {args.text_file}: {exc}") from exc
    request = RenderRequest(
        photo_path=args.photo,
        output_path=args.output,
        text=text,
        audio_path=args.audio,
        voice_sample_path=args.voice,
        emotion=args.emotion,
        language=args.lang,
        size_px=args.size,
        face_index=args.face,
        audio_timing=args.audio_timing,
    )
    progress, close = _progress_bar(args.quiet)
    try:
        result = render_video(request, progress=progress)
    finally:
        close()
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    speed = result.duration_s / max(result.render_time_s, 1e-9)
    print(
        f"wrote {result.output_path} ({result.duration_s:.2f} s, {result.frame_count} frames, "
        f"rendered in {result.render_time_s:.1f} s = {speed:.1f}x real time)"
    )
    return 0


def _cmd_batch(args: argparse.Namespace) -> int:
    from avatar.batch import run_batch

    report = run_batch(args.manifest, out_dir=args.out_dir, jobs=args.jobs)
    print(f"{len(report.succeeded)} succeeded, {len(report.failed)} failed")
    for failure in report.failed:
        print(f"failed: {failure}", file=sys.stderr)
    return 0 if not report.failed else 1


def _cmd_transcribe(args: argparse.Namespace) -> int:
    from avatar.asr_whisper import transcribe_file

    transcript = transcribe_file(args.file, language=args.lang)
    print(f"[{transcript.language}] {transcript.text}")
    return 0


def _cmd_voice_profile(args: argparse.Namespace) -> int:
    from voices.voice_profile import build_voice_profile

    profile = build_voice_profile(args.sample, name=args.name or args.sample.stem)
    output = args.output or args.sample.with_suffix(".voice.json")
    profile.save(output)
    for warning in profile.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(
        f"wrote {output}: median pitch {profile.f0.median_f0_hz:.0f} Hz, "
        f"vocal tract ~{profile.envelope.vocal_tract_length_cm:.1f} cm, from {profile.sample_duration_s:.1f} s of speech"
    )
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from avatar.live_engines import LiveConfig, LiveEngines
    from avatar.live_server import LiveServer

    try:
        from aiohttp import web
    except ImportError as exc:
        raise AvatarError("the live server needs the live extra", "pip install '.[live]'") from exc
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = LiveConfig(
        photo_path=args.photo,
        size_px=args.size,
        face_index=args.face,
        llm=args.llm,
        knowledge_paths=tuple(args.knowledge),
        persona_name=args.persona,
        language=args.lang,
    )
    from avatar.loopback_ice import install_from_env

    install_from_env()  # AVATAR_LOOPBACK_ONLY=1: ICE on 127.0.0.1 only (tests, benchmarks)
    print(f"loading engines for {args.photo} ...", file=sys.stderr)
    engines = LiveEngines(config).load()
    token = args.token or os.environ.get("AVATAR_TOKEN") or None
    server = LiveServer(
        engines, token=token, ice_servers=tuple(args.ice_server), max_sessions=args.max_sessions
    )
    print(f"open http://{args.host}:{args.port}/ to talk to {args.persona}", file=sys.stderr)
    try:
        web.run_app(server.app(), host=args.host, port=args.port, print=None)
    finally:
        engines.close()
    return 0


def _cmd_preview(args: argparse.Namespace) -> int:
    from lipsync.avatar_assets import prepare_avatar
    from lipsync.preview import draw_preview

    assets = prepare_avatar(args.photo, args.size, args.face)
    draw_preview(assets, args.output)
    for note in assets.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(argv) if argv is not None else sys.argv[1:]
    if argv and argv[0] == "probe":  # the probe has its own parser (it is also a library entry)
        from avatar.live_probe import probe_main

        return probe_main(argv[1:])
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from avatar import __version__

        print(__version__)
        return 0
    commands = {
        "render": _cmd_render,
        "batch": _cmd_batch,
        "transcribe": _cmd_transcribe,
        "voice-profile": _cmd_voice_profile,
        "serve": _cmd_serve,
        "preview": _cmd_preview,
    }
    if args.command not in commands:
        parser.print_help()
        return 2
    try:
        return commands[args.command](args)
    except AvatarError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
