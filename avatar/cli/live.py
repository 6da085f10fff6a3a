"""`avatar serve` (live conversation in a browser) and `avatar live` (livestream host).

Both put an avatar on air with the same options (`add_on_air_options`) and the same LiveConfig
(`live_config`); the commands check cheap things first (flags, URLs, scripts), then load the
engines and serve until Ctrl+C.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from avatar.cli.options import add_asr_options, add_library_option, add_neural_render_options, engine_choice
from avatar.core.errors import AvatarError

DEFAULT_SERVE_PHOTO = Path("assets/sample_portrait.jpg")
LIVE_EXAMPLES = """examples:
  avatar live --script assets/scripts/shop_show.md --knowledge assets/knowledge/shop_faq.md \\
      --rtmp rtmp://127.0.0.1:1935/live/show --record recordings/
  avatar live --avatar Mona --script show.md --once --rtmp rtmp://live.example.com/app/KEY
  curl -X POST localhost:8090/api/comments -d '{"user": "ann", "text": "When do you open?"}'
  curl -X POST localhost:8090/api/control/pause
"""


def add_live_parsers(sub) -> None:
    """Register serve and live on the CLI's subparsers object."""
    serve = sub.add_parser("serve", help="talk to the avatar live in a browser (WebRTC)")
    add_on_air_options(serve, default_port=8080, listening=True)
    serve.add_argument(
        "--ice-server", action="append", default=[], help="STUN/TURN URL for clients behind NAT"
    )
    serve.add_argument(
        "--max-sessions", type=int, default=8, help="sessions per process (with --ray: per worker)"
    )
    serve.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="place sessions on live workers of a Ray cluster (auto, or the head's host:port); this "
        "process serves the page and places each offer on the least-loaded worker",
    )
    serve.add_argument(
        "--live-workers", type=int, default=2, help="with --ray: live workers to start (default 2)"
    )
    serve.set_defaults(run=cmd_serve)
    _add_livestream_parser(sub)


def _add_livestream_parser(sub) -> None:
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
    add_on_air_options(live, default_port=8090, listening=False)
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
    live.set_defaults(run=cmd_live)


def add_on_air_options(parser: argparse.ArgumentParser, *, default_port: int, listening: bool) -> None:
    """Who is on air and where the server listens: shared by `serve` and `live`."""
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--photo", type=Path, help=f"portrait photo (default {DEFAULT_SERVE_PHOTO})")
    who.add_argument(
        "--avatar",
        metavar="NAME",
        help="a library avatar: its photo, face, matched voice, language, persona and knowledge",
    )
    add_library_option(parser)
    parser.add_argument(
        "--size", type=int, default=512, help="longest side of the video in pixels (default 512)"
    )
    parser.add_argument("--face", type=int, help="which face when the photo has several (0 = largest)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument("--token", help="require 'Authorization: Bearer TOKEN' (default: env AVATAR_TOKEN)")
    _add_llm_options(parser)
    if listening:  # `live` only speaks; `serve` listens too
        add_asr_options(parser)
        _add_turn_options(parser)
    add_neural_render_options(parser, on_air=True)
    parser.add_argument(
        "--knowledge",
        type=Path,
        action="append",
        default=[],
        help="FAQ / markdown / text file for --llm answerer (repeatable)",
    )
    parser.add_argument("--persona", help="the avatar's name (default: the library name, else Mona)")
    parser.add_argument(
        "--no-speech-cache",
        dest="speech_cache",
        action="store_false",
        help="say every sentence anew: none from memory, no known openings at start-up (benchmarks)",
    )
    parser.add_argument(
        "--lang", choices=("en", "zh"), help="voice language (default: detected per sentence)"
    )


def _add_llm_options(parser: argparse.ArgumentParser) -> None:
    from avatar.engines.replies import LLM_KINDS

    parser.add_argument(
        "--llm",
        choices=LLM_KINDS,
        help="answerer: offline answers from the knowledge files (without any, from built-in notes about "
        "the avatar); openai: any OpenAI-compatible server (Ollama, vLLM, llama.cpp, DashScope, OpenAI); "
        "gguf: a GGUF chat model run in this process (llama.cpp); local: a transformers chat model "
        "folder; stub: a fixed instant reply, for benchmarks only. Chat models answer from the "
        "--knowledge files too. (default: $AVATAR_LLM, else openai when --llm-url or $AVATAR_LLM_BASE_URL "
        "is set, else gguf when --llm-model-path is given or a GGUF model is in the models folder, "
        "else answerer)",
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
    parser.add_argument(
        "--llm-model-path",
        type=Path,
        metavar="FILE",
        help="--llm gguf: the .gguf chat model (default: the first in `avatar models path gguf`, else a "
        "downloaded one: `avatar models download qwen2.5-1.5b-instruct-gguf`)",
    )


def _add_turn_options(parser: argparse.ArgumentParser) -> None:
    """When the user's turn ends (avatar.turns): Smart Turn's decision, or a fixed silence."""
    from avatar.engines.registry import engine_options

    parser.add_argument(
        "--turn",
        choices=(*engine_options("turn"), "silence"),
        help="smart: Smart Turn v3.2 decides whether a pause ends your turn (waits through more pauses "
        "inside a sentence; in Mandarin also answers sooner); silence: the turn ends after --end-of-turn-ms "
        "of silence "
        "(default: smart when its model is installed, else silence)",
    )
    parser.add_argument(
        "--turn-check-ms",
        type=float,
        default=150.0,
        metavar="MS",
        help="--turn smart: silence before the model is asked (default 150)",
    )
    parser.add_argument(
        "--turn-fallback-ms",
        type=float,
        default=1200.0,
        metavar="MS",
        help="--turn smart: a turn the model calls unfinished still ends after this much silence (default 1200)",
    )
    parser.add_argument(
        "--turn-threshold",
        type=float,
        metavar="P",
        help="--turn smart: probability of 'finished' above which the turn ends at once "
        "(default: calibrated per language, see docs/measurements/turn_taking.md)",
    )
    parser.add_argument(
        "--turn-unsure-threshold",
        type=float,
        metavar="P",
        help="--turn smart: between this and --turn-threshold the turn ends after --end-of-turn-ms, "
        "below it after --turn-fallback-ms (default: calibrated per language)",
    )
    parser.add_argument(
        "--end-of-turn-ms",
        type=float,
        default=500.0,
        metavar="MS",
        help="silence that ends a turn with --turn silence, or when the turn model is unsure (default 500)",
    )


def _turn_settings(args: argparse.Namespace) -> dict:
    """LiveConfig's turn fields from the flags (`avatar live` has none: it does not listen)."""
    if not hasattr(args, "turn"):
        return {}
    if not 0 <= args.turn_check_ms < args.turn_fallback_ms:
        raise AvatarError(
            f"--turn-check-ms ({args.turn_check_ms:g}) must be below --turn-fallback-ms ({args.turn_fallback_ms:g})",
            "e.g. --turn-check-ms 150 --turn-fallback-ms 1200",
        )
    low, high = args.turn_unsure_threshold, args.turn_threshold
    if not 0 <= (low if low is not None else 0) <= (high if high is not None else 1) <= 1:
        raise AvatarError(
            f"need 0 <= --turn-unsure-threshold ({low}) <= --turn-threshold ({high}) <= 1",
            "e.g. --turn-unsure-threshold 0.2 --turn-threshold 0.5",
        )
    return {
        "turn": args.turn or "auto",
        "turn_check_silence_ms": args.turn_check_ms,
        "turn_fallback_silence_ms": args.turn_fallback_ms,
        "turn_threshold": args.turn_threshold,
        "turn_unsure_threshold": args.turn_unsure_threshold,
        "end_of_turn_silence_ms": args.end_of_turn_ms,
    }


def live_config(args: argparse.Namespace):
    """The LiveConfig of `avatar serve` / `avatar live`: from --photo and flags, or from a library
    avatar (`AvatarLibrary.inputs`).

    Explicit flags win over the avatar's settings; the avatar's knowledge file comes first and
    --knowledge files are added to it.
    """
    from avatar.engines.live_set import LiveConfig
    from avatar.engines.replies import resolve_llm

    photo, face, language = args.photo or DEFAULT_SERVE_PHOTO, args.face, args.lang
    persona_name, persona_prompt, voice_profile, label = args.persona or "Mona", "", None, None
    knowledge = list(args.knowledge)
    sample, sample_text = args.voice, None
    if args.avatar is not None:
        from avatar.library.store import AvatarLibrary

        avatar = AvatarLibrary(args.library).inputs(args.avatar)
        photo, voice_profile, persona_prompt = (
            avatar.photo_path,
            avatar.voice_profile_path,
            avatar.persona_prompt,
        )
        if sample is None:
            sample, sample_text = avatar.voice_sample_path, avatar.voice_transcript
        face = face if face is not None else avatar.face_index
        language = language or avatar.language
        persona_name = args.persona or avatar.name
        label = avatar.label
        knowledge = [*avatar.knowledge_paths, *knowledge]
    return LiveConfig(
        photo_path=photo,
        size_px=args.size,
        face_index=face,
        llm=resolve_llm(args.llm, args.llm_url, args.llm_model_path),
        knowledge_paths=tuple(knowledge),
        persona_name=persona_name,
        language=language,
        voice_profile_path=voice_profile,
        persona_prompt=persona_prompt,
        avatar_label=label,
        llm_url=args.llm_url,
        llm_model=args.llm_model,
        llm_model_dir=args.llm_model_dir,
        llm_model_path=args.llm_model_path,
        asr=getattr(args, "asr", "whisper"),
        asr_model_dir=getattr(args, "asr_model_dir", None),
        tts_choice=engine_choice(args, sample_text),  # --voice-text wins over the avatar's transcript
        voice_sample_path=sample,
        tts_stream=getattr(args, "tts_stream", True),
        speech_cache=getattr(args, "speech_cache", True),
        **_turn_settings(args),
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from avatar.playout.http_edge import require_secret_for_bind

    require_secret_for_bind(args.host, args.token or os.environ.get("AVATAR_TOKEN"))
    if args.ray:
        from avatar.cli.api import serve_on_ray

        return serve_on_ray(args)
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


def _broadcast_config(args: argparse.Namespace):
    """Bad URLs and scripts fail here, before the slow loads."""
    from avatar.broadcast.outputs import check_segment_length, check_target
    from avatar.broadcast.server import BroadcastConfig

    for url in args.rtmp:
        check_target("rtmp", url)
    if args.record is not None:
        check_segment_length(args.segment_s)
    script = ()
    if args.script is not None:
        from avatar.broadcast.show_script import load_show_script

        script = tuple(load_show_script(args.script))
    return BroadcastConfig(
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


def cmd_live(args: argparse.Namespace) -> int:
    from avatar.broadcast.server import BroadcastServer, load_engines
    from avatar.playout.http_edge import require_secret_for_bind

    require_secret_for_bind(args.host, args.token or os.environ.get("AVATAR_TOKEN"))

    _require_live_extra("the livestream host")
    from avatar.core.heap_trim import limit_malloc_arenas

    limit_malloc_arenas()  # an always-on process: keep glibc's freed memory from ratcheting up
    config = _broadcast_config(args)
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
    """Logging on, loopback-only ICE when asked (AVATAR_LOOPBACK_ONLY=1, see avatar.live.ice),
    then the slow engine load, announced."""
    import logging

    from avatar.live.ice import install_from_env

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    install_from_env()
    print(f"loading engines for {args.avatar or photo} ...", file=sys.stderr)
    return load()


def _run_web_app(args: argparse.Namespace, app, engines, banner: str) -> int:
    """Serve until Ctrl+C, then close the engines."""
    from aiohttp import web

    print(f"reply engine: {engines.reply_engine}", file=sys.stderr)
    if hasattr(args, "turn"):  # serve listens; live does not
        print(f"end of turn: {engines.turn_rule}", file=sys.stderr)
    print(banner, file=sys.stderr)
    from avatar.playout.http_edge import access_logger_class

    try:  # the access log leaves out query strings: a page opened with ?token= must not log it
        web.run_app(app, host=args.host, port=args.port, print=None, access_log_class=access_logger_class())
    finally:
        engines.close()
    return 0
