"""Fuzzing every parser that reads what a stranger sends: whatever comes in, the answer is the parsed
value or the parser's own one-line error (InputError / OfferError), never another exception.

Each parser is fed by hypothesis with arbitrary text and with near-valid input (a real offer or
script with lines dropped, duplicated or mangled), which is where hand-written parsers break. The
runs are derandomised (the same examples in CI as here) and sized to take a few seconds each.
"""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from avatar.core.errors import InputError  # noqa: E402

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Text a hostile client can send: any code point, including NUL, lone surrogates, RTL and BOM.
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=400)
TRICKY = st.sampled_from(
    [
        "\x00",
        "\ud800",
        "\u202e",
        "\ufeff",
        "\r\n",
        "\r",
        "[",
        "]",
        "[happy",
        "[pause:",
        "=",
        ":",
        "\t",
        "😀",
        "  ",
    ]
)


def mangled_lines(lines: list[str]):
    """A near-valid document: `lines` with some dropped, repeated, cut or spiked with odd characters."""

    def mangle(draw_list):
        out = []
        for line, (action, cut, spike) in zip(lines, draw_list, strict=False):
            if action == 0:
                continue
            if action == 1:
                out += [line, line]
            elif action == 2:
                out.append(line[:cut])
            elif action == 3:
                out.append(line[:cut] + spike + line[cut:])
            else:
                out.append(line)
        return out

    step = st.tuples(st.integers(0, 6), st.integers(0, 60), TRICKY)
    return st.lists(step, min_size=len(lines), max_size=len(lines)).map(mangle)


# --- WebRTC offers -------------------------------------------------------------------------------
pytest.importorskip("aiortc")


@pytest.fixture(scope="module")
def real_offer_lines() -> list[str]:
    from tests.support.offers import browser_like_offer

    async def make():
        pc, sdp = await browser_like_offer()
        await pc.close()
        return sdp

    return asyncio.run(make()).splitlines()


class Body:
    """The part of an aiohttp request that `read_offer` reads."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    async def json(self):
        return json.loads(self.raw.decode("utf-8"))


def read_offer_or_error(raw: bytes) -> str | None:
    from avatar.playout.offers import OfferError, read_offer

    try:
        return asyncio.run(read_offer(Body(raw)))
    except OfferError as error:
        assert str(error).strip() and "\n" not in str(error)
        return None


@FUZZ
@given(st.binary(max_size=300) | ANY_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_any_offer_body_is_an_sdp_or_a_400_reason(raw):
    read_offer_or_error(raw)


@FUZZ
@given(data=st.data())
def test_mangled_real_offers_are_an_sdp_or_a_400_reason(real_offer_lines, data):
    lines = data.draw(mangled_lines(real_offer_lines))
    body = json.dumps({"type": "offer", "sdp": "\r\n".join(lines) + "\r\n"}).encode()
    read_offer_or_error(body)


def test_the_unmangled_offer_passes(real_offer_lines):
    body = json.dumps({"type": "offer", "sdp": "\r\n".join(real_offer_lines) + "\r\n"}).encode()
    assert read_offer_or_error(body) is not None


# --- show scripts, the tag language, comments ----------------------------------------------------
SCRIPT = """# Morning show
[happy] Good morning, everyone! Welcome to the shop.

- Today: the [pause:0.5] spring collection.
- [excited] Ask me anything in the comments.

<!-- a note -->
| a | table |
|---|---|
""".splitlines()


def parse_or_error(parse, text):
    try:
        return parse(text)
    except InputError as error:
        assert error.message.strip()
        return None


@FUZZ
@given(ANY_TEXT)
def test_any_show_script_parses_or_says_why(text):
    from avatar.broadcast.show_script import parse_show_script

    parse_or_error(parse_show_script, text)


@FUZZ
@given(data=st.data())
def test_mangled_show_scripts_parse_or_say_why(data):
    from avatar.broadcast.show_script import parse_show_script

    parse_or_error(parse_show_script, "\n".join(data.draw(mangled_lines(SCRIPT))))


@FUZZ
@given(st.lists(ANY_TEXT | TRICKY, max_size=8).map("".join))
def test_any_tagged_text_parses_or_says_why(text):
    from avatar.core.text_script import parse_script

    segments = parse_or_error(parse_script, text)
    for segment in segments or []:
        assert "\x00" not in segment.text


@FUZZ
@given(ANY_TEXT, ANY_TEXT)
def test_comments_and_names_come_out_clean(user, text):
    import unicodedata

    from avatar.broadcast.comments import MAX_USER_CHARS, clean_text, clean_user

    for cleaned in (clean_text(text), clean_user(user)):
        assert all(unicodedata.category(c) not in ("Cc", "Cf", "Cs") for c in cleaned)
        assert cleaned == cleaned.strip() and "  " not in cleaned
        assert clean_text(cleaned) == cleaned  # cleaning twice changes nothing
    assert 0 < len(clean_user(user)) <= MAX_USER_CHARS


# --- batch manifests, avatar settings, archives --------------------------------------------------
@FUZZ
@given(text=ANY_TEXT, suffix=st.sampled_from([".csv", ".jsonl"]))
def test_any_manifest_reads_or_lists_its_problems(tmp_path, text, suffix):
    from avatar.render.batch import read_manifest

    manifest = tmp_path / f"jobs{suffix}"
    manifest.write_bytes(text.encode("utf-8", "surrogatepass"))
    parse_or_error(lambda path: read_manifest(path, tmp_path / "out"), manifest)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=12,
)


@FUZZ
@given(
    st.fixed_dictionaries(
        {"schema_version": st.sampled_from([1, 2, "1", None])},
        optional={
            "name": JSON_VALUES,
            "persona": JSON_VALUES,
            "language": JSON_VALUES,
            "face_index": JSON_VALUES,
            "emotion": JSON_VALUES,
        },
    )
    | JSON_VALUES
)
def test_any_avatar_settings_validate_or_say_why(data):
    from avatar.library.records import AvatarSettings

    parse_or_error(lambda d: AvatarSettings.from_dict(d, "avatar.json"), data)


@FUZZ
@given(st.binary(max_size=400))
def test_any_bytes_as_an_archive_are_refused_with_a_reason(tmp_path, raw):
    from avatar.library.archive import open_archive

    path = tmp_path / "avatar.zip"
    path.write_bytes(raw)
    try:
        with open_archive(path):
            pass
    except InputError as error:
        assert error.message.strip()


MEMBER_NAMES = st.lists(
    st.sampled_from(["avatar.json", "photo.jpg", "../x", "/abs", "C:/x", "a/../b", "__MACOSX/x", ".hidden"])
    | st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=30),
    min_size=1,
    max_size=8,
    unique=True,
)


@FUZZ
@given(names=MEMBER_NAMES)
def test_archive_members_never_land_outside_the_target(tmp_path, names):
    from avatar.library.archive import extract_avatar

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index, name in enumerate(names):
            archive.writestr(name, json.dumps({"schema_version": 1}) if index == 0 else b"x")
    target = tmp_path / f"target-{abs(hash(tuple(names)))}"
    target.mkdir()
    before = set(tmp_path.rglob("*"))
    try:
        with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as archive:
            extract_avatar(archive, "avatar.zip", target)
    except InputError as error:
        assert error.message.strip()
    created = set(tmp_path.rglob("*")) - before
    assert all(Path(path).is_relative_to(target) for path in created)
