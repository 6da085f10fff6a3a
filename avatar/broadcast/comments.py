"""Viewer comments on their way in: cleaned, moderated, de-duplicated and rate-limited.

Anyone who can reach the comment API can make the avatar talk, so nothing is queued for speech
before it passes, in this order: not empty, not too long, no blocklisted word (in the text or the
name), the moderation hook, not a repeat of something said recently, the viewer's and the whole
chat's rate limits, and room in the queue. The cheap, certain checks come first; the rate limits
come last so that a refused comment never spends anyone's budget. Every refusal says what to do
next, and never repeats the blocked word back.

Names are self-declared, so the per-viewer limit only keeps honest viewers from flooding; the
global limit is what bounds the chat. Viewers without a name share the name "viewer" and so share
one budget. All time comes from the injected `Clock`, which makes every boundary testable.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import unicodedata
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from avatar.core.clock import Clock
from avatar.core.errors import InputError
from avatar.core.text_files import read_utf8_text

log = logging.getLogger(__name__)

REASONS = ("empty", "too_long", "rate_limited", "duplicate", "blocked", "moderated", "queue_full")
MAX_USER_CHARS = 40
DEFAULT_USER = "viewer"
GLOBAL_WINDOW_S = 60.0
# Each history (recent comments for duplicates, each viewer's last comment) forgets its oldest
# entry beyond this, whatever the rate settings: a show that runs for days with
# --comments-per-minute 100000 must not keep a day of comments. 10k entries is ~2 MB.
MAX_HISTORY_ENTRIES = 10_000
MIN_EVASION_LETTERS = 3  # "s p a m" is caught for terms this long; shorter ones match too much prose

ModerationHook = Callable[[str, str], str | None]
"""(user, text) -> None to allow the comment, or the reason to refuse it."""

# Scripts written without spaces between words: a blocklist term in them matches anywhere.
_UNSPACED_SCRIPT = re.compile(
    r"[\u0e00-\u0eff\u1000-\u109f\u1100-\u11ff\u1780-\u17ff\u2e80-\u2fff\u3040-\u30ff\u3130-\u318f"
    r"\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002ffff]"
)
_EVASION_GAP = re.compile(r"[\s._\-]+")  # what "s p a m", "s.p.a.m", "s_p_a_m" put between letters
_WORD = re.compile(r"[^\W_]+")  # letters and digits; "_" separates words like a space does
_SPACES = re.compile(r" +")
_CHECK_FAILED = "The moderation check failed, so the comment was not accepted; please try again later."


@dataclass(frozen=True)
class Comment:
    """An accepted comment, cleaned, with its id and the clock time it arrived."""

    comment_id: int
    user: str
    text: str
    received_s: float


@dataclass(frozen=True)
class IntakeVerdict:
    """What became of a submitted comment.

    `reason` is "" when accepted, else one of `REASONS`; `message` is meant for the viewer (and the
    operator's log) and says what to do next. `retry_after_s` is set for "rate_limited" only, for
    an HTTP Retry-After header.
    """

    accepted: bool
    reason: str
    message: str
    comment: Comment | None = None
    retry_after_s: float | None = None


def clean_text(text: str | None) -> str:
    """NFKC, every kind of whitespace to one space, control and format characters (zero-width
    spaces, bidi overrides, lone surrogates) removed, trimmed."""
    if not text:
        return ""
    kept = []
    for char in unicodedata.normalize("NFKC", str(text)):
        if char.isspace():
            kept.append(" ")
        elif unicodedata.category(char) not in ("Cc", "Cf", "Cs"):
            kept.append(char)
    return _SPACES.sub(" ", "".join(kept)).strip()


def clean_user(user: str | None) -> str:
    """The display name: cleaned like a comment, at most `MAX_USER_CHARS`, "viewer" when empty."""
    raw = "" if user is None else str(user)
    return clean_text(raw[: 25 * MAX_USER_CHARS])[:MAX_USER_CHARS].strip() or DEFAULT_USER


def fold(text: str) -> str:
    """Case- and width-insensitive form used for matching (NFKC, casefold, NFKC again)."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def duplicate_key(text: str) -> str:
    """What two comments must share to count as the same: their letters, digits and marks after
    `fold`, without punctuation, emoji or spaces. A comment of only emoji keys on the emoji."""
    folded = fold(text)
    key = "".join(char for char in folded if unicodedata.category(char)[0] in "LNM")
    return key or "".join(folded.split())


def load_blocklist(path: str | Path) -> list[str]:
    """Terms from a UTF-8 file, one a line; blank lines and lines starting with `#` are skipped."""
    text = read_utf8_text(path, "blocklist file")
    terms = []
    for line in text.splitlines():
        term = line.strip()
        if term and not term.startswith("#"):
            terms.append(term)
    return terms


class Blocklist:
    """Terms a comment (or a viewer's name) must not contain, matched in `fold`ed text.

    A term in a spaced script (Latin, Cyrillic, ...) matches whole words only, so "ass" leaves
    "class" alone; with 3+ letters it also matches its letters written apart with spaces, dots,
    hyphens or underscores ("s p a m", "s.p.a.m"). A term containing CJK, Thai or similar
    characters matches as a substring, because those scripts put no spaces between words. Words
    are looked up in sets rather than one big regex, so thousands of terms cost microseconds.
    """

    def __init__(self, terms: Iterable[str]) -> None:
        self._word_terms: set[tuple[str, ...]] = set()
        self._spread_terms: set[str] = set()
        self._substrings: list[str] = []
        for raw in terms:
            term = fold(clean_text(raw))
            words = tuple(_WORD.findall(term))
            if not term:
                continue
            if _UNSPACED_SCRIPT.search(term) or not words:
                self._substrings.append(term)
                continue
            self._word_terms.add(words)
            letters = "".join(words)
            if len(letters) >= MIN_EVASION_LETTERS:
                self._spread_terms.add(letters)
        self._max_words = max((len(words) for words in self._word_terms), default=0)
        self._max_spread = max((len(letters) for letters in self._spread_terms), default=0)

    def matches(self, text: str) -> bool:
        """Whether `text` contains any term."""
        if not self._word_terms and not self._substrings:
            return False
        folded = fold(text)
        if any(term in folded for term in self._substrings):
            return True
        tokens = list(_WORD.finditer(folded))
        words = [token.group() for token in tokens]
        for start in range(len(words)):
            for count in range(1, min(self._max_words, len(words) - start) + 1):
                if tuple(words[start : start + count]) in self._word_terms:
                    return True
        return any(self._spread_match(run) for run in _spread_runs(folded, tokens))

    def _spread_match(self, letters: str) -> bool:
        for start in range(len(letters)):
            for end in range(start + MIN_EVASION_LETTERS, min(len(letters), start + self._max_spread) + 1):
                if letters[start:end] in self._spread_terms:
                    return True
        return False


def _spread_runs(folded: str, tokens: list[re.Match[str]]) -> Iterable[str]:
    """Letters of every run of single-character words with only evasion gaps between them."""
    run: list[str] = []
    previous_end = -1
    for token in tokens:
        single = len(token.group()) == 1
        if single and run and _EVASION_GAP.fullmatch(folded, previous_end, token.start()):
            run.append(token.group())
        else:
            if len(run) >= MIN_EVASION_LETTERS:
                yield "".join(run)
            run = [token.group()] if single else []
        previous_end = token.end()
    if len(run) >= MIN_EVASION_LETTERS:
        yield "".join(run)


class CommentIntake:
    """The gate between the comment API and the speech queue, plus that queue of pending comments.

    Methods take a lock, so the HTTP side may submit while the host pops from another thread.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        max_chars: int = 300,
        per_user_interval_s: float = 10.0,
        global_per_minute: int = 30,
        duplicate_window_s: float = 300.0,
        blocklist: Iterable[str] = (),
        moderation: ModerationHook | None = None,
        max_pending: int = 50,
    ) -> None:
        _require(max_chars >= 1, f"max_chars must be at least 1, got {max_chars}")
        _require(
            math.isfinite(per_user_interval_s) and per_user_interval_s >= 0,
            f"per_user_interval_s must be 0 or more seconds, got {per_user_interval_s}",
        )
        _require(global_per_minute >= 1, f"global_per_minute must be at least 1, got {global_per_minute}")
        _require(
            math.isfinite(duplicate_window_s) and duplicate_window_s >= 0,
            f"duplicate_window_s must be 0 or more seconds, got {duplicate_window_s}",
        )
        _require(max_pending >= 1, f"max_pending must be at least 1, got {max_pending}")
        self._clock = clock
        self._max_chars = max_chars
        self._per_user_interval_s = float(per_user_interval_s)
        self._global_per_minute = global_per_minute
        self._duplicate_window_s = float(duplicate_window_s)
        self._blocklist = Blocklist(blocklist)
        self._moderation = moderation
        self._max_pending = max_pending
        self._lock = threading.Lock()
        self._pending: deque[Comment] = deque()
        self._next_id = 1
        # Ordered oldest first (the clock never goes back), so expired entries leave from the front.
        self._last_accepted_s_by_user: OrderedDict[str, float] = OrderedDict()
        self._accepted_s_by_key: OrderedDict[str, float] = OrderedDict()
        self._accepted_times_s: deque[float] = deque()

    def submit(self, user: str, text: str) -> IntakeVerdict:
        """Check a comment and queue it when it passes; refused comments change nothing."""
        user = clean_user(user)
        raw_text = "" if text is None else str(text)
        # NFKC of a huge body is slow: anything far over the limit is refused before cleaning.
        if len(raw_text) > 10 * self._max_chars + 1000:
            return self._too_long(len(raw_text))
        text = clean_text(raw_text)
        if not text:
            return _refused("empty", "The comment is empty; type something for the avatar to answer.")
        if len(text) > self._max_chars:
            return self._too_long(len(text))
        if self._blocklist.matches(text):
            return _refused(
                "blocked", "Your comment contains a word that is not allowed here; please rephrase it."
            )
        if self._blocklist.matches(user):
            return _refused(
                "blocked", "Your name contains a word that is not allowed here; please choose another name."
            )
        refusal = self._moderate(user, text)
        if refusal is not None:
            return refusal
        with self._lock:
            return self._admit(user, text)

    def pop(self) -> Comment | None:
        """The oldest pending comment, removed from the queue; None when there is none."""
        with self._lock:
            return self._pending.popleft() if self._pending else None

    @property
    def pending_count(self) -> int:
        with self._lock:
            return len(self._pending)

    def pending(self) -> list[Comment]:
        """A copy of the queue, oldest first."""
        with self._lock:
            return list(self._pending)

    def clear(self) -> int:
        """Drop every pending comment (rate and duplicate history stay); returns how many."""
        with self._lock:
            count = len(self._pending)
            self._pending.clear()
            return count

    def _too_long(self, length: int) -> IntakeVerdict:
        return _refused(
            "too_long",
            f"The comment has {length:,} characters; please keep it to {self._max_chars:,} or fewer.",
        )

    def _moderate(self, user: str, text: str) -> IntakeVerdict | None:
        """None when the hook allows the comment (or there is none); a failing hook refuses it."""
        if self._moderation is None:
            return None
        try:
            verdict = self._moderation(user, text)
        except Exception:
            log.exception("the moderation hook failed; comment from %r refused", user)
            return _refused("moderated", _CHECK_FAILED)
        if verdict is None:
            return None
        if not isinstance(verdict, str):
            log.error("the moderation hook returned %r instead of None or a reason; comment refused", verdict)
            return _refused("moderated", _CHECK_FAILED)
        reason = clean_text(verdict) or "refused by moderation"
        return _refused("moderated", f"Your comment was not accepted ({reason}); please rephrase it.")

    def _admit(self, user: str, text: str) -> IntakeVerdict:
        """The checks that depend on history, then queueing; call with the lock held."""
        now_s = self._clock.now_s()
        _expire(self._accepted_s_by_key, now_s, self._duplicate_window_s)
        _expire(self._last_accepted_s_by_user, now_s, self._per_user_interval_s)
        while self._accepted_times_s and self._accepted_times_s[0] + GLOBAL_WINDOW_S <= now_s:
            self._accepted_times_s.popleft()
        key = duplicate_key(text)
        if key in self._accepted_s_by_key:
            return _refused(
                "duplicate", "The same comment was posted a moment ago; please write something new."
            )
        user_key = fold(user)
        if user_key in self._last_accepted_s_by_user:
            wait_s = self._last_accepted_s_by_user[user_key] + self._per_user_interval_s - now_s
            return _rate_limited(
                f"You are commenting quickly; you can comment again in {_whole_s(wait_s)} s.", wait_s
            )
        if len(self._accepted_times_s) >= self._global_per_minute:
            wait_s = self._accepted_times_s[0] + GLOBAL_WINDOW_S - now_s
            return _rate_limited(f"The chat is busy; please try again in {_whole_s(wait_s)} s.", wait_s)
        if len(self._pending) >= self._max_pending:
            return _refused(
                "queue_full", "The avatar has too many comments waiting; please try again in a minute or two."
            )
        comment = Comment(self._next_id, user, text, now_s)
        self._next_id += 1
        self._pending.append(comment)
        _record(self._accepted_s_by_key, key, now_s)
        _record(self._last_accepted_s_by_user, user_key, now_s)
        self._accepted_times_s.append(now_s)
        return IntakeVerdict(
            True, "", f"Thanks! Your comment is number {len(self._pending)} in the queue.", comment
        )


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InputError(message, "fix the comment intake settings")


def _refused(reason: str, message: str) -> IntakeVerdict:
    return IntakeVerdict(False, reason, message)


def _rate_limited(message: str, wait_s: float) -> IntakeVerdict:
    return IntakeVerdict(False, "rate_limited", message, retry_after_s=wait_s)


def _whole_s(duration_s: float) -> int:
    """Seconds to tell a viewer: rounded up, so trying again after them always works."""
    return max(1, math.ceil(duration_s - 1e-9))


def _expire(times_s: OrderedDict[str, float], now_s: float, window_s: float) -> None:
    """Drop entries whose window [t, t + window_s) is over. `t + window_s <= now_s` rather than
    `t <= now_s - window_s`: a clock advanced by exactly `window_s` then compares equal in floats."""
    while times_s:
        key, time_s = next(iter(times_s.items()))
        if time_s + window_s > now_s:
            return
        del times_s[key]


def _record(times_s: OrderedDict[str, float], key: str, now_s: float) -> None:
    times_s[key] = now_s
    times_s.move_to_end(key)
    while len(times_s) > MAX_HISTORY_ENTRIES:
        times_s.popitem(last=False)
