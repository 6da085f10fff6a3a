"""`avatar models`: list every engine, say whether it can run here, fetch or locate its weights.

The `models` command group of the CLI (avatar/cli/__init__.py adds it with
`add_models_parser(sub)` and runs `run_models`). Listing is find_spec + stat only, so it answers in milliseconds; the
only command that touches the network is `avatar models download`, and only when typed.

    avatar models [--json] [--dir PATH]
    avatar models download NAME [--hub huggingface|modelscope] [--dir PATH]
    avatar models path NAME [--dir PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from avatar.engines.registry import (
    HUBS,
    LOCATION_NONE,
    EngineStatus,
    check_engine,
    engine_dir,
    engine_names,
    get_spec,
    models_root,
)

EXAMPLES = """examples:
  avatar models                              # what can run here, and the fix for what cannot
  avatar models --json
  avatar models download sensevoice          # from Hugging Face
  avatar models download cosyvoice2 --hub modelscope
  avatar models path wav2lip_gan             # where to copy wav2lip_gan.pth by hand

Weights live in $AVATAR_MODELS_DIR (default ~/.cache/talking-avatar/models)/<engine>/; each engine
also has its own variable (e.g. $AVATAR_SENSEVOICE_DIR). face-alignment reads $TORCH_HOME/hub/checkpoints.
"""


def add_models_parser(sub) -> argparse.ArgumentParser:
    """Register `avatar models` on the CLI's subparsers object."""
    models = sub.add_parser(
        "models",
        help="list the engines and their weights; download or locate weights",
        description="List every engine, whether it can run here, and the exact fix when it cannot.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # SUPPRESS: `--dir` may come before or after the action without one default hiding the other
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--dir",
        type=Path,
        default=argparse.SUPPRESS,
        help="models root (default: $AVATAR_MODELS_DIR or the cache)",
    )
    models.add_argument("--dir", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    models.add_argument("--json", action="store_true", help="machine-readable output")
    actions = models.add_subparsers(dest="models_action")
    listing = actions.add_parser("list", parents=[common], help="list the engines (the default)")
    listing.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    download = actions.add_parser("download", parents=[common], help="fetch an engine's weights from a hub")
    download.add_argument("name", help=f"engine name ({', '.join(_downloadable())})")
    download.add_argument("--hub", choices=HUBS, help="default: the engine's first hub (usually huggingface)")
    path = actions.add_parser(
        "path", parents=[common], help="print the folder an engine reads its weights from"
    )
    path.add_argument("name")
    return models


def _downloadable() -> list[str]:
    return [name for name in engine_names() if get_spec(name).hub_sources]


def _status_text(status: EngineStatus) -> str:
    spec = get_spec(status.name)
    if status.available:
        return "available"
    first = status.missing[0]
    if first in spec.python_modules:
        if spec.checkout is not None and first in spec.checkout.modules:
            return f"no package: {first} (git checkout)"
        return f"no package: pip install '.[{spec.extra}]'" if spec.extra else f"no package: {first}"
    if first.startswith("$"):
        return f"not configured: {first}"
    return f"missing: {first}"


def _path_text(status: EngineStatus) -> str:
    spec = get_spec(status.name)
    if spec.location != LOCATION_NONE:
        return str(status.path)
    return {"embedded": "(bundled)", "service": "(remote)"}.get(spec.tier, "(a folder you name)")


def _rows(root: Path | None) -> list[dict]:
    rows = []
    for name in engine_names():
        spec, status = get_spec(name), check_engine(name, root)
        rows.append(
            {
                "name": name,
                "stage": spec.stage,
                "tier": spec.tier,
                "available": status.available,
                "status": _status_text(status),
                "path": _path_text(status),
                "missing": list(status.missing),
                "fix": status.fix,
                "how_to_enable": spec.how_to_enable,
                "extra": spec.extra,
                "env_var": spec.env_var,
                "hardware": spec.hardware,
                "description": spec.description,
            }
        )
    return rows


def format_table(rows: list[dict]) -> str:
    """Aligned columns; the last one is the fix when unavailable, else how to turn it on."""
    header = ("ENGINE", "STAGE", "STATUS", "PATH", "FIX / HOW TO ENABLE")
    cells = [
        (
            row["name"],
            row["stage"],
            row["status"],
            row["path"],
            row["how_to_enable"] if row["available"] else row["fix"],
        )
        for row in rows
    ]
    widths = [max(len(line[column]) for line in [header, *cells]) for column in range(len(header) - 1)]
    lines = []
    for line in [header, *cells]:
        lines.append(
            "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=False)) + "  " + line[-1]
        )
    return "\n".join(lines)


def run_models(args: argparse.Namespace) -> int:
    root: Path | None = getattr(args, "dir", None)
    action = getattr(args, "models_action", None) or "list"
    if action == "list":
        rows = _rows(root)
        if getattr(args, "json", False):
            print(json.dumps(rows, indent=2, ensure_ascii=False))
        else:
            available = sum(row["available"] for row in rows)
            print(format_table(rows))
            print(f"\n{available} of {len(rows)} engines can run here; models root: {root or models_root()}")
        return 0
    if action == "path":
        get_spec(args.name)  # unknown name -> InputError with the known names
        print(engine_dir(args.name, root))
        return 0
    from avatar.engines.download import download_engine

    def say(message: str) -> None:
        print(message, file=sys.stderr)

    directory = download_engine(args.name, hub=args.hub, root=root, progress=say)
    print(f"{args.name}: ready in {directory}")
    if (
        root is not None
        and directory == Path(root) / args.name
        and Path(root).resolve() != models_root().resolve()
    ):
        print(f"note: set AVATAR_MODELS_DIR={root} so the engines look there", file=sys.stderr)
    return 0
