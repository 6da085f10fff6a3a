"""What several tabs share: the views a library change refreshes, and how they are refreshed."""

from __future__ import annotations

from dataclasses import dataclass

from webui import formatting
from webui.console import Console
from webui.formatting import live_iframe_html


@dataclass(frozen=True)
class LibraryViews:
    """The components that show the library, across tabs (outputs of every library change)."""

    gallery: object
    library_pick: object
    render_pick: object
    live_pick: object
    details: object
    live_status: object
    live_frame: object

    def outputs(self) -> list:
        """In the order of `library_updates`' values."""
        return [
            self.gallery,
            self.library_pick,
            self.render_pick,
            self.live_pick,
            self.details,
            self.live_status,
            self.live_frame,
        ]


def library_updates(console: Console, selected: str | None = None, page_load: bool = False) -> tuple:
    """New gallery, the three avatar pickers (keeping `selected` when it still exists), the
    selected avatar's details, and the live tab's status and frame.

    A running live server's frame is left alone (re-rendering the iframe would reload the page
    and drop a conversation) except on page load; a stopped one (say, its avatar was just
    renamed or deleted) is shown as stopped.
    """
    import gradio as gr

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
