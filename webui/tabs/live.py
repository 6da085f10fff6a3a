"""The "Live" tab: start `avatar serve` for a library avatar and embed its conversation page."""

from __future__ import annotations

from dataclasses import dataclass

from webui.console import Console
from webui.formatting import live_iframe_html


@dataclass(frozen=True)
class LiveTab:
    live_pick: object
    live_start: object
    live_stop: object
    live_status: object
    live_frame: object


def reply_engine_line() -> str:
    """Which engine will answer, picked the way `avatar serve` picks it (a configured endpoint, else
    a GGUF model in the models folder, else the offline answerer), so the choice is visible first."""
    from avatar.engines.replies import default_reply_engine

    return f"Replies: {default_reply_engine()}"


def build() -> LiveTab:
    import gradio as gr

    with gr.Tab("Live", id="live", elem_id="tab-live"):
        with gr.Row():
            live_pick = gr.Dropdown(label="Avatar", choices=[], scale=2, elem_id="live-pick")
            live_start = gr.Button("Start live server", variant="primary", scale=1, elem_id="live-start")
            live_stop = gr.Button("Stop", scale=1, elem_id="live-stop")
        live_status = gr.Markdown("Live server: stopped", elem_id="live-status", elem_classes="status-line")
        gr.Markdown(reply_engine_line(), elem_id="live-replies", elem_classes="status-line")
        live_frame = gr.HTML(live_iframe_html(None), elem_id="live-frame")
    return LiveTab(live_pick, live_start, live_stop, live_status, live_frame)


def wire(tab: LiveTab, console: Console) -> None:
    """One live server at a time: choosing another avatar stops the running one."""
    import gradio as gr

    tracker = gr.Progress()  # a default only: Gradio makes a fresh tracker per call from it
    view = [tab.live_status, tab.live_frame]

    def on_live_start(slug, progress=tracker):
        outcome = console.start_live(
            slug, on_wait=lambda elapsed: progress(None, desc=f"loading the engines ({elapsed:.0f} s)")
        )
        url = outcome.value.url if outcome.ok else None
        return f"Live server: {outcome.message}", live_iframe_html(url)

    tab.live_start.click(on_live_start, tab.live_pick, view)

    def on_live_stop():
        status = console.stop_live()
        return f"Live server: {status.message}", live_iframe_html(None)

    tab.live_stop.click(on_live_stop, None, view)

    def on_live_pick(slug):
        """Choosing another avatar stops the server of the previous one (one at a time)."""
        status = console.live.status()
        if status.running and status.avatar != slug:
            status = console.stop_live()
            return f"Live server: {status.message}", live_iframe_html(None)
        return gr.update(), gr.update()

    # .input, not .change: only the user's choice stops the server, not a library refresh.
    tab.live_pick.input(on_live_pick, tab.live_pick, view)
