"""`avatar library create|list|rename|duplicate|delete|export|import`: named avatars.

Thin commands over avatar.library.store.AvatarLibrary, which the web console uses too.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from avatar.cli.options import add_library_option, print_warnings, read_text_option

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


def add_library_parser(sub) -> None:
    """Register `avatar library` and its actions on the CLI's subparsers object."""
    library = sub.add_parser(
        "library",
        help="create and manage named avatars (photo + voice + persona + knowledge)",
        description="Named avatars, reusable with --avatar NAME in render and serve.",
        epilog=LIBRARY_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = library.add_subparsers(dest="library_command", metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    add_library_option(
        common, "library folder (default: $AVATAR_LIBRARY, else ~/.local/share/talking-avatar/avatars)"
    )
    _add_create_parser(actions, common)
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
    library.set_defaults(library_parser=library, run=cmd_library)


def _add_create_parser(actions, common: argparse.ArgumentParser) -> None:
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


def cmd_library(args: argparse.Namespace) -> int:
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
        print_warnings(record.warnings)
        print(f"imported {record.label} into {library.root}")
    return 0


def _library_create(args: argparse.Namespace) -> int:
    """Transcribe the voice sample unless told not to, then check and save everything."""
    from avatar.library.store import AvatarLibrary

    library = AvatarLibrary(args.library)  # opens (and tidies) the folder before the slow steps
    persona = (
        args.persona if args.persona_file is None else read_text_option(args.persona_file, "--persona-file")
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
    print_warnings(list(dict.fromkeys([*warnings, *record.warnings])))
    print(f"created {record.label} in {record.folder}")
    if transcript:
        print(f"voice transcript: {transcript}")
    return 0


def _library_list(library, as_json: bool) -> int:
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
