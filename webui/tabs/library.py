"""The "Library" tab: the gallery of saved avatars; rename, duplicate, delete, export, import."""

from __future__ import annotations

from dataclasses import dataclass

from webui.console import Console
from webui.tabs.views import LibraryViews, library_updates


@dataclass(frozen=True)
class LibraryTab:
    gallery: object
    library_pick: object
    details: object
    new_name: object
    rename_button: object
    duplicate_button: object
    confirm_delete: object
    delete_button: object
    export_button: object
    export_file: object
    import_file: object
    import_name: object
    import_button: object
    library_status: object


def build(console: Console) -> LibraryTab:
    import gradio as gr

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
                library_pick = gr.Dropdown(label="Selected avatar", choices=[], elem_id="library-pick")
                details = gr.Markdown(elem_id="library-details")
            actions = _actions_column()
            imports = _import_column()
        library_status = gr.Markdown(elem_id="library-status", elem_classes="status-line")
    return LibraryTab(
        gallery=gallery,
        library_pick=library_pick,
        details=details,
        library_status=library_status,
        **actions,
        **imports,
    )


def _actions_column() -> dict:
    import gradio as gr

    with gr.Column(scale=1, min_width=280):
        new_name = gr.Textbox(label="New name (rename or duplicate)", elem_id="library-new-name")
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
    return {
        "new_name": new_name,
        "rename_button": rename_button,
        "duplicate_button": duplicate_button,
        "confirm_delete": confirm_delete,
        "delete_button": delete_button,
        "export_button": export_button,
        "export_file": export_file,
    }


def _import_column() -> dict:
    import gradio as gr

    with gr.Column(scale=1, min_width=280):
        import_file = gr.File(
            label="Import a .zip", file_types=[".zip"], type="filepath", height=140, elem_id="import-file"
        )
        import_name = gr.Textbox(label="Name for the imported avatar (optional)", elem_id="import-name")
        import_button = gr.Button("Import", elem_id="import-button")
    return {"import_file": import_file, "import_name": import_name, "import_button": import_button}


def wire(tab: LibraryTab, console: Console, views: LibraryViews) -> None:
    """Selecting shows the details; every change refreshes the library views of all tabs."""
    import gradio as gr

    def on_gallery_select(evt: gr.SelectData):
        records = console.records()
        if evt.index is None or not 0 <= evt.index < len(records):
            return gr.update()
        return records[evt.index].slug

    # Gradio finds the event-data parameter by its type hint; with postponed annotations the
    # string "gr.SelectData" cannot be resolved (gradio is imported locally), so set the class.
    on_gallery_select.__annotations__["evt"] = gr.SelectData
    tab.gallery.select(on_gallery_select, None, tab.library_pick)
    tab.library_pick.change(console.details, tab.library_pick, tab.details)

    def library_action(method):
        def handler(*values):
            outcome = method(*values)
            value = outcome.value
            selected = getattr(value, "slug", None) or (values[0] if values else None)
            return (outcome.message, *library_updates(console, selected))

        return handler

    outputs = [tab.library_status, *views.outputs()]
    tab.rename_button.click(library_action(console.rename), [tab.library_pick, tab.new_name], outputs)
    tab.duplicate_button.click(library_action(console.duplicate), [tab.library_pick, tab.new_name], outputs)
    tab.import_button.click(
        library_action(console.import_archive), [tab.import_file, tab.import_name], outputs
    )

    def on_delete(slug, confirmed):
        outcome = console.delete(slug, confirmed)
        return (outcome.message, False, *library_updates(console, None if outcome.ok else slug))

    tab.delete_button.click(
        on_delete,
        [tab.library_pick, tab.confirm_delete],
        [tab.library_status, tab.confirm_delete, *views.outputs()],
    )

    def on_export(slug):
        outcome = console.export(slug)
        path = str(outcome.value) if outcome.ok else None
        return outcome.message, gr.update(value=path, visible=path is not None)

    tab.export_button.click(on_export, tab.library_pick, [tab.library_status, tab.export_file])
