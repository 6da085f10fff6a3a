"""Replay issue 18's hostile inputs and print what each surface answers, one JSON line per case.

    python -m tests.support.hostile_probe            # in this tree (after)
    python -m tests.support.hostile_probe --table    # every case of hostile_cases.py, a Markdown table
    cd OLD_TREE && python -m tests.support.hostile_probe   # the same probe on older code (before)

It drives the same in-process apps and files as tests/test_hostile_inputs.py and
tests/test_hostile_files.py (no engine loads; the slow-bodies cap is measured by that test) and
reports status codes, exit codes and messages, or the exception a case escaped with. The table
in docs/measurements/hostile_inputs.md is its output before and after the fixes.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import sys
import tempfile
from pathlib import Path

from tests.conftest import SAMPLE_PORTRAIT, SAMPLE_VOICE
from tests.support.edge_servers import TOKEN, broadcast_server, live_server, raw_request, served
from tests.support.hostile_files import avatar_zip, mark_encrypted, png_header


def escaped(error: BaseException) -> str:
    return f"raises {type(error).__name__}: {str(error).strip().splitlines()[0][:110] if str(error) else ''}"


async def next_probe_event(events) -> str:
    try:
        while True:
            line = await asyncio.wait_for(events.content.readline(), 3.0)
            if not line:
                return "stream ended"
            if line.startswith(b"data: ") and json.loads(line[6:]).get("type") == "probe":
                return "stream alive"
    except Exception as error:  # what a reader sees when the server's handler died mid-stream
        return f"stream died ({type(error).__name__})"


async def http_cases() -> list[tuple[str, str, str]]:
    results = []
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    async with served(live_server().app()) as (client, url):
        async with client.get(url + "/") as response:
            results.append(("page without the token", "serve GET /", f"{response.status}"))
        async with client.get(url + "/health") as response:
            results.append(
                (
                    "health without the token",
                    "serve GET /health",
                    f"{response.status} {await response.text()}",
                )
            )
        head = b"POST /offer HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n"
        status, _ = await raw_request(url, head + "Authorization: Bearer tökén\r\n\r\n".encode())
        results.append(("non-ASCII bearer token", "serve POST /offer", f"{status}"))
    server = broadcast_server()
    async with served(server.app()) as (client, url):
        async with client.get(url + "/api/status", params={"token": "tökén"}) as response:
            results.append(("non-ASCII token in the query", "live GET /api/status", f"{response.status}"))
        async with client.get(url + "/") as response:
            results.append(("page without the token", "live GET /", f"{response.status}"))
        async with client.get(url + "/health") as response:
            results.append(
                ("health without the token", "live GET /health", f"{response.status} {await response.text()}")
            )
        events = await client.get(url + "/api/events", headers=bearer)
        await events.content.readline()
        async with client.post(url + "/api/say", data=b'{"text": "hi \\ud800"}', headers=bearer) as response:
            said = f"{response.status} {await response.text()}"
        server.events_hub.publish({"type": "probe"})  # does the stream still carry the next event?
        alive = await next_probe_event(events)
        events.close()
        results.append(
            ("lone surrogate in say text", "live POST /api/say", f"{said[:120]}; /api/events: {alive}")
        )
        for name, body in (
            ("NUL in say text", b'{"text": "hi \\u0000 there"}'),
            ('"now": "false"', b'{"text": "hello", "now": "false"}'),
        ):
            async with client.post(url + "/api/say", data=body, headers=bearer) as response:
                results.append(
                    (name, "live POST /api/say", f"{response.status} {(await response.text())[:120]}")
                )
        async with client.post(
            url + "/api/comments", data=b'{"user": "ann", "text": "\\udfff?"}'
        ) as response:
            results.append(("lone surrogate in a comment", "live POST /api/comments", f"{response.status}"))
        codes = []
        for index in range(60):
            async with client.post(
                url + "/api/say", json={"text": f"line {index}"}, headers=bearer
            ) as response:
                codes.append(response.status)
                last = await response.text()
        results.append(
            (
                "60 interjections",
                "live POST /api/say",
                f"{codes.count(202)} x 202, {codes.count(503)} x 503 {last[:110]}",
            )
        )
    return results


async def access_log_case() -> tuple[str, str, str]:
    from aiohttp import web

    from avatar.cli.live import _run_web_app

    started = {}
    real = web.run_app
    web.run_app = lambda app, **options: started.update(options)
    try:
        _run_web_app(
            type("Args", (), {"host": "127.0.0.1", "port": 0})(),
            object(),
            type("E", (), {"reply_engine": "x", "close": lambda self: None})(),
            "",
        )
    finally:
        web.run_app = real
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    access = logging.getLogger("aiohttp.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    options = {"access_log_class": started["access_log_class"]} if "access_log_class" in started else {}
    try:
        async with (
            served(live_server().app(), **options) as (client, url),
            client.get(url + "/", params={"token": TOKEN}),
        ):
            pass
    finally:
        access.removeHandler(handler)
    return ("page opened with ?token=", "access log", stream.getvalue().strip()[:120])


async def data_channel_case() -> tuple[str, str, str]:
    from avatar.live.server import LiveSession

    live = LiveSession("s1", None, None)
    try:
        await live_server()._on_client_message(live, "[]")
        return ("`[]` on the data channel", "serve data channel", "ignored")
    except Exception as error:
        return ("`[]` on the data channel", "serve data channel", escaped(error))


def file_cases(scratch: Path) -> list[tuple[str, str, str]]:
    from avatar import cli
    from avatar.library.store import AvatarLibrary
    from lipsync.avatar_assets import read_photo

    bomb = png_header(scratch / "bomb.png", 40000, 40000)
    results = []

    def attempt(case: str, surface: str, action) -> None:
        try:
            results.append((case, surface, str(action())[:140]))
        except Exception as error:
            results.append(
                (
                    case,
                    surface,
                    escaped(error) if not hasattr(error, "hint") else f"InputError: {error}"[:140],
                )
            )

    def cli_run(*argv) -> str:
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            code = cli.main([str(a) for a in argv])
        return f"exit {code}: {stderr.getvalue().strip()[:120]}"

    attempt("40000x40000 PNG", "read_photo", lambda: read_photo(bomb).shape)
    attempt(
        "40000x40000 PNG",
        "avatar render",
        lambda: cli_run("render", "--photo", bomb, "--audio", SAMPLE_VOICE, "-o", scratch / "o.mp4"),
    )
    library = AvatarLibrary(scratch / "library")
    attempt(
        "40000x40000 PNG",
        "library import",
        lambda: library.import_archive(avatar_zip(scratch / "big.zip", {"photo.png": bomb.read_bytes()})),
    )
    photo = SAMPLE_PORTRAIT.read_bytes()
    archives = {
        "encrypted zip": mark_encrypted(avatar_zip(scratch / "enc.zip", {"photo.jpg": photo})),
        "zip member `../photo.jpg`": avatar_zip(scratch / "up.zip", {"../photo.jpg": photo}),
        "zip member `/tmp/photo.jpg`": avatar_zip(scratch / "abs.zip", {"/tmp/photo.jpg": photo}),
        "zip symlink member": avatar_zip(
            scratch / "ln.zip", {"photo.jpg": (b"/etc/passwd", {"external_attr": 0o120777 << 16})}
        ),
        "zip member 64 MB + 1 unpacked": avatar_zip(
            scratch / "big2.zip", {"knowledge.md": b" " * (64 * 2**20 + 1)}
        ),
        "zip member packed 1000:1 (2 MB)": avatar_zip(
            scratch / "ratio.zip", {"photo.jpg": photo, "knowledge.md": b" " * (2 << 20)}
        ),
    }
    for case, archive in archives.items():
        attempt(case, "library import", lambda archive=archive: library.import_archive(archive).slug)
    audio = scratch / "talk.mp4"
    audio.write_bytes(SAMPLE_VOICE.read_bytes())
    from avatar.render.job import validate_request
    from avatar.render.request import RenderRequest

    attempt(
        "-o = --audio",
        "avatar render (validate_request)",
        lambda: (
            validate_request(RenderRequest(SAMPLE_PORTRAIT, audio, audio_path=audio))
            or "accepted: the render would replace the recording"
        ),
    )
    face = scratch / "face.png"
    face.write_bytes(photo)
    attempt(
        "-o = --photo",
        "avatar preview",
        lambda: (
            cli_run("preview", "--photo", face, "-o", face)
            + ("; photo overwritten" if face.read_bytes() != photo else "")
        ),
    )
    return results


async def every_case() -> list:
    """Every case of tests/support/hostile_cases.py with its after-check (hostile_check.Outcome)."""
    from tests.support.hostile_cases import SURFACES
    from tests.support.hostile_check import run_case

    outcomes = []
    with tempfile.TemporaryDirectory() as scratch:
        for surface, (target, healthy, cases) in SURFACES.items():
            folder = Path(scratch) / surface.replace(" ", "_")
            folder.mkdir()
            async with target(surface, folder) as opened:
                for case in cases():
                    outcomes.append(await run_case(case, opened, healthy))
    return outcomes


def table_row(outcome) -> str:
    """`| surface | case | answer | after |` for docs/measurements/hostile_inputs.md."""
    answer = "client gone, no answer" if outcome.code == -1 else f"{outcome.code} {outcome.message}"
    cells = (outcome.case.surface, outcome.case.name, answer, outcome.check)
    return "| " + " | ".join(cell.replace("|", "\\|").replace("\n", " ") for cell in cells) + " |"


async def main() -> None:
    if "--table" in sys.argv[1:]:  # every case with "server still healthy, memory unchanged"
        outcomes = await every_case()
        print("| surface | case | answer (status or exit code, message) | after the case |")
        print("|---|---|---|---|")
        for outcome in outcomes:
            print(table_row(outcome))
        failed = [outcome for outcome in outcomes if outcome.problems]
        print(f"\n{len(outcomes)} cases, {len(failed)} with a problem", file=sys.stderr)
        return 1 if failed else 0
    logging.disable(logging.CRITICAL)  # the answers are the output, not aiohttp's error logs
    results = await http_cases()
    results.append(await data_channel_case())
    logging.disable(logging.NOTSET)
    results.append(await access_log_case())
    logging.disable(logging.CRITICAL)
    with tempfile.TemporaryDirectory() as scratch:
        results += file_cases(Path(scratch))
    for case, surface, result in results:
        print(json.dumps({"case": case, "surface": surface, "result": result}, ensure_ascii=False))


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
