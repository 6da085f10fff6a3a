"""`avatar` command line: a thin layer over library functions.

argparse is built inside `main()` (never at import) and engines load only inside the command that
needs them, so `avatar --help` answers instantly. Every AvatarError becomes one line on stderr
and a non-zero exit code; no traceback for bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from avatar.cli.models import add_models_parser, run_models
from avatar.core.errors import AvatarError
from avatar.core.types import EMOTIONS
from webui.cli_args import add_webui_parser, run_webui

EXAMPLES = """examples:
  avatar render --photo me.jpg --text "Hello! [happy] Nice to meet you." -o hello.mp4
  avatar render --photo me.jpg --audio speech.wav -o lipsync.mp4
  avatar render --photo me.jpg --text "你好，欢迎光临。" --voice my_voice.wav -o zh.mp4
  avatar batch jobs.csv --out-dir videos/ --jobs 2
  avatar transcribe speech.wav
  avatar voice-profile my_voice.wav -o me.voice.json
  avatar library create Mona --photo me.jpg --voice my_voice.wav --knowledge faq.md
  avatar render --avatar Mona --text "Hello!" -o hello.mp4
  avatar serve --avatar Mona
  avatar live --script show.md --rtmp rtmp://127.0.0.1:1935/live/show
  avatar webui                      # the web console on http://127.0.0.1:7860/
"""

LIBRARY_EXAMPLES = """examples:
  avatar library create Mona --photo me.jpg --voice my_voice.wav --lang en \\
      --persona "A cheerful shop assistant" --knowledge faq.md
  avatar library create 小美 --photo xm.jpg --voice xm.wav --lang zh
  avatar library list
  avatar library rename mona "Mona Lisa"
  avatar library duplicate mona-lisa "Mona (formal)"
  avatar library export mona-lisa -o mona.zip
  avatar library import mona.zip --name "Mona 2"
  avatar library delete mona-2
  avatar render --avatar "Mona Lisa" --text "Hello!" -o hello.mp4
  avatar serve --avatar "Mona Lisa"

The library lives in $AVATAR_LIBRARY (default ~/.cache/talking-avatar/avatars); --library DIR
picks another. Avatars are named by their display name or their slug (the folder name).
"""
DEFAULT_SERVE_PHOTO = Path("assets/sample_portrait.jpg")
LIVE_EXAMPLES = """examples:
  avatar live --script assets/scripts/shop_show.md --knowledge assets/knowledge/shop_faq.md \\
      --rtmp rtmp://127.0.0.1:1935/live/show --record recordings/
  avatar live --avatar Mona --script show.md --once --rtmp rtmp://live.example.com/app/KEY
  curl -X POST localhost:8090/api/comments -d '{"user": "ann", "text": "When do you open?"}'
  curl -X POST localhost:8090/api/control/pause
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
    who = render.add_mutually_exclusive_group(required=True)
    who.add_argument("--photo", type=Path, help="portrait photo (JPEG/PNG/WebP, any size)")
    who.add_argument(
        "--avatar",
        metavar="NAME",
        help="a library avatar (name or slug): its photo, face, voice and language",
    )
    render.add_argument(
        "--library",
        type=Path,
        metavar="DIR",
        help="avatar library folder (default: $AVATAR_LIBRARY, else ~/.local/share/talking-avatar/avatars)",
    )
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
    _add_neural_render_options(render)

    batch = sub.add_parser("batch", help="render many videos from a CSV or JSONL manifest, using all cores")
    batch.add_argument(
        "manifest",
        type=Path,
        help="CSV (header: photo,text,audio,voice,emotion,lang,size,face,output) or JSONL",
    )
    batch.add_argument("--out-dir", type=Path, default=Path("videos"), help="where outputs without a path go")
    batch.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel worker processes")

    transcribe = sub.add_parser(
        "transcribe", help="speech to text (embedded Whisper, or SenseVoice with emotion and audio events)"
    )
    transcribe.add_argument("file", type=Path, help="audio file (any format ffmpeg reads)")
    transcribe.add_argument("--lang", help="language hint, e.g. en or zh (default: detect)")
    _add_asr_options(transcribe)

    voice = sub.add_parser(
        "voice-profile", help="analyse a 3-30 s recording into a reusable voice profile (DSP voice matching)"
    )
    voice.add_argument("sample", type=Path, help="recording of the target speaker, 3-30 s")
    voice.add_argument("-o", "--output", type=Path, help="profile file (default: SAMPLE.voice.json)")
    voice.add_argument("--name", help="profile name (default: the sample's file name)")

    serve = sub.add_parser("serve", help="talk to the avatar live in a browser (WebRTC)")
    _add_on_air_options(serve, default_port=8080, listening=True)
    serve.add_argument(
        "--ice-server", action="append", default=[], help="STUN/TURN URL for clients behind NAT"
    )
    serve.add_argument("--max-sessions", type=int, default=8)

    live = sub.add_parser(
        "live",
        help="livestream host: read a script, answer comments, push RTMP / record",
        description="One always-on avatar stream: a script (looping or once), viewer comments "
        "answered from the knowledge base, interjections; pushed to RTMP URLs and/or recorded, "
        "with an operator page (monitor, controls, events) on http://HOST:PORT/ and a comment "
        "page on /comment. API: docs/livestream_api.md.",
        epilog=LIVE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_on_air_options(live, default_port=8090, listening=False)
    live.add_argument(
        "--script", type=Path, help="text or Markdown script with [emotion] and [pause 2s] tags"
    )
    live.add_argument("--once", action="store_true", help="read the script once (default: loop it)")
    live.add_argument(
        "--rtmp", action="append", default=[], metavar="URL", help="push to this RTMP URL (repeatable)"
    )
    live.add_argument("--record", type=Path, metavar="DIR", help="also record to segmented MP4 files in DIR")
    live.add_argument(
        "--segment-s", type=float, default=300.0, help="length of each recorded file (default 300)"
    )
    live.add_argument(
        "--keyframe-s", type=float, default=2.0, help="keyframe interval in seconds (default 2)"
    )
    live.add_argument("--video-kbps", type=int, default=1500, help="video bitrate (default 1500)")
    live.add_argument(
        "--blocklist", type=Path, help="one word or phrase per line; comments with them are refused"
    )
    live.add_argument(
        "--comment-interval-s",
        type=float,
        default=10.0,
        help="one comment per viewer per N seconds (default 10)",
    )
    live.add_argument("--comments-per-minute", type=int, default=30, help="all viewers together (default 30)")
    live.add_argument(
        "--no-read-comments", action="store_true", help="answer without first reading the comment aloud"
    )

    sub.add_parser("probe", help="measure a running server with a headless WebRTC client", add_help=False)

    _add_library_parser(sub)

    preview = sub.add_parser("preview", help="draw the detected face and landmarks on the photo (PNG)")
    preview.add_argument("--photo", required=True, type=Path)
    preview.add_argument("--size", type=int)
    preview.add_argument("--face", type=int)
    preview.add_argument("-o", "--output", type=Path, default=Path("preview.png"))
    preview.add_argument(
        "--landmarks",
        choices=("mediapipe", "face-alignment"),
        default="mediapipe",
        help="mediapipe: the embedded 478-point mesh the renderer uses (default); face-alignment: "
        "2D-FAN's 68 points, with its weights in $TORCH_HOME (`avatar models download face-alignment`)",
    )
    add_webui_parser(sub)
    add_models_parser(sub)
    return parser


def _add_on_air_options(parser: argparse.ArgumentParser, *, default_port: int, listening: bool) -> None:
    """Who is on air and where the server listens: shared by `serve` and `live`."""
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--photo", type=Path, help=f"portrait photo (default {DEFAULT_SERVE_PHOTO})")
    who.add_argument(
        "--avatar",
        metavar="NAME",
        help="a library avatar: its photo, face, matched voice, language, persona and knowledge",
    )
    parser.add_argument(
        "--library",
        type=Path,
        metavar="DIR",
        help="avatar library folder (default: $AVATAR_LIBRARY, else ~/.local/share/talking-avatar/avatars)",
    )
    parser.add_argument(
        "--size", type=int, default=512, help="longest side of the video in pixels (default 512)"
    )
    parser.add_argument("--face", type=int, help="which face when the photo has several (0 = largest)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument("--token", help="require 'Authorization: Bearer TOKEN' (default: env AVATAR_TOKEN)")
    parser.add_argument(
        "--llm",
        choices=("stub", "answerer", "openai", "local"),
        help="stub: instant fixed reply (benchmarks); answerer: offline knowledge-base answers; "
        "openai: any OpenAI-compatible server (Ollama, vLLM, llama.cpp, DashScope, OpenAI); "
        "local: a transformers chat model folder (default: $AVATAR_LLM, else answerer when there is a "
        "knowledge file, else stub)",
    )
    parser.add_argument(
        "--llm-url",
        metavar="URL",
        help="--llm openai: server base URL, e.g. http://127.0.0.1:11434/v1 (default: $AVATAR_LLM_BASE_URL); "
        "the key comes from $AVATAR_LLM_API_KEY or $OPENAI_API_KEY",
    )
    parser.add_argument(
        "--llm-model", metavar="NAME", help="--llm openai: model name (default: $AVATAR_LLM_MODEL)"
    )
    parser.add_argument(
        "--llm-model-dir", type=Path, metavar="DIR", help="--llm local: a transformers chat model folder"
    )
    if listening:  # `live` only speaks; `serve` listens too
        _add_asr_options(parser)
    _add_neural_render_options(parser, on_air=True)
    parser.add_argument(
        "--knowledge",
        type=Path,
        action="append",
        default=[],
        help="FAQ / markdown / text file for --llm answerer (repeatable)",
    )
    parser.add_argument("--persona", help="the avatar's name (default: the library name, else Mona)")
    parser.add_argument(
        "--lang", choices=("en", "zh"), help="voice language (default: detected per sentence)"
    )


def _add_neural_render_options(parser: argparse.ArgumentParser, *, on_air: bool = False) -> None:
    """Engines by name (`avatar models` shows which can run here). On air (serve, live) the
    procedural renderer draws every frame; Wav2Lip is for rendered videos."""
    from avatar.engines.choice import LIPSYNC_ENGINES, TTS_ENGINES

    group = parser.add_argument_group("neural engines (see `avatar models`)")
    if on_air:
        group.add_argument(
            "--voice",
            type=Path,
            metavar="SAMPLE",
            help="--tts cosyvoice/cosyvoice-http: the recording to clone (default: the library avatar's sample)",
        )
    group.add_argument(
        "--tts",
        choices=TTS_ENGINES,
        default=os.environ.get("AVATAR_TTS", "embedded"),
        help="embedded: Piper/Mandarin voice, DSP-matched to --voice (default, or $AVATAR_TTS); cosyvoice: zero-shot "
        "cloning of --voice with your CosyVoice checkout; cosyvoice-http: its FastAPI server; "
        "dashscope: Alibaba Cloud's CosyVoice API with an enrolled voice",
    )
    if not on_air:
        group.add_argument(
            "--lipsync",
            choices=LIPSYNC_ENGINES,
            default=os.environ.get("AVATAR_LIPSYNC", "procedural"),
            help="procedural: embedded (default, or $AVATAR_LIPSYNC); wav2lip / wav2lip_gan: the Wav2Lip "
            "network draws the mouth",
        )
    group.add_argument("--voice-text", help="what the --voice recording says (cloning; default: transcribed)")
    group.add_argument("--cosyvoice-version", type=int, choices=(2, 3), default=2)
    group.add_argument(
        "--cosyvoice-model-dir",
        type=Path,
        metavar="DIR",
        help="CosyVoice model folder (default: `avatar models path cosyvoice2`)",
    )
    group.add_argument(
        "--cosyvoice-checkout",
        type=Path,
        metavar="DIR",
        help="your git clone of FunAudioLLM/CosyVoice (default: $COSYVOICE_HOME)",
    )
    group.add_argument(
        "--cosyvoice-url", metavar="URL", help="--tts cosyvoice-http server (default: $AVATAR_COSYVOICE_URL)"
    )
    group.add_argument("--dashscope-voice", metavar="ID", help="--tts dashscope: your enrolled voice id")
    if not on_air:
        group.add_argument(
            "--wav2lip-checkpoint",
            type=Path,
            metavar="FILE",
            help="wav2lip(.gan).pth (default: `avatar models path wav2lip`)",
        )
    group.add_argument("--device", default="cpu", help="cpu (default) or cuda, for wav2lip and cosyvoice")


def engine_choice(args: argparse.Namespace, voice_text: str | None = None):
    from avatar.engines.choice import EngineChoice

    choice = EngineChoice(
        tts=args.tts,
        lipsync=getattr(args, "lipsync", "procedural"),
        cosyvoice_version=args.cosyvoice_version,
        cosyvoice_model_dir=args.cosyvoice_model_dir,
        cosyvoice_checkout=args.cosyvoice_checkout,
        cosyvoice_url=args.cosyvoice_url,
        dashscope_voice=args.dashscope_voice,
        voice_text=args.voice_text or voice_text,
        wav2lip_checkpoint=getattr(args, "wav2lip_checkpoint", None),
        device=args.device,
    )
    choice.validate()
    return choice


def _add_asr_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--asr",
        choices=("whisper", "sensevoice"),
        default=os.environ.get("AVATAR_ASR", "whisper"),
        help="whisper: embedded, offline (default, or $AVATAR_ASR); sensevoice: SenseVoiceSmall via funasr, also hears the "
        "speaker's emotion and audio events (needs pip install '.[asr]' and `avatar models download sensevoice`)",
    )
    parser.add_argument(
        "--asr-model-dir",
        type=Path,
        metavar="DIR",
        help="--asr sensevoice: the model folder (default: `avatar models path sensevoice`)",
    )


def _add_library_parser(sub) -> None:
    library = sub.add_parser(
        "library",
        help="create and manage named avatars (photo + voice + persona + knowledge)",
        description="Named avatars, reusable with --avatar NAME in render and serve.",
        epilog=LIBRARY_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = library.add_subparsers(dest="library_command", metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--library",
        type=Path,
        metavar="DIR",
        help="library folder (default: $AVATAR_LIBRARY, else ~/.local/share/talking-avatar/avatars)",
    )

    create = actions.add_parser(
        "create", parents=[common], help="check a photo (and voice sample) and save them as an avatar"
    )
    create.add_argument("name", help="display name, any script, up to 64 characters")
    create.add_argument("--photo", required=True, type=Path, help="portrait photo with one clear face")
    create.add_argument("--voice", type=Path, metavar="SAMPLE", help="3-30 s recording of the avatar's voice")
    create.add_argument(
        "--transcript", metavar="TEXT", help="what the voice sample says (default: transcribed by Whisper)"
    )
    create.add_argument(
        "--no-transcribe", action="store_true", help="store no transcript instead of running Whisper"
    )
    create.add_argument("--lang", choices=("en", "zh"), help="speech language (default: detect per sentence)")
    persona = create.add_mutually_exclusive_group()
    persona.add_argument("--persona", default="", metavar="TEXT", help="persona / system prompt text")
    persona.add_argument(
        "--persona-file", type=Path, metavar="FILE", help="read the persona from a UTF-8 file"
    )
    create.add_argument(
        "--knowledge", type=Path, metavar="FILE", help="FAQ / markdown / text file for the offline answerer"
    )
    create.add_argument(
        "--face", type=int, metavar="N", help="which face when the photo has several (0 = largest)"
    )

    show = actions.add_parser("list", parents=[common], help="list the avatars")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    for verb, text in (
        ("rename", "change an avatar's name"),
        ("duplicate", "copy an avatar under a new name"),
    ):
        action = actions.add_parser(verb, parents=[common], help=text)
        action.add_argument("avatar", help="name or slug")
        action.add_argument("new_name", help="the new display name")
    delete = actions.add_parser("delete", parents=[common], help="delete an avatar")
    delete.add_argument("avatar", help="name or slug")
    export = actions.add_parser("export", parents=[common], help="write an avatar to one .zip file")
    export.add_argument("avatar", help="name or slug")
    export.add_argument("-o", "--output", type=Path, default=Path("."), help="file or folder (default: .)")
    load = actions.add_parser("import", parents=[common], help="add an avatar from an exported .zip")
    load.add_argument("archive", type=Path)
    load.add_argument("--name", help="import under this name (default: the name in the archive)")
    library.set_defaults(library_parser=library)


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
    from avatar.engines.choice import CLONING_ENGINES
    from avatar.render.job import RenderEngines, render_video
    from avatar.render.request import RenderRequest

    photo, voice, language, face = args.photo, args.voice, args.lang, args.face
    voice_text = None
    if args.avatar is not None:
        from avatar.library.store import AvatarLibrary

        record = AvatarLibrary(args.library).get(args.avatar)
        photo = record.photo_path
        if voice is None and args.audio is None:  # a recording is lip-synced as it is
            # cloning needs the recording itself and what it says; DSP matching its profile
            cloning = args.tts in CLONING_ENGINES
            voice = record.voice_sample_path if cloning else record.voice_profile_path
            voice_text = record.settings.voice_transcript if cloning else None
        language = language or record.settings.language
        face = face if face is not None else record.settings.face_index
    text = args.text if args.text_file is None else _read_text_option(args.text_file, "--text-file")
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
    engines = RenderEngines(choice=engine_choice(args, voice_text))
    progress, close = _progress_bar(args.quiet)
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


def _cmd_batch(args: argparse.Namespace) -> int:
    from avatar.render.batch import run_batch

    report = run_batch(args.manifest, out_dir=args.out_dir, jobs=args.jobs)
    print(f"{len(report.succeeded)} succeeded, {len(report.failed)} failed")
    for failure in report.failed:
        print(f"failed: {failure}", file=sys.stderr)
    return 0 if not report.failed else 1


def _cmd_transcribe(args: argparse.Namespace) -> int:
    if args.asr == "whisper":
        from avatar.asr.whisper import transcribe_file

        transcript = transcribe_file(args.file, language=args.lang)
        print(f"[{transcript.language}] {transcript.text}")
        return 0
    from avatar.asr.sensevoice import SenseVoiceASR
    from avatar.core.audio_io import load_audio
    from avatar.engines.registry import engine_dir

    asr = SenseVoiceASR(args.asr_model_dir or engine_dir("sensevoice")).load()
    transcript = asr.transcribe(load_audio(args.file, sample_rate_hz=16000), language=args.lang)
    tags = [transcript.language, transcript.emotion or "unknown", *transcript.events]
    print(f"[{' | '.join(tags)}] {transcript.text}")
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
    from avatar.engines.live_set import LiveEngines
    from avatar.live.server import LiveServer

    _require_live_extra("the live server")
    config = live_config(args)
    engines = _load_engines(args, config.photo_path, lambda: LiveEngines(config).load())
    token = args.token or os.environ.get("AVATAR_TOKEN") or None
    server = LiveServer(
        engines, token=token, ice_servers=tuple(args.ice_server), max_sessions=args.max_sessions
    )
    banner = f"open http://{args.host}:{args.port}/ to talk to {config.persona_name}"
    return _run_web_app(args, server.app(), engines, banner)


def _cmd_live(args: argparse.Namespace) -> int:
    from avatar.broadcast.server import BroadcastConfig, BroadcastServer, load_engines

    _require_live_extra("the livestream host")
    from avatar.core.heap_trim import limit_malloc_arenas

    limit_malloc_arenas()  # an always-on process: keep glibc's freed memory from ratcheting up
    # bad URLs and scripts fail here, before the slow loads
    from avatar.broadcast.outputs import check_segment_length, check_target

    for url in args.rtmp:
        check_target("rtmp", url)
    if args.record is not None:
        check_segment_length(args.segment_s)
    script = ()
    if args.script is not None:
        from avatar.broadcast.show_script import load_show_script

        script = tuple(load_show_script(args.script))
    config = BroadcastConfig(
        live=live_config(args),
        script=script,
        loop_script=not args.once,
        rtmp_urls=tuple(args.rtmp),
        record_dir=args.record,
        segment_s=args.segment_s,
        keyframe_interval_s=args.keyframe_s,
        video_kbps=args.video_kbps,
        blocklist_path=args.blocklist,
        comment_interval_s=args.comment_interval_s,
        comments_per_minute=args.comments_per_minute,
        read_comments_aloud=not args.no_read_comments,
        library_root=args.library,
        token=args.token or os.environ.get("AVATAR_TOKEN") or None,
    )
    engines = _load_engines(args, config.live.photo_path, lambda: load_engines(config))
    where = f"http://{args.host}:{args.port}"
    banner = f"on air: operator page {where}/ , viewer comments {where}/comment"
    return _run_web_app(args, BroadcastServer(config, engines).app(), engines, banner)


def _require_live_extra(what: str) -> None:
    try:
        import aiohttp  # noqa: F401
    except ImportError as exc:
        raise AvatarError(f"{what} needs the live extra", "pip install '.[live]'") from exc


def _load_engines(args: argparse.Namespace, photo: Path, load):
    """Logging on, loopback-only ICE when asked (AVATAR_LOOPBACK_ONLY=1: tests, benchmarks), then
    the slow engine load, announced."""
    import logging

    from tests.support.loopback_ice import install_from_env

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    install_from_env()
    print(f"loading engines for {args.avatar or photo} ...", file=sys.stderr)
    return load()


def _run_web_app(args: argparse.Namespace, app, engines, banner: str) -> int:
    """Serve until Ctrl+C, then close the engines."""
    from aiohttp import web

    print(banner, file=sys.stderr)
    try:
        web.run_app(app, host=args.host, port=args.port, print=None)
    finally:
        engines.close()
    return 0


def live_config(args: argparse.Namespace):
    """The LiveConfig of `avatar serve`: from --photo and flags, or from a library avatar.

    Explicit flags win over the avatar's settings; the avatar's knowledge file comes first and
    --knowledge files are added to it.
    """
    from avatar.engines.live_set import LiveConfig

    photo, face, language = args.photo or DEFAULT_SERVE_PHOTO, args.face, args.lang
    persona_name, persona_prompt, voice_profile, label = args.persona or "Mona", "", None, None
    knowledge = list(args.knowledge)
    sample, sample_text = args.voice, None
    if args.avatar is not None:
        from avatar.library.store import AvatarLibrary

        record = AvatarLibrary(args.library).get(args.avatar)
        settings = record.settings
        photo, voice_profile, persona_prompt = record.photo_path, record.voice_profile_path, settings.persona
        if sample is None:
            sample, sample_text = record.voice_sample_path, settings.voice_transcript
        face = face if face is not None else settings.face_index
        language = language or settings.language
        persona_name = args.persona or settings.name
        label = record.label
        if record.knowledge_path is not None:
            knowledge.insert(0, record.knowledge_path)
    return LiveConfig(
        photo_path=photo,
        size_px=args.size,
        face_index=face,
        llm=args.llm or os.environ.get("AVATAR_LLM") or ("answerer" if knowledge else "stub"),
        knowledge_paths=tuple(knowledge),
        persona_name=persona_name,
        language=language,
        voice_profile_path=voice_profile,
        persona_prompt=persona_prompt,
        avatar_label=label,
        llm_url=args.llm_url,
        llm_model=args.llm_model,
        llm_model_dir=args.llm_model_dir,
        asr=getattr(args, "asr", "whisper"),
        asr_model_dir=getattr(args, "asr_model_dir", None),
        tts_choice=engine_choice(args, sample_text),  # --voice-text wins over the avatar's transcript
        voice_sample_path=sample,
    )


def _cmd_library(args: argparse.Namespace) -> int:
    from avatar.library.store import AvatarLibrary

    command = args.library_command
    if command is None:
        args.library_parser.print_help()
        return 2
    if command == "create":
        return _library_create(args)
    library = AvatarLibrary(args.library)
    if command == "list":
        return _library_list(library, args.json)
    if command == "rename":
        record = library.rename(args.avatar, args.new_name)
        print(f"renamed to {record.label}")
    elif command == "duplicate":
        record = library.duplicate(args.avatar, args.new_name)
        print(f"created {record.label} as a copy of {args.avatar}")
    elif command == "delete":
        record = library.get(args.avatar)
        library.delete(record.slug)
        print(f"deleted {record.label}")
    elif command == "export":
        print(f"wrote {library.export(args.avatar, args.output)}")
    elif command == "import":
        record = library.import_archive(args.archive, name=args.name)
        _print_warnings(record.warnings)
        print(f"imported {record.label} into {library.root}")
    return 0


def _read_text_option(path: Path, flag: str) -> str:
    """A UTF-8 text file named on the command line, or one line saying why it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AvatarError(f"cannot read {flag} {path}: {exc}") from exc


def _library_create(args: argparse.Namespace) -> int:
    """Transcribe the voice sample unless told not to, then check and save everything."""
    from avatar.library.store import AvatarLibrary

    library = AvatarLibrary(args.library)  # opens (and tidies) the folder before the slow steps
    persona = (
        args.persona if args.persona_file is None else _read_text_option(args.persona_file, "--persona-file")
    )
    transcript, warnings = args.transcript or "", []
    if args.voice is not None and args.transcript is None and not args.no_transcribe:
        from avatar.library.checks import check_voice_sample

        check = check_voice_sample(args.voice, transcribe=True)
        transcript, warnings = check.transcript, list(check.warnings)
    record = library.create(
        args.name,
        args.photo,
        args.voice,
        transcript=transcript,
        language=args.lang,
        persona=persona,
        knowledge=args.knowledge,
        face_index=args.face,
    )
    _print_warnings(list(dict.fromkeys([*warnings, *record.warnings])))
    print(f"created {record.label} in {record.folder}")
    if transcript:
        print(f"voice transcript: {transcript}")
    return 0


def _library_list(library, as_json: bool) -> int:
    import json

    records = library.list()
    if as_json:
        rows = [
            {
                "slug": record.slug,
                "folder": str(record.folder),
                "voice": record.voice_profile_path is not None,
                "knowledge": record.knowledge_path is not None,
                **dataclasses.asdict(record.settings),
            }
            for record in records
        ]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    if not records:
        print(f"no avatars in {library.root} (create one: avatar library create NAME --photo PHOTO)")
        return 0
    width = max(len(record.slug) for record in records)
    for record in records:
        extras = [
            record.settings.language or "auto",
            "voice" if record.voice_profile_path else "default voice",
            *(["knowledge"] if record.knowledge_path else []),
        ]
        print(f"{record.slug:<{width}}  {record.settings.name}  ({', '.join(extras)})")
    return 0


def _print_warnings(warnings) -> None:
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)


def _cmd_preview(args: argparse.Namespace) -> int:
    from lipsync.avatar_assets import prepare_avatar
    from lipsync.preview import draw_fan_preview, draw_preview

    if args.landmarks == "face-alignment":
        count = draw_fan_preview(args.photo, args.output)
        print(f"wrote {args.output} ({count} face{'s' if count != 1 else ''}, 68 points each)")
        return 0

    assets = prepare_avatar(args.photo, args.size, args.face)
    draw_preview(assets, args.output)
    for note in assets.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(argv) if argv is not None else sys.argv[1:]
    if argv and argv[0] == "probe":  # the probe has its own parser (it is also a library entry)
        from tests.support.live_probe import probe_main

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
        "live": _cmd_live,
        "preview": _cmd_preview,
        "library": _cmd_library,
        "webui": run_webui,
        "models": run_models,
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
