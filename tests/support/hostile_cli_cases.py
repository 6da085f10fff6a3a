"""Hostile files and arguments for the command line (issue 18): `avatar library import`,
`avatar render` / `avatar preview`, `avatar batch` manifests and `avatar live --script`.

Each case runs `avatar.cli.main` in this process (so its memory is measured like the servers')
and answers (exit code, the first line that says what was wrong). Every hostile case must end
with exit 2 and one line, before any engine loads: `avatar live` is stopped where it would load
its engines (that is what the health check's valid script must reach), and a render that got past
its checks would be slow and fail the case's expected exit code. The health checks run a valid
input of the same surface afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

from tests.conftest import SAMPLE_PORTRAIT, SAMPLE_VOICE
from tests.support.hostile_check import MAX_CLI_RSS_GROWTH_BYTES, Case, first_line
from tests.support.hostile_files import avatar_json, avatar_zip

ENGINES_WOULD_LOAD = 0  # the exit code reported when `avatar live` got past every check


class _EnginesWouldLoad(Exception):
    pass


def cli_run(*argv) -> tuple[int, str]:
    """`avatar ARGV` in this process: (exit code, the first line of stderr that says what failed)."""
    from avatar import cli

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli.main([str(a) for a in argv])
        except SystemExit as exit_:  # argparse's own one-line errors
            code = exit_.code if isinstance(exit_.code, int) else 2
    text = stderr.getvalue()
    said = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in said if "error" in line.lower() or line.startswith("failed:")] or said
    return code, (lines[0] if lines else "") + (" [Traceback]" if "Traceback" in text else "")


def command(surface: str, name: str, argv, expect=(2,)) -> Case:
    """A case running `avatar` with `argv(scratch)`: a list built from the scratch folder."""

    async def send(target) -> tuple[int, str]:  # in a thread, so that a hang times out
        return await asyncio.to_thread(cli_run, *argv(target.scratch))

    return Case(surface, name, send, expect, MAX_CLI_RSS_GROWTH_BYTES)


def write(path: Path, content: bytes | str) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    return path


# --- avatar library import ------------------------------------------------------------------------
def _import(name: str, make, *extra: str) -> Case:
    return command(
        "library import",
        name,
        lambda scratch: ["library", "import", make(scratch), "--library", scratch / "library", *extra],
    )


def _settings_zip(scratch: Path, settings: bytes) -> Path:
    path = avatar_zip(scratch / "s.zip", {"photo.jpg": SAMPLE_PORTRAIT.read_bytes()}, settings=False)
    import zipfile

    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("avatar.json", settings)
    return path


def library_cases() -> list[Case]:
    photo = {"photo.jpg": SAMPLE_PORTRAIT.read_bytes()}
    named = lambda name: avatar_json().replace(b'"Zed"', json.dumps(name).encode())  # noqa: E731
    return [
        _import("a text file named .zip", lambda s: write(s / "a.zip", "not a zip\n")),
        _import("an empty file", lambda s: write(s / "e.zip", b"")),
        _import("a file that does not exist", lambda s: s / "missing.zip"),
        _import("a folder", lambda s: s),
        _import(
            "a zip cut in half",
            lambda s: write(s / "h.zip", avatar_zip(s / "f.zip", photo).read_bytes()[:900]),
        ),
        _import("no avatar.json", lambda s: avatar_zip(s / "n.zip", photo, settings=False)),
        _import("avatar.json not JSON", lambda s: _settings_zip(s, b"{name: Zed")),
        _import("avatar.json a JSON array", lambda s: _settings_zip(s, b"[1, 2]")),
        _import("avatar.json 60 000-deep nested", lambda s: _settings_zip(s, b"[" * 60_000 + b"]" * 60_000)),
        _import("name with a NUL", lambda s: _settings_zip(s, named("Ze\x00d"))),
        _import("name with CR/LF", lambda s: _settings_zip(s, named("Zed\r\nAdmin"))),
        _import("name with an RTL override", lambda s: _settings_zip(s, named("\u202edeZ"))),
        _import("--name of 100 characters", lambda s: avatar_zip(s / "ok.zip", photo), "--name", "n" * 100),
        _import(
            "65 members",
            lambda s: avatar_zip(s / "m.zip", {**photo, **{f"x{i}.txt": b"x" for i in range(65)}}),
        ),
    ]


# --- avatar render / preview ----------------------------------------------------------------------
def _render(name: str, *options, expect=(2,)) -> Case:
    def argv(scratch: Path) -> list:
        built = [o(scratch) if callable(o) else o for o in options]
        if "--photo" not in built and "--avatar" not in built:
            built = ["--photo", SAMPLE_PORTRAIT, *built]
        if "-o" not in built:
            built += ["-o", scratch / "out.mp4"]
        return ["render", "-q", *built]

    return command("render CLI", name, argv, expect)


def render_cases() -> list[Case]:
    text = ["--text", "hello"]
    return [
        _render("--photo that does not exist", "--photo", lambda s: s / "no.jpg", *text),
        _render("--photo a folder", "--photo", lambda s: s, *text),
        _render("--photo a text file", "--photo", lambda s: write(s / "p.jpg", "hello\n"), *text),
        _render(
            "--photo truncated JPEG",
            "--photo",
            lambda s: write(s / "t.jpg", SAMPLE_PORTRAIT.read_bytes()[:200]),
            *text,
        ),
        _render('--text ""', "--text", ""),
        _render("--text of 100 001 characters", "--text", "a " * 50_001),
        _render("--text with an unknown tag", "--text", "[furious] hello"),
        _render("--text with a NUL", "--text", "hel\x00lo"),
        _render("--text-file that does not exist", "--text-file", lambda s: s / "none.txt"),
        _render("--text-file not UTF-8", "--text-file", lambda s: write(s / "l1.txt", b"caf\xe9 \xff\xfe")),
        _render("--audio not audio", "--audio", lambda s: write(s / "a.wav", b"RIFF\x00\x00junk" * 50)),
        _render("--audio a folder", "--audio", lambda s: s),
        _render("-o out.avi", *text, "-o", lambda s: s / "out.avi"),
        _render("-o in a folder that does not exist", *text, "-o", lambda s: s / "no" / "out.mp4"),
        _render("--emotion furious", *text, "--emotion", "furious"),
        _render("--size -5", *text, "--size", "-5"),
        _render(
            "--avatar with a 1000-character name",
            "--avatar",
            "a" * 1000,
            "--library",
            lambda s: s / "lib",
            *text,
        ),
        command(
            "render CLI",
            "preview --photo missing",
            lambda s: ["preview", "--photo", s / "none.png", "-o", s / "p.png"],
        ),
        command(
            "render CLI",
            "preview --photo a text file",
            lambda s: ["preview", "--photo", write(s / "x.png", "no"), "-o", s / "p.png"],
        ),
    ]


# --- avatar batch ---------------------------------------------------------------------------------
def _batch(name: str, manifest, expect=(2,), *extra: str) -> Case:
    return command(
        "batch manifest",
        name,
        lambda scratch: ["batch", manifest(scratch), "--out-dir", scratch / "videos", "--jobs", "1", *extra],
        expect,
    )


def _csv(scratch: Path, rows: str, suffix: str = ".csv") -> Path:
    return write(scratch / f"jobs{suffix}", "photo,text,output\n" + rows)


def batch_cases() -> list[Case]:
    photo = SAMPLE_PORTRAIT
    return [
        _batch("manifest that does not exist", lambda s: s / "none.csv"),
        _batch("empty manifest", lambda s: write(s / "e.csv", b"")),
        _batch("header only", lambda s: _csv(s, "")),
        _batch("binary garbage", lambda s: write(s / "g.csv", bytes(range(256)) * 8)),
        _batch("JSONL line that is an array", lambda s: write(s / "j.jsonl", "[1, 2]\n")),
        _batch("JSONL line not JSON", lambda s: write(s / "j.jsonl", '{"photo": \n')),
        _batch("row whose photo does not exist", lambda s: _csv(s, "nope.jpg,hello,a.mp4\n")),
        # checked in the worker (a process starts), so a row failure: exit 1 with "failed: line N"
        _batch(
            "row photo ../../../../etc/passwd",
            lambda s: _csv(s, "../../../../etc/passwd,hello,a.mp4\n"),
            (1,),
        ),
        _batch("NUL in a text cell", lambda s: _csv(s, f"{photo},hel\x00lo,a.mp4\n")),
        _batch("two rows write one output", lambda s: _csv(s, f"{photo},hello,a.mp4\n{photo},bye,a.mp4\n")),
        _batch("text of 100 001 characters", lambda s: _csv(s, f"{photo},{'a ' * 50_001},a.mp4\n")),
        _batch(
            "unknown emotion",
            lambda s: write(
                s / "j.jsonl", json.dumps({"photo": str(photo), "text": "hi", "emotion": "furious"}) + "\n"
            ),
        ),
        _batch("--jobs 0", lambda s: _csv(s, f"{photo},hello,a.mp4\n"), (2,), "--jobs", "0"),
    ]


# --- avatar live --script -------------------------------------------------------------------------
def _script(name: str, make, expect=(2,)) -> Case:
    async def send(target) -> tuple[int, str]:
        return await asyncio.to_thread(live_with_script, make(target.scratch))

    return Case("show script", name, send, expect, MAX_CLI_RSS_GROWTH_BYTES)


def live_with_script(script: Path) -> tuple[int, str]:
    """`avatar live --script SCRIPT`, stopped where the engines would load (exit 0 then)."""

    def stop(*args, **kwargs):
        raise _EnginesWouldLoad

    with (
        mock.patch("avatar.cli.live._load_engines", stop),
        mock.patch("avatar.core.heap_trim.limit_malloc_arenas", lambda *a: False),
    ):
        try:
            return cli_run("live", "--photo", SAMPLE_PORTRAIT, "--script", script)
        except _EnginesWouldLoad:
            return ENGINES_WOULD_LOAD, "every check passed; the engines would load now"


def script_cases() -> list[Case]:
    from avatar.core.text_script import MAX_SCRIPT_CHARS

    return [
        _script("script that does not exist", lambda s: s / "none.md"),
        _script("a folder", lambda s: s),
        _script("empty script", lambda s: write(s / "e.md", b"")),
        _script("only blank lines and a BOM", lambda s: write(s / "b.md", "\ufeff\n\n  \n")),
        _script("not UTF-8", lambda s: write(s / "l.md", b"caf\xe9 \xff\xfe\n")),
        _script("binary garbage", lambda s: write(s / "g.md", bytes(range(256)) * 16)),
        _script(
            f"over {MAX_SCRIPT_CHARS:,} characters",
            lambda s: write(s / "big.md", "word " * (MAX_SCRIPT_CHARS // 4)),
        ),
        _script("unknown tag [furious]", lambda s: write(s / "t.md", "[furious] Hello there.\n")),
        _script("a NUL in a line", lambda s: write(s / "n.md", "Hello\x00 there.\n")),
        _script("an unclosed tag", lambda s: write(s / "u.md", "[happy Hello there.\n")),
        _script("pause of 10^9 seconds", lambda s: write(s / "p.md", "Hello [pause 1000000000s] there.\n")),
    ]


# --- health checks --------------------------------------------------------------------------------
async def library_healthy(target) -> str:
    code, message = cli_run("library", "list", "--library", target.scratch / "library")
    return "ok" if code == 0 else f"library list: exit {code} {message}"


async def render_healthy(target) -> str:
    from avatar.render.job import validate_request
    from avatar.render.request import RenderRequest

    validate_request(RenderRequest(SAMPLE_PORTRAIT, target.scratch / "ok.mp4", text="hello"))
    validate_request(RenderRequest(SAMPLE_PORTRAIT, target.scratch / "ok.mp4", audio_path=SAMPLE_VOICE))
    return "ok"


async def batch_healthy(target) -> str:
    from avatar.render.batch import read_manifest

    jobs = read_manifest(_csv(target.scratch, f"{SAMPLE_PORTRAIT},hello,ok.mp4\n"), target.scratch / "v")
    return "ok" if len(jobs) == 1 else f"a valid manifest read as {len(jobs)} jobs"


async def script_healthy(target) -> str:
    code, message = live_with_script(write(target.scratch / "ok.md", "[happy] Hello there.\n\nBye!\n"))
    return "ok" if code == ENGINES_WOULD_LOAD else f"a valid script: exit {code} {message}"


@contextlib.asynccontextmanager
async def surface_target(surface: str, scratch: Path):
    (scratch / "library").mkdir(exist_ok=True)
    yield SimpleNamespace(scratch=scratch)


SURFACES = {
    "library import": (library_healthy, library_cases),
    "render CLI": (render_healthy, render_cases),
    "batch manifest": (batch_healthy, batch_cases),
    "show script": (script_healthy, script_cases),
}
__all__ = ["SURFACES", "first_line", "surface_target"]
