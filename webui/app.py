"""The Gradio page: five tabs (webui.tabs, one module each) wired to `webui.console.Console`.

Only layout and wiring live in the tabs; what a button does is a Console method, and how results
read is `webui.formatting`. Gradio is imported inside the functions (it takes ~2 s and is an
optional extra), after `GRADIO_ANALYTICS_ENABLED=False` is set so it never phones home. The theme
uses the system's fonts: Gradio's default themes would fetch fonts from the web, and the console
must make no request beyond this machine.
"""

from __future__ import annotations

import hmac
import logging
import os
from pathlib import Path

from webui.console import Console

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


def build_app(console: Console):
    """The Blocks app (not launched): `launch()` below, or tests mount it themselves.

    Every tab is laid out first, then wired: a library change in one tab refreshes the gallery
    and the avatar pickers of the others.
    """
    set_offline_environment()
    import gradio as gr

    from webui.tabs import create, library, live, render, settings
    from webui.tabs.views import LibraryViews, library_updates

    with gr.Blocks(title=TITLE, analytics_enabled=False, fill_width=True) as demo:
        gr.Markdown(
            f"# {TITLE}\nA talking avatar from one photo and a voice sample, made on this computer.",
            elem_id="console-header",
        )
        with gr.Tabs():
            create_tab = create.build()
            library_tab = library.build(console)
            render_tab = render.build()
            live_tab = live.build()
            settings_tab = settings.build(console)
        views = LibraryViews(
            gallery=library_tab.gallery,
            library_pick=library_tab.library_pick,
            render_pick=render_tab.render_pick,
            live_pick=live_tab.live_pick,
            details=library_tab.details,
            live_status=live_tab.live_status,
            live_frame=live_tab.live_frame,
        )
        create.wire(create_tab, console, views)
        library.wire(library_tab, console, views)
        render.wire(render_tab, console)
        live.wire(live_tab, console)
        settings.wire(settings_tab, render_tab.unavailable)

        def on_load():
            rows, model_md, unavailable_md = settings.engines_markdown()
            return (
                *library_updates(console, console.live.status().avatar, page_load=True),
                rows,
                model_md,
                unavailable_md,
            )

        engine_views = [settings_tab.engines_table, settings_tab.model_dir, render_tab.unavailable]
        demo.load(on_load, None, [*views.outputs(), *engine_views])
    return demo


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
