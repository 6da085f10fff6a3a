"""What each button of the console does, as plain methods: the Gradio layer only wires them up.

Why a class without Gradio in it: every handler can be called (and tested) directly, and the
console's state lives in one place: the avatar library, the engines it keeps loaded between
clicks, a work folder for renders and exports, and the live-server child process. Every handler
returns values ready for the page and turns every error into one Markdown line (see
`webui.formatting.error_line`); nothing raises into Gradio.

Engines: `webui.console_engines.ConsoleEngines` keeps them loaded between clicks, one lock per
group (checks, renders), so a check stays possible during a long render.
"""

from __future__ import annotations

import functools
import logging
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from avatar.core.errors import AvatarError, InputError
from webui import formatting, render_form
from webui.console_engines import ConsoleEngines
from webui.live_process import LiveServerProcess, LiveStatus, serve_command

log = logging.getLogger(__name__)

ProgressFn = Callable[[float, str], None]  # (fraction 0-1, description)

DEFAULT_PREVIEW_TEXT = "Hello! This is how I look and sound."


@dataclass(frozen=True)
class Outcome:
    """A handler's result: the message to show and, when it worked, the file or record made."""

    message: str
    value: object = None

    @property
    def ok(self) -> bool:
        return self.value is not None


def _path_or_none(value) -> Path | None:
    """Gradio passes uploads as str paths (or None, or "" after a clear)."""
    if value is None or value == "":
        return None
    return Path(getattr(value, "name", value))


def _safe_stem(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:40] or "avatar"


class Console:
    """The console's state and handlers; `close()` stops the live server and frees the engines."""

    def __init__(self, library_root: Path | None = None, work_dir: Path | None = None) -> None:
        from avatar.library.store import AvatarLibrary

        self.library = AvatarLibrary(library_root)  # creates it; InputError for an unusable folder
        self.library_root = self.library.root
        self._owns_work_dir = work_dir is None
        self.work_dir = (
            Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="avatar-webui-"))
        )
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.engines = ConsoleEngines()
        self._counter = 0
        self._counter_lock = threading.Lock()
        self.live = LiveServerProcess(
            self.work_dir / "live",
            env={"AVATAR_LIBRARY": str(self.library_root)},
            command=functools.partial(serve_command, library=self.library_root),
        )

    # --- housekeeping ---------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the live server, close the engines, remove the work folder (when it is ours)."""
        self.live.close()
        self.engines.close()
        if self._owns_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def _new_path(self, folder: str, stem: str, suffix: str) -> Path:
        """A fresh file name under the work folder: a counter keeps parallel clicks apart."""
        with self._counter_lock:
            self._counter += 1
            number = self._counter
        target = self.work_dir / folder
        target.mkdir(parents=True, exist_ok=True)
        return target / f"{_safe_stem(stem)}-{time.strftime('%H%M%S')}-{number}{suffix}"

    def _run(self, what: str, action: Callable[[], Outcome]) -> Outcome:
        """Run a handler body; every error becomes a one-line message (tracebacks go to the log)."""
        try:
            return action()
        except AvatarError as error:
            return Outcome(formatting.error_line(error))
        except Exception as error:  # a bug, not the user's input: keep the page alive and say so
            log.exception("%s failed", what)
            return Outcome(formatting.error_line(error))

    # --- create tab -----------------------------------------------------------------------------
    def check_photo(self, photo) -> tuple[object, str]:
        """(preview image with the face and landmarks drawn, or None; the Markdown report)."""
        path = _path_or_none(photo)
        if path is None:
            return None, ""

        def action() -> Outcome:
            from avatar.library.checks import check_photo

            with self.engines.landmarker() as landmarker:
                check = check_photo(path, landmarker=landmarker)
            return Outcome(formatting.photo_summary(check), check.preview_rgb)

        outcome = self._run("photo check", action)
        return outcome.value, outcome.message

    def check_voice(self, sample) -> tuple[str | None, str | None, str]:
        """(transcript or None to leave the box alone, language choice or None, Markdown report)."""
        path = _path_or_none(sample)
        if path is None:
            return None, None, ""

        def action() -> Outcome:
            from avatar.library.checks import check_voice_sample

            with self.engines.asr() as asr:
                check = check_voice_sample(path, transcribe=True, asr=asr)
            return Outcome(formatting.voice_summary(check), check)

        outcome = self._run("voice check", action)
        check = outcome.value
        if check is None:
            return None, None, outcome.message
        language = check.language if check.language in ("en", "zh") else None
        return check.transcript, language, outcome.message

    def _create_in(self, library, name, photo, voice, transcript, language_choice, persona, knowledge):
        photo_path = _path_or_none(photo)
        if photo_path is None:
            raise InputError("add a photo first", "upload one, or take one with the webcam")
        if not (name or "").strip():
            raise InputError("give the avatar a name")
        return library.create(
            name.strip(),
            photo_path,
            _path_or_none(voice),
            transcript=(transcript or "").strip(),
            language=formatting.language_from_choice(language_choice),
            persona=(persona or "").strip(),
            knowledge=_path_or_none(knowledge),
        )

    def save_avatar(self, name, photo, voice, transcript, language_choice, persona, knowledge) -> Outcome:
        """Create the avatar in the library; Outcome.value is the AvatarRecord."""

        def action() -> Outcome:
            record = self._create_in(
                self.library, name, photo, voice, transcript, language_choice, persona, knowledge
            )
            summary = (
                f"saved **{formatting.escape_markdown(record.settings.name)}** to the library "
                f"(folder `{record.slug}`): render it in the Render tab or talk to it in the Live tab"
            )
            return Outcome(formatting.with_warnings(summary, record.warnings), record)

        return self._run("save", action)

    def preview_clip(
        self, name, photo, voice, transcript, language_choice, persona, knowledge, text, progress=None
    ) -> Outcome:
        """A short clip of the unsaved avatar speaking `text` in its matched voice.

        The avatar is built in a scratch library inside the work folder (the same validation and
        voice analysis as saving), rendered with `render_preview`, then removed: the real library
        only changes on Save.
        """

        def action() -> Outcome:
            from avatar.library.store import AvatarLibrary, render_preview

            scratch_root = self._new_path("scratch", "preview", "")
            try:
                scratch = AvatarLibrary(scratch_root)
                if progress is not None:
                    progress(0.1, "checking the photo and the voice sample")
                record = self._create_in(
                    scratch, name or "preview", photo, voice, transcript, language_choice, persona, knowledge
                )
                output = self._new_path("previews", record.slug, ".mp4")
                if progress is not None:
                    progress(0.4, "rendering the preview clip")
                with self.engines.render(record.photo_path) as engines:
                    render_preview(
                        record, (text or "").strip() or DEFAULT_PREVIEW_TEXT, output, engines=engines
                    )
            finally:
                shutil.rmtree(scratch_root, ignore_errors=True)
            voice_note = "in the matched voice" if _path_or_none(voice) else "in the default voice"
            return Outcome(f"✓ preview clip {voice_note}", output)

        return self._run("preview", action)

    # --- library tab ----------------------------------------------------------------------------
    def records(self) -> list:
        try:
            return self.library.list()
        except Exception:  # an unreadable library must not take the page down
            log.exception("listing the library failed")
            return []

    def _selected(self, slug) -> object:
        if not slug:
            raise InputError("select an avatar first", "click its picture in the gallery")
        return self.library.get(slug)

    def details(self, slug) -> str:
        if not slug:
            return "Select an avatar in the gallery."
        outcome = self._run("details", lambda: Outcome(formatting.avatar_details(self._selected(slug)), slug))
        return outcome.message

    def _stop_live_for(self, slug: str) -> None:
        """The live server must not keep serving an avatar whose folder is renamed or deleted."""
        if self.live.status().avatar == slug:
            self.live.stop()

    def rename(self, slug, new_name) -> Outcome:
        def action() -> Outcome:
            record = self._selected(slug)
            if not (new_name or "").strip():
                raise InputError("type the new name first")
            self._stop_live_for(record.slug)  # its folder may move
            renamed = self.library.rename(record.slug, new_name.strip())
            return Outcome(
                f"✓ renamed **{formatting.escape_markdown(record.settings.name)}** to "
                f"**{formatting.escape_markdown(renamed.settings.name)}**",
                renamed,
            )

        return self._run("rename", action)

    def duplicate(self, slug, new_name) -> Outcome:
        def action() -> Outcome:
            record = self._selected(slug)
            name = (new_name or "").strip() or f"{record.settings.name} copy"
            copy = self.library.duplicate(record.slug, name)
            return Outcome(f"✓ duplicated as **{formatting.escape_markdown(copy.settings.name)}**", copy)

        return self._run("duplicate", action)

    def delete(self, slug, confirmed: bool) -> Outcome:
        def action() -> Outcome:
            record = self._selected(slug)
            if not confirmed:
                raise InputError(
                    f"tick “yes, delete” to delete {record.settings.name}", "deleting cannot be undone"
                )
            self._stop_live_for(record.slug)
            self.library.delete(record.slug)
            return Outcome(f"✓ deleted **{formatting.escape_markdown(record.settings.name)}**", record.slug)

        return self._run("delete", action)

    def export(self, slug) -> Outcome:
        """Outcome.value: the .zip to offer for download."""

        def action() -> Outcome:
            record = self._selected(slug)
            destination = self._new_path("exports", record.slug, "")
            destination.mkdir(parents=True)
            archive = Path(self.library.export(record.slug, destination / f"{record.slug}.zip"))
            size_kb = archive.stat().st_size / 1024
            return Outcome(f"✓ exported {archive.name} ({size_kb:.0f} KB): download it below", archive)

        return self._run("export", action)

    def import_archive(self, archive, name) -> Outcome:
        def action() -> Outcome:
            path = _path_or_none(archive)
            if path is None:
                raise InputError("choose a .zip exported from an avatar library first")
            record = self.library.import_archive(path, (name or "").strip() or None)
            return Outcome(f"✓ imported **{formatting.escape_markdown(record.settings.name)}**", record)

        return self._run("import", action)

    # --- render tab -----------------------------------------------------------------------------
    def render(
        self,
        slug,
        source: str,
        text,
        audio,
        emotion: str,
        language_choice,
        size_px,
        audio_timing: str,
        progress: ProgressFn | None = None,
    ) -> Outcome:
        """Render one MP4 of a library avatar; Outcome.value is the file."""

        def action() -> Outcome:
            from avatar.render.job import render_video

            if not slug:
                raise InputError("choose an avatar first", "create one in the Create avatar tab")
            record = self.library.get(slug)
            request = render_form.render_request(
                record.inputs(),
                self._new_path("renders", record.slug, ".mp4"),
                source,
                text,
                _path_or_none(audio),
                emotion,
                language_choice,
                size_px,
                audio_timing,
            )
            on_progress = render_form.progress_adapter(progress, text_first=source != "audio")
            if progress is not None:
                progress(0.0, "loading the engines")
            with self.engines.render(request.photo_path) as engines:
                result = render_video(request, engines, progress=on_progress)
            return Outcome(formatting.render_summary(result), Path(result.output_path))

        return self._run("render", action)

    # --- live tab -------------------------------------------------------------------------------
    def start_live(self, slug, on_wait: Callable[[float], None] | None = None) -> Outcome:
        """Start `avatar serve` for the avatar; Outcome.value is the LiveStatus."""

        def action() -> Outcome:
            if not slug:
                raise InputError("choose an avatar first", "create one in the Create avatar tab")
            record = self.library.get(slug)
            status = self.live.start(record.slug, on_wait=on_wait)
            knowledge = record.inputs().knowledge_paths
            replies = (
                f"answers from {', '.join(path.name for path in knowledge)}"
                if knowledge
                else "no knowledge file: a fixed reply (add one to get answers)"
            )
            return Outcome(f"✓ {status.message}; {replies}", status)

        return self._run("live", action)

    def stop_live(self) -> LiveStatus:
        self.live.stop()
        return self.live.status()
