"""What a live reply does when an engine raises, hangs or returns garbage: the turn ends, never the
session.

Every engine call of a reply is guarded (`avatar.core.deadlines`): a failure, a result the stage
cannot use, or no result within the stage's deadline (`StageTimeouts`) becomes one
`EngineFailed(stage)`. The turn then ends with a `turn_failed` event naming the stage (the page
shows it), the lip-sync state is reset, and the avatar says a short apology when its voice and
face still work (a TTS or lip-sync failure is only shown). What was queued before the failure
still plays; a turn that said nothing leaves no user message in the history, so the user's next
words are not read as a second question. The next turn starts clean.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from avatar.core.deadlines import guarded_tokens
from avatar.core.errors import EngineFailed
from avatar.core.types import Transcript
from avatar.speech.sentence_stream import SpokenSentence

if TYPE_CHECKING:
    from avatar.live.turn import Turn

MAX_TRANSCRIPT_CHARS = 2000  # 60 s of fast speech is ~1,000 characters; more is a recogniser's garbage
FALLBACK_REPLIES = {
    "en": "Sorry, I could not answer that just now. Could you say it again?",
    "zh": "抱歉，我刚才没能回答。请您再说一遍好吗？",
}
SILENT_STAGES = ("tts", "lip-sync")  # the apology would need the engine that failed


def checked_transcript(result: Any) -> Transcript:
    """The recogniser's answer as a `Transcript` with text, or EngineFailed("asr"); text beyond
    `MAX_TRANSCRIPT_CHARS` is cut (the chat model would only choke on it)."""
    if not isinstance(result, Transcript) or not isinstance(result.text, str):
        kind = type(result.text if isinstance(result, Transcript) else result).__name__
        raise EngineFailed("asr", f"the recogniser returned {kind}, not a transcript")
    language = result.language if isinstance(result.language, str) else ""
    if len(result.text) > MAX_TRANSCRIPT_CHARS or language != result.language:
        return Transcript(result.text[:MAX_TRANSCRIPT_CHARS], language, result.emotion, tuple(result.events))
    return result


class TurnFaults:
    """Mixin of `ConversationSession` (needs `llm`, `lipsync`, `clock`, `language`,
    `stage_timeouts`, `_emit_turn`, `_speak`, `_put`, `_remove_history`)."""

    def _reply_tokens(self, turn: Turn, messages: list[dict[str, str]]):
        """The chat model's reply stream, guarded (`guarded_tokens`): deadlines, text tokens only,
        cut at `max_reply_chars` with a `reply_truncated` event."""
        try:
            stream = self.llm.stream(messages)
        except Exception as error:  # a model that fails before its first token
            raise EngineFailed("llm", f"{type(error).__name__}: {error}") from error

        def truncated(chars: int) -> None:
            self._emit_turn(turn, "reply_truncated", turn_id=turn.turn_id, chars=chars)

        return guarded_tokens(stream, clock=self.clock, timeouts=self.stage_timeouts, on_truncated=truncated)

    async def _contained(self, turn: Turn, work) -> None:
        """Run a turn's work; an engine failure ends the turn (see the module docstring)."""
        try:
            await work
        except EngineFailed as failure:
            await self._fail_turn(turn, failure)

    async def _fail_turn(self, turn: Turn, failure: EngineFailed) -> None:
        self.lipsync.reset()  # half a sentence of audio may wait in it for frames never drawn
        speak = failure.stage not in SILENT_STAGES
        fallback = FALLBACK_REPLIES.get((self.language or "en")[:2], FALLBACK_REPLIES["en"])
        self._emit_turn(
            turn,
            "turn_failed",
            turn_id=turn.turn_id,
            stage=failure.stage,
            error=str(failure),
            fallback=fallback,
            fallback_spoken=speak,
        )
        if turn.queued_samples == 0 and turn.user_message is not None:
            self._remove_history(turn.user_message)
            turn.user_message = None
        if speak:
            await self._say_fallback(turn, fallback)
        turn.finished = True

    async def _say_fallback(self, turn: Turn, text: str) -> None:
        """The apology, spoken like any reply sentence; if the voice or face fails now as well,
        it stays shown only (the event said it)."""
        from avatar.playout.av_output import AVSegment

        try:
            await self._speak(turn, SpokenSentence(text, "sad"), self.clock.now_s())
            pcm, frames = self.lipsync.flush()
            if frames:
                await self._put(turn, AVSegment(turn.turn_id, pcm, frames))
                turn.queued_samples += len(pcm)
            spoken = " ".join(sentence for sentence, _ in turn.sentences)
            self._emit_turn(
                turn, "turn_rendered", turn_id=turn.turn_id, text=spoken
            )  # the page closes the turn
        except EngineFailed as again:
            self.lipsync.reset()
            self._emit_turn(
                turn, "fallback_failed", turn_id=turn.turn_id, stage=again.stage, error=str(again)
            )
