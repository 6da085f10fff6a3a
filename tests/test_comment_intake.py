"""Comment intake: cleaning, every refusal reason, exact rate-limit boundaries on virtual time."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from avatar.broadcast.comments import (
    REASONS,
    Blocklist,
    Comment,
    CommentIntake,
    IntakeVerdict,
    clean_text,
    clean_user,
    duplicate_key,
    load_blocklist,
)
from avatar.core.clock import VirtualClock
from avatar.core.errors import InputError
from tests.conftest import ASSETS

START_S = 0.44  # chosen so that (t + w) - w < t in floats: boundaries must not rely on subtraction


def advance_to(clock: VirtualClock, time_s: float) -> None:
    asyncio.run(clock.advance_to(time_s))


def make(**options) -> tuple[VirtualClock, CommentIntake]:
    clock = VirtualClock(START_S)
    return clock, CommentIntake(clock, **options)


def test_an_accepted_comment_is_cleaned_queued_and_numbered():
    _, intake = make()
    verdict = intake.submit("  Ann\u200b ", "ＨＥＬＬＯ\tthere,\n\n tea\x07 shop!  ")
    expected = Comment(1, "Ann", "HELLO there, tea shop!", START_S)
    assert verdict == IntakeVerdict(True, "", "Thanks! Your comment is number 1 in the queue.", expected)
    assert intake.pending() == [expected]
    assert intake.pending_count == 1


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("ｆｕｌｌ　ｗｉｄｔｈ", "full width"),
        ("a\r\nb\u2028c\u00a0d", "a b c d"),
        ("zero\u200bwidth\u202eflip\ufeff", "zerowidthflip"),
        ("lone \ud800surrogate", "lone surrogate"),
        ("\x00\x1b[31mred", "[31mred"),
        ("ﬁne ①", "fine 1"),
        (None, ""),
    ],
)
def test_cleaning(raw, cleaned):
    assert clean_text(raw) == cleaned


def test_user_names_are_cleaned_cut_and_defaulted():
    assert clean_user("x" * 39 + " yz") == "x" * 39
    assert clean_user("n" * 50) == "n" * 40
    assert clean_user(" \u200b\n") == "viewer"
    assert clean_user(None) == "viewer"
    _, intake = make()
    assert intake.submit("", "hi").comment.user == "viewer"


@pytest.mark.parametrize("text", ["", "   ", "\u200b\n\t", None])
def test_empty_comments_are_refused(text):
    _, intake = make()
    verdict = intake.submit("ann", text)
    assert (verdict.accepted, verdict.reason, verdict.comment) == (False, "empty", None)
    assert verdict.message == "The comment is empty; type something for the avatar to answer."
    assert intake.pending_count == 0


def test_length_is_counted_after_cleaning_and_the_limit_itself_is_allowed():
    _, intake = make(max_chars=10)
    assert intake.submit("a", "0123456789").accepted
    assert intake.submit("b", "  01234   56789  ").reason == "too_long"  # 11 after collapsing
    verdict = intake.submit("c", "x" * 11)
    assert verdict.reason == "too_long"
    assert verdict.message == "The comment has 11 characters; please keep it to 10 or fewer."
    huge = intake.submit("d", "y" * 1_000_000)
    assert huge.reason == "too_long" and "1,000,000 characters" in huge.message


BLOCKLIST = ("ass", "spam", "Free Followers", "笨蛋", "ab")


@pytest.mark.parametrize(
    "text",
    [
        "you ass",
        "ASS!",
        "my_ass",
        "spam spam",
        "ＳＰＡＭ",
        "sp\u200bam",
        "s p a m",
        "s.p.a.m",
        "S_P_A_M please",
        "s-p-a-m",
        "a.s.s",
        "get free   followers now",
        "你是笨蛋吗",
        "笨蛋",
        "ab",
    ],
)
def test_blocklisted_words_are_refused_without_echoing_them(text):
    _, intake = make(blocklist=BLOCKLIST)
    verdict = intake.submit("ann", text)
    assert (verdict.accepted, verdict.reason) == (False, "blocked")
    assert verdict.message == "Your comment contains a word that is not allowed here; please rephrase it."
    assert intake.pending_count == 0


@pytest.mark.parametrize(
    "text",
    [
        "a class act",
        "assistant",
        "passing",
        "spammer",
        "antispam",
        "free follower",
        "笨 蛋",
        "a b c",
        "lab",
        "grab",
    ],
)
def test_blocklist_respects_word_boundaries(text):
    _, intake = make(blocklist=BLOCKLIST, per_user_interval_s=0)
    assert intake.submit("ann", text).accepted


def test_blocklist_terms_of_several_words_punctuation_and_unspaced_scripts():
    blocklist = Blocklist(["click here", "d*mn", "!!!", "  ", "바보", "spam"])
    assert [
        blocklist.matches(text) for text in ("click-here", "CLICK_HERE!", "Click  here", "clickhere")
    ] == [
        True,
        True,
        True,
        False,
    ]
    assert (blocklist.matches("D*MN it"), blocklist.matches("damn it")) == (True, False)
    assert blocklist.matches("wow!!!") and blocklist.matches("너 바보야")
    assert blocklist.matches("buy s p a m now") and blocklist.matches("x.s.p.a.m")
    assert not blocklist.matches("s, p, a, m")  # commas are not among the evasion gaps
    assert not Blocklist(["  ", ""]).matches("anything at all")


def test_a_blocklisted_name_is_refused():
    _, intake = make(blocklist=["spam"])
    verdict = intake.submit("SpamKing 2000", "hello")
    assert verdict.accepted  # "spamking" is another word
    verdict = intake.submit("spam king", "hello again")
    assert verdict.reason == "blocked" and "name" in verdict.message and "spam" not in verdict.message.lower()


def test_moderation_hook_allows_refuses_and_sees_cleaned_input():
    seen = []

    def hook(user: str, text: str) -> str | None:
        seen.append((user, text))
        return "off topic" if "weather" in text else None

    _, intake = make(moderation=hook, per_user_interval_s=0)
    assert intake.submit(" Ann ", "Which tea\nfor winter?").accepted
    verdict = intake.submit("bob", "How is the weather?")
    assert verdict == IntakeVerdict(
        False, "moderated", "Your comment was not accepted (off topic); please rephrase it."
    )
    assert seen == [("Ann", "Which tea for winter?"), ("bob", "How is the weather?")]


def test_a_failing_moderation_hook_fails_closed_and_is_logged(caplog):
    def broken(user: str, text: str) -> str | None:
        raise RuntimeError("moderation service down")

    _, intake = make(moderation=broken)
    with caplog.at_level(logging.ERROR, logger="avatar.broadcast.comments"):
        verdict = intake.submit("ann", "hello")
    assert (verdict.accepted, verdict.reason) == (False, "moderated")
    assert verdict.message.startswith("The moderation check failed")
    assert "moderation hook failed" in caplog.text and "moderation service down" in caplog.text
    assert intake.pending_count == 0


def test_a_moderation_hook_returning_a_non_string_fails_closed(caplog):
    _, intake = make(moderation=lambda user, text: False)
    with caplog.at_level(logging.ERROR, logger="avatar.broadcast.comments"):
        assert intake.submit("ann", "hello").reason == "moderated"
    assert "instead of None or a reason" in caplog.text


def test_checks_run_in_the_documented_order():
    calls = []

    def hook(user: str, text: str) -> str | None:
        calls.append(text)
        return "no" if text.startswith("refuse") else None

    _, intake = make(max_chars=20, blocklist=["spam"], moderation=hook, max_pending=1)
    assert intake.submit("ann", "spam " * 5).reason == "too_long"  # too_long before blocked
    assert intake.submit("ann", "refuse spam").reason == "blocked"  # blocked before the hook
    assert calls == []
    assert intake.submit("ann", "hello").accepted
    assert intake.submit("bob", "refuse hello").reason == "moderated"  # the hook before duplicate
    assert intake.submit("ann", "HELLO!").reason == "duplicate"  # duplicate before rate_limited
    assert intake.submit("ann", "new words").reason == "rate_limited"  # rate_limited before queue_full
    assert intake.submit("bob", "new words").reason == "queue_full"


def test_duplicates_are_caught_across_users_case_punctuation_emoji_and_width():
    _, intake = make(per_user_interval_s=0)
    assert intake.submit("ann", "Is the oolong roasted?").accepted
    for variant in (
        "is the oolong roasted",
        "IS THE OOLONG ROASTED?!! 🍵",
        "Ｉｓ　ｔｈｅ　ｏｏｌｏｎｇ ｒｏａｓｔｅｄ？",
        "isthe oolongroasted",
    ):
        verdict = intake.submit("bob", variant)
        assert verdict.reason == "duplicate", variant
    assert verdict.message == "The same comment was posted a moment ago; please write something new."
    assert intake.submit("bob", "Is the oolong roasted twice?").accepted


def test_duplicate_keys():
    assert duplicate_key("Ｈｅｌｌｏ, World! 👋") == duplicate_key("hello world") == "helloworld"
    assert duplicate_key("Straße") == duplicate_key("STRASSE")
    assert duplicate_key("你好！") == duplicate_key("你好") == "你好"
    assert duplicate_key("👍 👍") == "👍👍" != duplicate_key("❤️")  # emoji-only comments key on the emoji


def test_the_duplicate_window_expires_at_exactly_its_length():
    clock, intake = make(duplicate_window_s=300.0, per_user_interval_s=0)
    assert intake.submit("ann", "first!").accepted
    advance_to(clock, START_S + 300.0 - 0.001)
    assert intake.submit("bob", "First").reason == "duplicate"
    advance_to(clock, START_S + 300.0)
    assert intake.submit("bob", "First").accepted
    assert intake.submit("cid", "first").reason == "duplicate"  # the new acceptance starts a new window


def test_per_user_interval_boundaries():
    clock, intake = make(per_user_interval_s=10.0)
    assert intake.submit("ann", "one").accepted
    advance_to(clock, START_S + 3.0)
    verdict = intake.submit("ann", "two")
    assert verdict == IntakeVerdict(
        False,
        "rate_limited",
        "You are commenting quickly; you can comment again in 7 s.",
        retry_after_s=pytest.approx(7.0),
    )
    assert intake.submit("Ann", "two").reason == "rate_limited"  # names compare case-insensitively
    assert intake.submit("bob", "two").accepted  # others are not held up
    advance_to(clock, START_S + 10.0 - 0.001)
    verdict = intake.submit("ann", "three")
    assert verdict.reason == "rate_limited"
    assert verdict.message.endswith("again in 1 s.") and verdict.retry_after_s == pytest.approx(0.001)
    advance_to(clock, START_S + 10.0)
    assert intake.submit("ann", "three").accepted


def test_the_global_limit_is_a_sliding_60_s_window():
    clock, intake = make(global_per_minute=3, per_user_interval_s=0)
    for offset_s, text in ((0.0, "a one"), (20.0, "a two"), (40.0, "a three")):
        advance_to(clock, START_S + offset_s)
        assert intake.submit("ann", text).accepted
    advance_to(clock, START_S + 60.0 - 0.001)
    verdict = intake.submit("bob", "b one")
    assert (verdict.reason, verdict.message) == ("rate_limited", "The chat is busy; please try again in 1 s.")
    advance_to(clock, START_S + 60.0)  # the comment at 0 s leaves the window
    assert intake.submit("bob", "b one").accepted
    advance_to(clock, START_S + 80.0 - 0.001)
    assert intake.submit("cid", "c one").reason == "rate_limited"
    advance_to(clock, START_S + 80.0)
    assert intake.submit("cid", "c one").accepted
    assert intake.submit("dan", "d one").message == "The chat is busy; please try again in 20 s."


def test_refused_comments_do_not_consume_any_budget():
    clock, intake = make(
        per_user_interval_s=10.0,
        global_per_minute=2,
        blocklist=["spam"],
        moderation=lambda user, text: "no" if "nope" in text else None,
        max_pending=1,
    )
    for text in ("", "x" * 301, "spam", "nope"):
        assert not intake.submit("ann", text).accepted
    assert intake.submit("ann", "first real comment").accepted  # no per-user wait from the refusals
    assert intake.submit("bob", "queue is full now").reason == "queue_full"
    assert intake.pop() is not None
    assert intake.submit("bob", "queue is full now").accepted  # the queue_full refusal was not counted
    assert intake.pop() is not None
    advance_to(clock, START_S + 5.0)
    assert intake.submit("ann", "too soon").reason == "rate_limited"
    advance_to(clock, START_S + 10.0)  # the refusal at 5 s did not restart ann's interval
    assert intake.submit("cid", "third").reason == "rate_limited"  # global: 2 in the last 60 s
    advance_to(clock, START_S + 60.0)
    assert intake.submit("ann", "too soon").accepted


def test_queue_full_and_the_pending_queue():
    clock, intake = make(max_pending=2, per_user_interval_s=0)
    assert intake.pop() is None
    first = intake.submit("ann", "one").comment
    advance_to(clock, START_S + 1.5)
    second = intake.submit("bob", "two").comment
    verdict = intake.submit("cid", "three")
    assert verdict.reason == "queue_full"
    assert verdict.message == "The avatar has too many comments waiting; please try again in a minute or two."
    assert (first.comment_id, second.comment_id, second.received_s) == (1, 2, START_S + 1.5)
    snapshot = intake.pending()
    snapshot.clear()
    assert intake.pending() == [first, second]  # pending() is a copy
    assert intake.pop() == first
    third = intake.submit("cid", "three").comment
    assert third.comment_id == 3
    assert intake.pending() == [second, third]
    assert intake.clear() == 2
    assert intake.clear() == 0
    assert (intake.pending_count, intake.pop()) == (0, None)
    assert intake.submit("dan", "four").comment.comment_id == 4  # ids never repeat
    assert intake.submit("dan", "three").reason == "duplicate"  # clearing keeps the history


def test_every_reason_is_documented():
    assert set(REASONS) == {
        "empty",
        "too_long",
        "rate_limited",
        "duplicate",
        "blocked",
        "moderated",
        "queue_full",
    }


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_chars": 0}, "max_chars must be at least 1"),
        ({"per_user_interval_s": -1}, "per_user_interval_s must be 0 or more seconds"),
        ({"per_user_interval_s": float("nan")}, "per_user_interval_s must be 0 or more seconds"),
        ({"global_per_minute": 0}, "global_per_minute must be at least 1"),
        ({"duplicate_window_s": float("inf")}, "duplicate_window_s must be 0 or more seconds"),
        ({"max_pending": 0}, "max_pending must be at least 1"),
    ],
)
def test_bad_settings_are_input_errors(options, message):
    with pytest.raises(InputError, match=message):
        CommentIntake(VirtualClock(), **options)


def test_load_blocklist_skips_comments_and_blank_lines(tmp_path):
    path = tmp_path / "block.txt"
    path.write_bytes("\ufeff# comment\n\n  Spam  \r\nclick here\n   # indented comment\n笨蛋\n".encode())
    assert load_blocklist(path) == ["Spam", "click here", "笨蛋"]


def test_the_example_blocklist_loads_and_blocks():
    terms = load_blocklist(ASSETS / "blocklist_example.txt")
    assert "scam" in terms and not any(term.startswith("#") for term in terms)
    _, intake = make(blocklist=terms, per_user_interval_s=0)
    assert intake.submit("ann", "S.C.A.M alert").reason == "blocked"
    assert intake.submit("ann", "Scampi with green tea?").accepted


def test_load_blocklist_errors(tmp_path, monkeypatch):
    with pytest.raises(InputError, match=r"blocklist file not found: .*missing\.txt"):
        load_blocklist(tmp_path / "missing.txt")
    with pytest.raises(InputError, match="is a folder"):
        load_blocklist(tmp_path)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin1\.txt is not UTF-8 text"):
        load_blocklist(latin1)

    def refuse(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)  # chmod would not stop a test running as root
    with pytest.raises(InputError, match=r"cannot read blocklist .*latin1\.txt: Permission denied"):
        load_blocklist(latin1)
