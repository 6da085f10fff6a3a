"""`python -m webui [options]`: the same as `avatar webui`, usable without the avatar CLI."""

from __future__ import annotations

import argparse
import sys

from avatar.core.errors import AvatarError
from webui.cli_args import add_webui_parser, run_webui


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m")  # the subcommand adds " webui"
    sub = parser.add_subparsers(dest="command")
    add_webui_parser(sub)
    args = parser.parse_args(["webui", *(sys.argv[1:] if argv is None else argv)])
    try:
        return run_webui(args)
    except AvatarError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
