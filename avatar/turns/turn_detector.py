"""User turns from VAD events: when the user starts talking (barge-in) and when they are done.

A VAD says where speech is; a conversation needs two different decisions from that:

- *the user has started talking*: drives barge-in, so it must come early, but a cough or a click
  must not silence the avatar. `UserSpeechStarted` fires once speech has lasted `min_turn_s`.
- *the user has finished*: ends the turn and hands one sample range to ASR. Short pauses inside
  a sentence ("ask not ... what your country") must not split it, so speech segments closer than
  `end_silence_ms` merge into one turn.

With a turn model (Smart Turn, `avatar.turns.smart_turn`) the second decision comes earlier: after
`check_after_silence_ms` of silence the detector emits a `TurnEndCheck`; the caller scores the
audio and answers with `decide`. "complete" ends the turn at once; "unsure" waits as the silence
rule would (`unsure_silence_ms`, 500 ms); "incomplete" leaves the turn open until `end_silence_ms`,
which is then a fallback (1-2 s) rather than the rule.

Pure logic on event times: no audio, no clock, no I/O. The caller says how far the audio stream
has been processed (`stream_time_s`), which is what lets a turn end during silence, when the VAD
has nothing new to report, and what makes the detector deterministic in virtual time.
"""

from __future__ import annotations

from collections.abc import Iterable

from avatar.core.types import TurnEndCheck, TurnEvent, UserSpeechStarted, UserTurnEnded, VADEvent

# Durations are differences of sample-derived float times (2.4 - 2.2 = 0.19999999999999973): compare
# with a tolerance far below one sample so a 200 ms gate opens at exactly 200 ms.
TIME_EPSILON_S = 1e-9


class TurnDetector:
    """Merges VAD speech segments into user turns; one instance per conversation.

    `min_turn_s`: speech must last this long (from its onset) before it counts as the user
    talking; shorter blips are dropped unless they fall inside an ongoing turn.
    `end_silence_ms`: silence after the last speech that ends the turn. The VAD's own hangover
    (`min_silence_ms`) is a floor: a speech_end arrives only after that much silence already.
    `check_after_silence_ms`: when set, the silence after which a `TurnEndCheck` asks the caller's
    turn model (once per pause); `end_silence_ms` is then the wait after an "incomplete" answer
    (or none), and `unsure_silence_ms` the wait after an "unsure" one.
    """

    def __init__(
        self,
        min_turn_s: float = 0.2,
        end_silence_ms: float = 500.0,
        check_after_silence_ms: float | None = None,
        unsure_silence_ms: float = 500.0,
    ) -> None:
        if min_turn_s < 0:
            raise ValueError(f"min_turn_s must be >= 0, got {min_turn_s}")
        if end_silence_ms < 0:
            raise ValueError(f"end_silence_ms must be >= 0, got {end_silence_ms}")
        if check_after_silence_ms is not None and not 0 <= check_after_silence_ms < end_silence_ms:
            raise ValueError(
                f"check_after_silence_ms must be >= 0 and below end_silence_ms ({end_silence_ms}), "
                f"got {check_after_silence_ms}"
            )
        self.min_turn_s = float(min_turn_s)
        self.end_silence_s = float(end_silence_ms) / 1000.0
        self.check_after_s = None if check_after_silence_ms is None else check_after_silence_ms / 1000.0
        self.unsure_silence_s = float(unsure_silence_ms) / 1000.0
        self.reset()

    def reset(self) -> None:
        """Forget everything, e.g. when the stream restarts at sample 0."""
        self._speech_start: VADEvent | None = None  # current VAD segment, if speech is ongoing
        self._turn_start: VADEvent | None = None  # first segment of the announced turn
        self._last_end: VADEvent | None = None  # end of the turn's latest segment, while silent
        self._checked_end: VADEvent | None = None  # the pause a TurnEndCheck was emitted for
        self._pause_silence_s: float | None = None  # the silence that ends this pause, once decided
        self._decided_at_s = 0.0  # when the turn model's answer for this pause became known

    @property
    def in_turn(self) -> bool:
        """True between UserSpeechStarted and UserTurnEnded."""
        return self._turn_start is not None

    def process(self, events: Iterable[VADEvent], stream_time_s: float) -> list[TurnEvent]:
        """Apply `events` (in stream order), then let stream time reach `stream_time_s`.

        Pass the time up to which the VAD's view is final (`SileroVAD.settled_until_s`), not
        wall time and not simply the audio consumed: a speech onset the VAD has seen but not yet
        confirmed must not let a pause end the turn, or the result would depend on how the audio
        was chunked. Output confirmation times are stream times, so latency stays measurable.
        """
        out: list[TurnEvent] = []
        for event in events:
            self._check_order(event)
            # Up to the event's own time the VAD's previous state held (speech or silence).
            self._advance(event.time_s, out)
            if event.kind == "speech_start":
                self._on_speech_start(event, out)
            else:
                self._on_speech_end(event, out)
        self._advance(stream_time_s, out)
        return out

    def decide(self, check: TurnEndCheck, verdict: str) -> list[TurnEvent]:
        """The turn model's answer to `check`: "complete" ends the turn now, "unsure" after
        `unsure_silence_ms`, "incomplete" after `end_silence_ms`. A stale check (the user spoke
        again since) changes nothing."""
        waits = {"complete": 0.0, "unsure": self.unsure_silence_s, "incomplete": self.end_silence_s}
        if verdict not in waits:
            raise ValueError(f"verdict must be one of {', '.join(waits)}, got {verdict!r}")
        end = self._last_end
        if end is None or end is not self._checked_end or end.sample_index != check.end_sample:
            return []
        self._pause_silence_s, self._decided_at_s = waits[verdict], check.at_s
        out: list[TurnEvent] = []
        self._advance(check.at_s, out)
        return out

    def finish(self, stream_time_s: float) -> list[TurnEvent]:
        """End of the stream: close the open turn at the last speech (or at the stream end)."""
        out: list[TurnEvent] = []
        self._advance(stream_time_s, out)
        if self._turn_start is not None:
            if self._speech_start is not None:
                rate = self._speech_start.sample_rate_hz
                end = VADEvent(
                    "speech_end", round(stream_time_s * rate), stream_time_s, 0.0, stream_time_s, rate
                )
            else:
                end = self._last_end
            assert end is not None
            out.append(self._turn_ended(end, stream_time_s))
        self.reset()
        return out

    def _check_order(self, event: VADEvent) -> None:
        expected = "speech_end" if self._speech_start is not None else "speech_start"
        if event.kind != expected:
            raise ValueError(f"VAD events out of order: got {event.kind} while expecting {expected}")

    def _on_speech_start(self, event: VADEvent, out: list[TurnEvent]) -> None:
        self._speech_start = event
        self._last_end = None
        self._pause_silence_s = None
        if (
            self._turn_start is None
            and event.confirmed_at_s - event.time_s >= self.min_turn_s - TIME_EPSILON_S
        ):
            self._announce(event, event.confirmed_at_s, out)

    def _on_speech_end(self, event: VADEvent, out: list[TurnEvent]) -> None:
        start = self._speech_start
        assert start is not None
        self._speech_start = None
        if self._turn_start is None:
            if event.time_s - start.time_s < self.min_turn_s - TIME_EPSILON_S:
                return  # a blip: never announced, never a turn
            self._announce(start, start.time_s + self.min_turn_s, out)
        self._last_end = event

    def _advance(self, now_s: float, out: list[TurnEvent]) -> None:
        """Let stream time reach `now_s`: announce long-enough speech, end long-enough silence."""
        start = self._speech_start
        if (
            self._turn_start is None
            and start is not None
            and now_s - start.time_s >= self.min_turn_s - TIME_EPSILON_S
        ):
            self._announce(start, max(start.confirmed_at_s, start.time_s + self.min_turn_s), out)
        end = self._last_end
        wait_s = self.end_silence_s if self._pause_silence_s is None else self._pause_silence_s
        if end is not None and now_s - end.time_s >= wait_s - TIME_EPSILON_S:
            confirmed_at_s = max(end.confirmed_at_s, end.time_s + wait_s)
            if self._pause_silence_s is not None:  # decided by the model: not before its answer
                confirmed_at_s = max(confirmed_at_s, self._decided_at_s)
            out.append(self._turn_ended(end, confirmed_at_s))
            self._turn_start = None
            self._last_end = None
            self._pause_silence_s = None
        elif (
            end is not None
            and self.check_after_s is not None
            and self._checked_end is not end
            and now_s - end.time_s >= self.check_after_s - TIME_EPSILON_S
        ):
            self._checked_end = end
            at_s = max(end.confirmed_at_s, end.time_s + self.check_after_s)
            out.append(
                TurnEndCheck(end.time_s, end.sample_index, end.sample_rate_hz, at_s, at_s - end.time_s)
            )

    def _announce(self, start: VADEvent, confirmed_at_s: float, out: list[TurnEvent]) -> None:
        self._turn_start = start
        out.append(UserSpeechStarted(start.time_s, start.sample_index, confirmed_at_s))

    def _turn_ended(self, end: VADEvent, confirmed_at_s: float) -> UserTurnEnded:
        start = self._turn_start
        assert start is not None
        return UserTurnEnded(
            start_s=start.time_s,
            end_s=end.time_s,
            start_sample=start.sample_index,
            end_sample=end.sample_index,
            sample_rate_hz=start.sample_rate_hz,
            confirmed_at_s=confirmed_at_s,
        )
