"""The "Create avatar" tab: photo, voice sample, details, then a preview clip or Save."""

from __future__ import annotations

from dataclasses import dataclass

from webui import formatting
from webui.console import DEFAULT_PREVIEW_TEXT, Console
from webui.tabs.views import LibraryViews, library_updates

PHOTO_TYPES = [".jpg", ".jpeg", ".png", ".webp", ".bmp"]
KNOWLEDGE_TYPES = [".md", ".markdown", ".txt", ".faq"]


@dataclass(frozen=True)
class CreateTab:
    photo_path: object  # State: the last photo given (upload or webcam)
    photo_upload: object
    photo_webcam: object
    face_preview: object
    photo_status: object
    voice: object
    transcript: object
    voice_status: object
    name: object
    language: object
    persona: object
    knowledge: object
    preview_text: object
    preview_button: object
    save_button: object
    preview_status: object
    save_status: object
    preview_video: object


def build() -> CreateTab:
    import gradio as gr

    with gr.Tab("Create avatar", id="create", elem_id="tab-create"):
        photo_path = gr.State(None)
        with gr.Row(equal_height=False):
            photo = _photo_column()
            voice = _voice_column()
            details = _details_column()
        gr.Markdown("### 4 · Preview and save")
        preview = _preview_row()
    return CreateTab(photo_path=photo_path, **photo, **voice, **details, **preview)


def _photo_column() -> dict:
    import gradio as gr

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
                    label="Webcam", sources=["webcam"], type="filepath", height=240, elem_id="photo-webcam"
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
    return {
        "photo_upload": photo_upload,
        "photo_webcam": photo_webcam,
        "face_preview": face_preview,
        "photo_status": photo_status,
    }


def _voice_column() -> dict:
    import gradio as gr

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
    return {"voice": voice, "transcript": transcript, "voice_status": voice_status}


def _details_column() -> dict:
    import gradio as gr

    with gr.Column(scale=1, min_width=300):
        gr.Markdown("### 3 · Details")
        name = gr.Textbox(label="Name", placeholder="e.g. Mona", max_length=64, elem_id="avatar-name")
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
    return {"name": name, "language": language, "persona": persona, "knowledge": knowledge}


def _preview_row() -> dict:
    import gradio as gr

    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=300):
            preview_text = gr.Textbox(label="Sentence for the preview clip", value=DEFAULT_PREVIEW_TEXT)
            with gr.Row():
                preview_button = gr.Button("Render preview clip", elem_id="preview-button")
                save_button = gr.Button("Save to library", variant="primary", elem_id="save-button")
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
    return {
        "preview_text": preview_text,
        "preview_button": preview_button,
        "save_button": save_button,
        "preview_status": preview_status,
        "save_status": save_status,
        "preview_video": preview_video,
    }


def wire(tab: CreateTab, console: Console, views: LibraryViews) -> None:
    """Checks on every new photo and voice sample; the preview clip; Save refreshes the library."""
    import gradio as gr

    tracker = gr.Progress()  # a default only: Gradio makes a fresh tracker per call from it

    def on_photo(path):
        preview, message = console.check_photo(path)
        return path, preview, message

    photo_outputs = [tab.photo_path, tab.face_preview, tab.photo_status]
    tab.photo_upload.change(on_photo, tab.photo_upload, photo_outputs)
    tab.photo_webcam.change(on_photo, tab.photo_webcam, photo_outputs)

    def on_voice(path):
        text, _language, message = console.check_voice(path)
        return (gr.update() if text is None else text), message

    tab.voice.change(on_voice, tab.voice, [tab.transcript, tab.voice_status])

    def on_preview(
        name_, photo_, voice_, transcript_, language_, persona_, knowledge_, text_, progress=tracker
    ):
        outcome = console.preview_clip(
            name_, photo_, voice_, transcript_, language_, persona_, knowledge_, text_,
            progress=lambda fraction, desc: progress(fraction, desc=desc),
        )  # fmt: skip
        return (str(outcome.value) if outcome.ok else None), outcome.message

    # the arguments of Console.save_avatar and preview_clip, in their order
    create_inputs = [
        tab.name,
        tab.photo_path,
        tab.voice,
        tab.transcript,
        tab.language,
        tab.persona,
        tab.knowledge,
    ]
    tab.preview_button.click(
        on_preview, [*create_inputs, tab.preview_text], [tab.preview_video, tab.preview_status]
    )

    def on_save(*values):
        outcome = console.save_avatar(*values)
        selected = outcome.value.slug if outcome.ok else None
        return (outcome.message, *library_updates(console, selected))

    tab.save_button.click(on_save, create_inputs, [tab.save_status, *views.outputs()])
