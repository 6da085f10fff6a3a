"""`avatar` command line: the parser assembly and `main()`; one module per command group.

    render.py   render, batch, preview          speech.py   transcribe, voice-profile
    live.py     serve, live                     library.py  library create|list|...
    models.py   models [download|path]          webui/cli_args.py   webui
    api.py      api (HTTP service: videos, avatars, live sessions; local or Ray backend)

Each module adds its own subparser and a thin command function over library functions
(`set_defaults(run=...)`). argparse is built inside `main()` (never at import) and engines load
only inside the command that needs them, so `avatar --help` answers instantly. Every AvatarError
becomes one line on stderr and a non-zero exit code; no traceback for bad input.
"""

from __future__ import annotations

import argparse
import sys

from avatar.core.errors import AvatarError
from avatar.core.stop_signals import Terminated

EXAMPLES = """examples:
  avatar render --photo me.jpg --text "Hello! [happy] Nice to meet you." -o hello.mp4
  avatar render --photo me.jpg --audio speech.wav -o lipsync.mp4
  avatar render --photo me.jpg --text "你好，欢迎光临。" --voice my_voice.wav -o zh.mp4
  avatar batch jobs.csv --out-dir videos/ --jobs 2
  avatar batch jobs.csv --out-dir /mnt/shared/videos --ray auto    # on a Ray cluster
  avatar transcribe speech.wav
  avatar voice-profile my_voice.wav -o me.voice.json
  avatar library create Mona --photo me.jpg --voice my_voice.wav --knowledge faq.md
  avatar render --avatar Mona --text "Hello!" -o hello.mp4
  avatar serve --avatar Mona
  avatar live --script show.md --rtmp rtmp://127.0.0.1:1935/live/show
  avatar webui                      # the web console on http://127.0.0.1:7860/
  avatar api                        # HTTP API on http://127.0.0.1:8000/ (OpenAPI at /docs)
"""


def _build_parser() -> argparse.ArgumentParser:
    from avatar.cli.api import add_api_parser
    from avatar.cli.library import add_library_parser
    from avatar.cli.live import add_live_parsers
    from avatar.cli.models import add_models_parser, run_models
    from avatar.cli.render import add_render_parsers
    from avatar.cli.speech import add_speech_parsers
    from webui.cli_args import add_webui_parser, run_webui

    parser = argparse.ArgumentParser(
        prog="avatar",
        description="Talking avatar from one photo: lip-synced video, offline, on the CPU.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    add_render_parsers(sub, epilog=EXAMPLES)
    add_speech_parsers(sub)
    add_live_parsers(sub)
    add_library_parser(sub)
    add_api_parser(sub)
    add_webui_parser(sub).set_defaults(run=run_webui)
    add_models_parser(sub).set_defaults(run=run_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(argv) if argv is not None else sys.argv[1:]
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from avatar import __version__

        print(__version__)
        return 0
    run = getattr(args, "run", None)
    if run is None:
        parser.print_help()
        return 2
    try:
        return run(args)
    except AvatarError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Terminated as exc:  # SIGTERM inside a command that cleans up first (`stop_signals`)
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
