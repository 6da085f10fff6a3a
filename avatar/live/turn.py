"""One avatar reply in a live conversation, and the part of it the user actually heard."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Turn:
    """One avatar reply and what it has queued so far."""

    turn_id: int
    user_text: str = ""
    user_start_sample: int | None = None  # where the user's utterance began in the mic stream
    user_message: dict[str, str] | None = None  # its entries in the history, kept by reference
    sentences: list[tuple[str, int]] = field(default_factory=list)  # (text, turn sample where it ends)
    queued_samples: int = 0
    task: asyncio.Task | None = None
    finished: bool = False
    assistant_message: dict[str, str] | None = None
    # A speculative turn (see ConversationSession._speculate) prepares its reply while the user
    # may still go on talking: it plays nothing and shows nothing until released.
    released: asyncio.Event = field(default_factory=asyncio.Event)
    held_events: list[dict[str, Any]] = field(default_factory=list)
    queue_claimed: bool = False


def heard_text(sentences: list[tuple[str, int]], played_samples: int) -> str:
    """The part of a reply the user actually heard: whole sentences, then the played share of the next."""
    heard, start = [], 0
    for text, end in sentences:
        if played_samples >= end:
            heard.append(text)
        elif played_samples > start:
            words = text.split()
            share = (played_samples - start) / max(end - start, 1)
            heard.append(" ".join(words[: int(len(words) * share)]))
            break
        else:
            break
        start = end
    return " ".join(part for part in heard if part)
