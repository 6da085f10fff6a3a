"""`avatar render`, `avatar batch`, `avatar preview`: videos and pictures from a photo.

Thin commands over avatar.render (render_video, run_batch) and lipsync.preview; the library
avatar of `--avatar` comes from `AvatarLibrary.inputs`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from avatar.cli.options import add_library_option, add_neural_render_options, engine_choice, read_text_option
from avatar.core.types import EMOTIONS


def add_render_parsers(sub, *, epilog: str) -> None:
    """Register render, batch and preview on the CLI's subparsers object."""
    _add_render_parser(sub, epilog)
    batch = sub.add_parser("batch", help="render many videos from a CSV or JSONL manifest, using all cores")
    batch.add_argument(
        "manifest",
        type=Path,
        help="CSV (header: photo,text,audio,voice,emotion,lang,size,face,output) or JSONL",
    )
    batch.add_argument("--out-dir", type=Path, default=Path("videos"), help="where outputs without a path go")
    batch.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel worker processes")
    batch.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="render on a Ray cluster instead (auto, or the head's host:port); --out-dir must be a folder "
        "every node sees",
    )
    batch.set_defaults(run=cmd_batch)

    preview = sub.add_parser("preview", help="draw the detected face and landmarks on the photo (PNG)")
    preview.add_argument("--photo", required=True, type=Path)
    preview.add_argument("--size", type=int)
    preview.add_argument("--face", type=int)
    preview.add_argument("-o", "--output", type=Path, default=Path("preview.png"))
    from avatar.engines.registry import engine_options

    preview.add_argument(
        "--landmarks",
        choices=engine_options("face"),
        default="mediapipe",
        help="mediapipe: the embedded 478-point mesh the renderer uses (default); face-alignment: "
        "2D-FAN's 68 points, with its weights in $TORCH_HOME (`avatar models download face-alignment`)",
    )
    preview.set_defaults(run=cmd_preview)


def _add_render_parser(sub, epilog: str) -> None:
    render = sub.add_parser(
        "render",
        help="render one talking-head MP4",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    who = render.add_mutually_exclusive_group(required=True)
    who.add_argument("--photo", type=Path, help="portrait photo (JPEG/PNG/WebP, any size)")
    who.add_argument(
        "--avatar",
        metavar="NAME",
        help="a library avatar (name or slug): its photo, face, voice and language",
    )
    add_library_option(render)
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
    add_neural_render_options(render)
    render.set_defaults(run=cmd_render)


def _render_request(args: argparse.Namespace):
    """(RenderRequest, transcript of the voice to clone or None) from --photo or --avatar."""
    from avatar.engines.choice import CLONING_ENGINES
    from avatar.render.request import RenderRequest

    photo, voice, language, face = args.photo, args.voice, args.lang, args.face
    voice_text = None
    if args.avatar is not None:
        from avatar.library.store import AvatarLibrary

        avatar = AvatarLibrary(args.library).inputs(args.avatar)
        photo = avatar.photo_path
        if voice is None and args.audio is None:  # a recording is lip-synced as it is
            voice, voice_text = avatar.voice_reference(cloning=args.tts in CLONING_ENGINES)
        language = language or avatar.language
        face = face if face is not None else avatar.face_index
    text = args.text if args.text_file is None else read_text_option(args.text_file, "--text-file")
    request = RenderRequest(
        photo_path=photo,
        output_path=args.output,
        text=text,
        audio_path=args.audio,
        voice_sample_path=voice,
        emotion=args.emotion,
        language=language,
        size_px=args.size,
        face_index=face,
        audio_timing=args.audio_timing,
    )
    return request, voice_text


def cmd_render(args: argparse.Namespace) -> int:
    from avatar.core.stop_signals import stop_signals_raise
    from avatar.engines.engine_set import EngineSet
    from avatar.render.job import render_video

    request, voice_text = _render_request(args)
    engines = EngineSet(choice=engine_choice(args, voice_text))
    progress, close = _progress_bar(args.quiet)
    # SIGTERM (a service manager, `kill`) cleans up as Ctrl-C does: encoder stopped, no temp files
    with stop_signals_raise():
        try:
            result = render_video(request, engines, progress=progress)
        finally:
            close()
            engines.close()
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    speed = result.duration_s / max(result.render_time_s, 1e-9)
    print(
        f"wrote {result.output_path} ({result.duration_s:.2f} s, {result.frame_count} frames, "
        f"rendered in {result.render_time_s:.1f} s = {speed:.1f}x real time)"
    )
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    if args.ray:
        from avatar.jobs.ray_batch import run_batch_on_ray
        from avatar.jobs.spec import require_ray

        require_ray()

        report = run_batch_on_ray(args.manifest, args.out_dir, args.ray)
    else:
        from avatar.render.batch import run_batch

        report = run_batch(args.manifest, out_dir=args.out_dir, jobs=args.jobs)
    print(f"{len(report.succeeded)} succeeded, {len(report.failed)} failed")
    for failure in report.failed:
        print(f"failed: {failure}", file=sys.stderr)
    return 0 if not report.failed else 1


def cmd_preview(args: argparse.Namespace) -> int:
    from avatar.core.errors import InputError
    from avatar.render.job import same_file
    from lipsync.avatar_assets import prepare_avatar
    from lipsync.preview import draw_fan_preview, draw_preview

    if same_file(Path(args.output), Path(args.photo)):
        raise InputError(
            f"the output {args.output} is the photo itself: it would be overwritten", "give another -o"
        )
    if args.landmarks == "face-alignment":
        from avatar.engines.engine_set import fan_landmarker

        count = draw_fan_preview(args.photo, args.output, fan_landmarker())
        print(f"wrote {args.output} ({count} face{'s' if count != 1 else ''}, 68 points each)")
        return 0

    assets = prepare_avatar(args.photo, args.size, args.face)
    draw_preview(assets, args.output)
    for note in assets.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {args.output}")
    return 0


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
        if total != bar.total:  # a text's frame count is an estimate until its last window
            bar.total = total
        bar.n = done
        bar.refresh()

    def close() -> None:
        for bar in bars.values():
            bar.close()

    return update, close
