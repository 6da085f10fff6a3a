"""What a livestream avatar will say next: interjections, then viewer comments, then the script.

The order is the operator's promise to the audience: something typed "say now" goes first, a
viewer's question is answered before the script goes on, and the script fills the rest. Items
that were rendered but never heard (a skip, an interruption or an avatar change threw their
frames away) go back to the front of their line, so nothing the audience did not hear is lost.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass

from avatar.core.types import TextSegment

WAITING_KINDS = ("interjection", "comment")  # the script is a read position, not a line
# An operator types a few interjections ahead; a runaway client must not queue hours of speech.
MAX_WAITING_INTERJECTIONS = 50


class LineFull(Exception):
    """A line is at its cap (HTTP 503); the message says so."""


@dataclass
class HostItem:
    """One unit the avatar speaks whole: a script paragraph, an answered comment, an interjection."""

    item_id: int
    kind: str
    text: str  # what is shown to the operator (tags kept); a comment's answer once it is ready
    segments: tuple[TextSegment, ...] = ()  # empty for a comment until it is answered
    user: str = ""
    source_text: str = ""  # a comment as the viewer typed it
    comment_id: int | None = None
    script_index: int | None = None
    # Where the item sits in its epoch's speech, in ticks (set while it is rendered).
    epoch: int = 0
    start_tick: int | None = None
    end_tick: int | None = None
    started_at_s: float | None = None

    def describe(self) -> dict:
        """The item as the status and the events show it."""
        described = {"item_id": self.item_id, "kind": self.kind, "text": self.text}
        if self.kind == "comment":
            described.update(user=self.user, source_text=self.source_text, comment_id=self.comment_id)
        if self.script_index is not None:
            described["script_index"] = self.script_index
        return described


class ItemQueue:
    """Interjections and comments waiting their turn, plus the script's read position.

    Comments themselves wait in `avatar.broadcast.comments.CommentIntake` (it rate-limits and
    de-duplicates them); this queue only holds comment items that were taken from there and
    must be said again because nobody heard them.
    """

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._lines: dict[str, deque[HostItem]] = {kind: deque() for kind in WAITING_KINDS}
        self.script: list[tuple[str, tuple[TextSegment, ...]]] = []
        self.script_position = 0
        self.loop = False

    def new_id(self) -> int:
        return next(self._ids)

    def set_script(self, items: list[tuple[str, tuple[TextSegment, ...]]], *, loop: bool) -> None:
        self.script = list(items)
        self.script_position = 0
        self.loop = loop

    def add(self, item: HostItem) -> None:
        """Queue a new item; raises LineFull when `MAX_WAITING_INTERJECTIONS` wait already (items put
        back because nobody heard them are never refused: `put_back`)."""
        line = self._lines[item.kind]
        if item.kind == "interjection" and len(line) >= MAX_WAITING_INTERJECTIONS:
            raise LineFull(
                f"{len(line)} interjections are waiting already (the limit is "
                f"{MAX_WAITING_INTERJECTIONS}); wait until some are said, or interrupt to drop them"
            )
        line.append(item)

    def put_back(self, items: list[HostItem]) -> None:
        """Unheard items return to the front of their lines, in their original order."""
        for item in reversed(items):
            item.start_tick = item.end_tick = item.started_at_s = None
            if item.kind == "script":
                # The script is a position, not a list: rewind it to the earliest unheard paragraph.
                self.script_position = item.script_index
                continue
            self._lines[item.kind].appendleft(item)

    def count(self, kind: str) -> int:
        return len(self._lines[kind])

    def waiting(self, kind: str) -> list[HostItem]:
        """The items of one line in the order they will be said (a copy)."""
        return list(self._lines[kind])

    def clear(self, kind: str) -> list[HostItem]:
        dropped = list(self._lines[kind])
        self._lines[kind].clear()
        return dropped

    def pop_waiting(self, kind: str) -> HostItem | None:
        line = self._lines[kind]
        return line.popleft() if line else None

    def next_script_item(self) -> HostItem | None:
        """The script's next paragraph; wraps around when looping, None when it has ended."""
        if not self.script:
            return None
        if self.script_position >= len(self.script):
            if not self.loop:
                return None
            self.script_position = 0
        index = self.script_position
        self.script_position += 1
        text, segments = self.script[index]
        return HostItem(self.new_id(), "script", text, segments, script_index=index)

    @property
    def script_finished(self) -> bool:
        return bool(self.script) and not self.loop and self.script_position >= len(self.script)
