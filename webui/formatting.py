"""Turning results and errors into the short Markdown lines the console shows.

Why a module of its own: every handler reports the same way (one line per error, a bullet per
warning, a one-line summary of what was done), and these rules are unit-tested without Gradio.
Values are typed loosely (duck typing on the documented dataclasses) so this module imports
nothing heavy and works with test doubles.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

LANGUAGE_CHOICES: tuple[tuple[str, str], ...] = (
    ("Detect per sentence", "auto"),
    ("English", "en"),
    ("Mandarin Chinese", "zh"),
)
LANGUAGE_NAMES = {"en": "English", "zh": "Mandarin", None: "auto"}

# What changes the meaning mid-line: * emphasis, code, links/images, HTML, table pipes (an intraword
# underscore, as in file names, is left alone: CommonMark does not read it as emphasis).
_MARKDOWN_SPECIAL = re.compile(r"([\\`*\[\]<>|])")


def escape_markdown(text: str) -> str:
    """Backslash-escape what Markdown would interpret: names and messages are shown verbatim."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def language_from_choice(choice: str | None) -> str | None:
    """The radio's value ("auto", "en", "zh") as the API's language (None = detect)."""
    if choice in (None, "", "auto"):
        return None
    if choice not in ("en", "zh"):
        raise ValueError(f"unknown language choice {choice!r}")
    return choice


def choice_from_language(language: str | None) -> str:
    return language if language in ("en", "zh") else "auto"


def one_line(text: str, limit: int = 400) -> str:
    """Collapse whitespace so a message never breaks the page's layout; cut very long ones."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def error_line(error: BaseException) -> str:
    """An error as the page shows it: ✗ and the message with its hint, on one line.

    AvatarError's `str` already joins message and hint; anything else is a bug, named as such so
    the user knows it is not their input (the traceback goes to the console's log).
    """
    from avatar.core.errors import AvatarError

    if isinstance(error, AvatarError):
        return f"✗ {escape_markdown(one_line(str(error)))}"
    return f"✗ unexpected error ({error.__class__.__name__}): {escape_markdown(one_line(str(error)))}"


def warning_lines(warnings: Iterable[str]) -> str:
    return "\n".join(f"- ⚠ {escape_markdown(one_line(w))}" for w in warnings)


def with_warnings(summary: str, warnings: Sequence[str]) -> str:
    """A ✓ summary line followed by one bullet per warning (Markdown)."""
    text = f"✓ {summary}"
    if warnings:
        text += "\n\n" + warning_lines(warnings)
    return text


def photo_summary(check) -> str:
    """PhotoCheck -> Markdown: faces found, the chosen face's height, warnings."""
    faces = f"{check.face_count} face{'s' if check.face_count != 1 else ''} found"
    return with_warnings(f"{faces}; the animated face is {check.face_height_px:.0f} px tall", check.warnings)


def voice_summary(check) -> str:
    """VoiceCheck -> Markdown: length, rate, level, language, warnings."""
    language = f", language {check.language}" if check.language else ""
    summary = (
        f"{check.duration_s:.1f} s at {check.sample_rate_hz / 1000:g} kHz, "
        f"speech {check.snr_db:.0f} dB above the noise{language}"
    )
    return with_warnings(summary, check.warnings)


def record_label(record) -> str:
    """How an avatar appears in dropdowns: its display name, and the slug when they differ."""
    name = record.settings.name
    return name if name.lower() == record.slug else f"{name} ({record.slug})"


def record_choices(records: Iterable) -> list[tuple[str, str]]:
    """(label, slug) pairs for gr.Dropdown choices; the value passed to handlers is the slug."""
    return [(record_label(record), record.slug) for record in records]


def gallery_items(records: Iterable) -> list[tuple[str, str]]:
    """(thumbnail path, caption) pairs for gr.Gallery."""
    return [(str(record.thumbnail_path), record.settings.name) for record in records]


LIBRARY_HEADERS = ("name", "folder", "language", "voice sample", "knowledge", "created")


def library_rows(records: Iterable) -> list[list[str]]:
    """One row per avatar for the library table (plain text: the table does not render Markdown)."""
    rows = []
    for record in records:
        settings = record.settings
        rows.append(
            [
                settings.name,
                record.slug,
                LANGUAGE_NAMES.get(settings.language, str(settings.language)),
                record.voice_sample_path.name if record.voice_sample_path else "none",
                record.knowledge_path.name if record.knowledge_path else "none",
                str(settings.created_at)[:19].replace("T", " "),
            ]
        )
    return rows


def avatar_details(record) -> str:
    """Markdown card for the selected avatar in the library tab."""
    settings = record.settings
    lines = [
        f"**{escape_markdown(settings.name)}** · folder `{record.slug}`",
        f"- language: {LANGUAGE_NAMES.get(settings.language, settings.language)}",
        f"- voice sample: {record.voice_sample_path.name if record.voice_sample_path else 'none (default voice)'}",
    ]
    if settings.voice_transcript:
        lines.append(f"- transcript: “{escape_markdown(one_line(settings.voice_transcript, 160))}”")
    if settings.persona:
        lines.append(f"- persona: {escape_markdown(one_line(settings.persona, 160))}")
    lines.append(f"- knowledge: {record.knowledge_path.name if record.knowledge_path else 'none'}")
    return "\n".join(lines)


def render_summary(result) -> str:
    """RenderResult -> one ✓ line (with the renderer's notes as warnings)."""
    speed = result.duration_s / max(result.render_time_s, 1e-9)
    return with_warnings(
        f"rendered {result.duration_s:.1f} s of video ({result.frame_count} frames) "
        f"in {result.render_time_s:.1f} s ({speed:.1f}x real time)",
        tuple(result.notes),
    )


def engine_state(status) -> str:
    """Short status cell: available, missing (embedded, fixable by installing), or not set up (a neural
    engine without its weights, a service without its server or key)."""
    if status.available:
        return f"✓ {status.kind}"
    return "✗ missing" if status.kind == "embedded" else "✗ not set up"


def engines_table(statuses: Iterable) -> str:
    """EngineStatus list -> the settings tab's Markdown table (one row per engine)."""

    def cell(text: str) -> str:
        return escape_markdown(one_line(text, 200))

    rows = ["| engine | role | status | details |", "|---|---|---|---|"]
    for status in statuses:
        rows.append(
            f"| **{cell(status.name)}** | {cell(status.role)} | {engine_state(status)} | {cell(status.detail)} |"
        )
    return "\n".join(rows)


def unavailable_engines_note(statuses: Iterable) -> str:
    """The render tab's honest list of engines that cannot be chosen, and why (Markdown)."""
    lines = [
        f"- **{escape_markdown(status.name)}** ({status.role}): {escape_markdown(status.detail)}"
        for status in statuses
        if not status.available
    ]
    if not lines:
        return ""
    return "Not selectable here:\n\n" + "\n".join(lines)


def live_iframe_html(url: str | None, height_px: int = 760) -> str:
    """The live page embedded with the permissions it needs (microphone, autoplay of the reply)."""
    if not url:
        return (
            '<div class="live-placeholder">Choose an avatar and press <b>Start live server</b>; '
            "its conversation page appears here.</div>"
        )
    from html import escape

    return (
        f'<iframe src="{escape(url, quote=True)}" title="live conversation" allow="microphone; autoplay" '
        f'style="width:100%;height:{int(height_px)}px;border:0;border-radius:8px"></iframe>'
    )
