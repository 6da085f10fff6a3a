"""Serve soak: `avatar serve` with several WebRTC sessions talking and interrupting for a long time.

Starts `avatar serve` (default engines, the bundled portrait's top square, --size 256 so four
sessions fit two cores) as a child process with loopback-only ICE, then runs `--sessions` probe
clients (tests.support.live_probe_client.LiveProbe: real aiortc peers on 127.0.0.1) at once. Each
loops: ask a question (bench/live_questions.py: real recordings and synthesized shop questions,
alternating), wait for the reply; every `--barge-every`th turn talk over the reply instead and time
the silence; pause `--pause-s` (+-50 %, so the sessions drift apart); after `--turns-per-session`
turns close the peer connection and open a new session, so leaks on session teardown show.

Every 10 s the server's RSS, anonymous RSS, open fds, threads and CPU seconds (and its child
processes' RSS and CPU, e.g. the Mandarin TTS worker) and its /health session count are sampled.
Samples, turns and probe failures are appended to `<report>.samples.jsonl`, `.turns.jsonl` and
`.failures.jsonl` as they happen, so a crash late in a long run keeps them; at the end (or on
Ctrl-C) the summary goes to `<report>` and a markdown section to `<report>.md`
(bench/serve_soak_report.py, which can also re-summarize the jsonl files of a broken run).
A probe session that fails is recorded and reopened; the soak never stops for one probe.

    nice -n 10 .venv/bin/python -m bench.serve_soak --minutes 120 \\
        --report docs/measurements/serve_soak_2h.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shlex
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.live_latency import server_child, server_health, top_square
from bench.livestream_soak import anon_rss_mb, children, cpu_seconds, open_fds, rss_mb
from bench.machine_info import describe_machine
from bench.serve_soak_report import markdown, summarize

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_EVERY_S = 10.0
TURN_TIMEOUT_S = 120.0  # a turn that takes longer is recorded as unanswered and its session reopened
STOP_GRACE_S = 60.0
SERVER_START_TIMEOUT_S = 600.0  # loading the engines takes ~70 s alone; minutes on a shared machine  # after the deadline or Ctrl-C, sessions may finish their turn this long
RECONNECT_AFTER_FAILURE_S = 3.0


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return -1


class Journal:
    """Appends each record to its .jsonl next to the report as it happens and keeps it in memory."""

    def __init__(self, report: Path) -> None:
        self.report = report
        self.records: dict[str, list[dict]] = {"samples": [], "turns": [], "failures": []}
        self._lock = threading.Lock()  # the sampler thread writes too
        for kind in self.records:
            self.path(kind).write_text("")

    def path(self, kind: str) -> Path:
        return self.report.with_suffix(f".{kind}.jsonl")

    def add(self, kind: str, record: dict) -> None:
        with self._lock:
            self.records[kind].append(record)
            with self.path(kind).open("a") as out:
                out.write(json.dumps(record) + "\n")


class Sampler(threading.Thread):
    """Reads the server's /proc (and /health's session count) every SAMPLE_EVERY_S in a thread,
    so a busy event loop in the probes cannot delay or skip samples."""

    def __init__(self, pid: int, url: str, journal: Journal, start_s: float) -> None:
        super().__init__(name="serve-soak-sampler")
        self.pid, self.url, self.journal, self.start_s = pid, url, journal, start_s
        self.stop = threading.Event()
        # The probes' event-loop lag (set by SoakRun.watch_loop): the worst since the last sample.
        # A probe whose loop lags seconds answers no ICE consent checks, and the server then
        # closes its session: this tells such a probe failure from a server fault.
        self.probe_loop_lag_ms = 0.0

    def run(self) -> None:
        while not self.stop.wait(SAMPLE_EVERY_S):
            try:
                self.journal.add("samples", self.sample())
            except (OSError, ValueError) as error:  # the server died: the run loop notices and stops
                print(f"sample failed: {error}", file=sys.stderr, flush=True)

    def sample(self) -> dict:
        kids = children(self.pid)
        asked_s = time.monotonic()
        try:
            sessions = server_health(self.url).get("sessions")
        except OSError:
            sessions = None
        # /health's round trip: queueing in the server's event loop, the loop that must also
        # answer ICE consent checks within aioice's 0.5 s
        health_ms = 1000 * (time.monotonic() - asked_s)
        return {
            "t_s": round(time.monotonic() - self.start_s, 2),
            "rss_mb": round(rss_mb(self.pid), 1),
            "anon_rss_mb": round(anon_rss_mb(self.pid), 1),
            "fds": open_fds(self.pid),
            "threads": threads(self.pid),
            "cpu_s": round(cpu_seconds(self.pid), 2),
            "children_rss_mb": round(sum(rss_mb(pid) for pid in kids), 1),
            "children_cpu_s": round(sum(cpu_seconds(pid) for pid in kids), 2),
            "sessions": sessions,
            "health_ms": round(health_ms, 1),
            "probe_cpu_s": round(cpu_seconds(os.getpid()), 2),
            "probe_rss_mb": round(rss_mb(os.getpid()), 1),
            "probe_loop_lag_ms": round(self.take_loop_lag_ms(), 1),
        }

    def take_loop_lag_ms(self) -> float:
        lag_ms, self.probe_loop_lag_ms = self.probe_loop_lag_ms, 0.0
        return lag_ms


def media_state(probe, since_s: float) -> str:
    """What the probe received since a failed turn began: tells a reply that never ended (loud
    audio until the end) from a session whose media stopped (no audio for seconds)."""
    from tests.support.live_probe_analysis import SPEECH_PEAK

    audio = [a for a in probe.audio if a.arrival_s >= since_s]
    loud_s = sum(a.samples / a.rate_hz for a in audio if a.peak >= SPEECH_PEAK)
    silent_for_s = time.monotonic() - audio[-1].arrival_s if audio else float("inf")
    return (
        f"since the turn began: {len(audio)} audio frames, {loud_s:.1f} s loud, "
        f"last frame {silent_for_s:.1f} s ago, connection {probe.connected}"
    )


def plain_reason(text: str) -> str:
    """A failure's text without the probe's number, so the summary counts reasons across sessions."""
    return re.sub(r"probe \d+: ", "", text)[:160]


def turn_record(result, kind: str, question: str, session: int, connection: int, t_s: float) -> dict:
    """One turn as the journal keeps it: answered (reply audio started; for a barge-in also the
    interruption silenced it) and the first note as the reason when not."""
    answered, reason = result.reply_started, ""
    if not answered:
        reason = result.notes[0] if result.notes else "no reply audio"
    elif kind == "barge_in" and result.barge_in_to_silence_ms is None:
        answered = False  # the reply started, the interruption did not silence it
        reason = "barge-in: " + (result.notes[-1] if result.notes else "not silenced")
    reason = plain_reason(reason)
    return {
        "t_s": round(t_s, 2),
        "session": session,
        "connection": connection,
        "turn": result.turn,
        "kind": kind,
        "question": question,
        "answered": answered,
        "reason": reason,
        "speech_end_to_audio_ms": result.speech_end_to_audio_ms,
        "barge_in_to_silence_ms": result.barge_in_to_silence_ms,
        "av_offset_pts_ms": result.av_offset_pts_ms,
        "av_offset_arrival_ms": result.av_offset_arrival_ms,
        "transcript": result.transcript[:80],
        "notes": result.notes[:3],
    }


class SoakRun:
    """The probe sessions of one soak; `run()` returns when the deadline passes or `stop` is set."""

    def __init__(self, args: argparse.Namespace, url: str, questions: list, sampler: Sampler):
        self.args, self.url, self.sampler = args, url, sampler
        self.journal, self.start_s = sampler.journal, sampler.start_s
        self.questions = questions
        self.synthetic = [q for q in questions if q.source == "synthetic"] or questions
        self.real = [q for q in questions if q.source == "real"] or questions
        self.deadline_s = self.start_s + 60 * args.minutes
        self.stop = asyncio.Event()
        self.turn_count = 0

    def stopping(self) -> bool:
        return self.stop.is_set() or time.monotonic() >= self.deadline_s

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop.set)
        tasks = [asyncio.create_task(self.session(i)) for i in range(self.args.sessions)]
        tasks.append(asyncio.create_task(self.watch_loop()))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.stop.wait(), max(0.0, self.deadline_s - time.monotonic()))
        self.stop.set()
        _done, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def watch_loop(self, every_s: float = 0.1) -> None:
        """How late this loop wakes from a short sleep: the probes' own lag, for the sampler."""
        while not self.stopping():
            before_s = time.monotonic()
            await asyncio.sleep(every_s)
            lag_ms = 1000 * (time.monotonic() - before_s - every_s)
            self.sampler.probe_loop_lag_ms = max(self.sampler.probe_loop_lag_ms, lag_ms)

    async def session(self, index: int) -> None:
        """One client: reconnects after every `--turns-per-session` turns and after any failure."""
        from tests.support.live_probe_client import LiveProbe

        await asyncio.sleep(index * 2.0)  # stagger the first offers
        connection = 0
        while not self.stopping():
            try:
                async with LiveProbe(self.url, client_index=index) as probe:
                    await asyncio.sleep(1.0)
                    for turn in range(self.args.turns_per_session):
                        if self.stopping():
                            break
                        await self.one_turn(probe, index, connection, turn)
                        await self.pause()
            except Exception as error:  # any probe failure is data; the soak goes on
                failure = {
                    "t_s": round(time.monotonic() - self.start_s, 2),
                    "session": index,
                    "connection": connection,
                    "error": plain_reason(f"{type(error).__name__}: {error}"),
                }
                self.journal.add("failures", failure)
                print(f"session {index} failed: {failure['error']}", flush=True)
                await asyncio.sleep(RECONNECT_AFTER_FAILURE_S)
            connection += 1

    async def pause(self) -> None:
        pause_s = self.args.pause_s * random.uniform(0.5, 1.5)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.stop.wait(), pause_s)

    async def one_turn(self, probe, index: int, connection: int, turn: int) -> None:
        """Ask (or ask and barge in), journal the turn; a turn that raises is journaled as
        unanswered and the error re-raised so the session reconnects."""
        from tests.support.live_probe_analysis import TurnResult

        if not probe.connected:  # a failure of the session, not an unanswered turn
            raise ConnectionError("the session's media stopped between turns")
        number = self.turn_count = self.turn_count + 1
        barge = self.args.barge_every > 0 and turn % self.args.barge_every == self.args.barge_every - 1
        started_s = time.monotonic()
        if barge:
            question, over = self.synthetic[number % len(self.synthetic)], self.real[number % len(self.real)]
            label = f"{question.name} / barge-in: {over.name}"
            coroutine = probe.measure_barge_in(question.pcm, over.pcm, turn)
        else:
            question = self.questions[(number + index) % len(self.questions)]
            label = f"{question.source}/{question.language}: {question.name}"
            coroutine = probe.measure_turn(question.pcm, turn)
        try:
            result = await asyncio.wait_for(coroutine, TURN_TIMEOUT_S)
        except Exception as error:
            text = str(error) or f"the turn took over {TURN_TIMEOUT_S:.0f} s"
            result = TurnResult(
                index, turn, notes=[f"{type(error).__name__}: {text}", media_state(probe, started_s)]
            )
            self.journal.add("turns", self.record(result, barge, label, index, connection, started_s))
            raise
        if not probe.connected and not result.reply_started:  # unanswered because the session is gone
            result.notes.insert(0, "the peer connection closed during the turn")
        record = self.record(result, barge, label, index, connection, started_s)
        self.journal.add("turns", record)
        if not probe.connected:
            raise ConnectionError("the peer connection closed")
        shown = record["speech_end_to_audio_ms"]
        print(
            f"{record['t_s']:7.0f}s s{index} c{connection} t{turn} {record['kind']:8} "
            f"{'ok' if record['answered'] else 'UNANSWERED ' + record['reason']} "
            f"audio {shown if shown is None else round(shown)} ms",
            flush=True,
        )

    def record(self, result, barge: bool, label: str, index: int, connection: int, started_s: float) -> dict:
        kind = "barge_in" if barge else "ask"
        return turn_record(result, kind, label, index, connection, started_s - self.start_s)


def log_ice(path: Path) -> None:
    """The probes' ICE events (e.g. "Consent to send expired") to a file: with the server's log
    it tells which side stopped answering when a session is dropped."""
    import logging

    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    handler.addFilter(lambda record: "State." not in record.getMessage())  # per-check chatter
    for name in ("aioice.ice", "aiortc"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=120.0)
    parser.add_argument("--sessions", type=int, default=4, help="concurrent probe sessions")
    parser.add_argument(
        "--pause-s", type=float, default=6.0, help="mean pause after each turn (each is 0.5-1.5x this)"
    )
    parser.add_argument("--turns-per-session", type=int, default=10, help="turns before a session reconnects")
    parser.add_argument("--barge-every", type=int, default=3, help="every Nth turn is a barge-in (0: none)")
    parser.add_argument("--size", type=int, default=256, help="avatar serve --size")
    parser.add_argument("--report", type=Path, required=True, help="summary JSON; jsonl logs go next to it")
    parser.add_argument("--photo", type=Path, default=ROOT / "assets/sample_portrait.jpg")
    parser.add_argument("--questions", choices=("mixed", "real", "synthetic"), default="mixed")
    parser.add_argument("--server-args", nargs="*", default=[], help="extra `avatar serve` arguments")
    args = parser.parse_args(argv)
    if args.sessions < 1 or args.minutes <= 0 or args.turns_per_session < 1 or args.pause_s < 0:
        parser.error("--sessions and --turns-per-session must be >= 1, --minutes > 0, --pause-s >= 0")
    # what bench.live_latency.server_child reads: the server picks its own engines (no --llm)
    args.llm, args.knowledge = "default", ROOT / "assets/knowledge/shop_faq.md"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "nice -n 10 .venv/bin/python -m bench.serve_soak " + shlex.join(argv or sys.argv[1:])
    from avatar.live.ice import install_loopback_only

    install_loopback_only()
    from bench.live_questions import question_set

    questions = question_set(args.questions)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    log_ice(args.report.with_suffix(".probe.log"))
    journal = Journal(args.report)
    with tempfile.TemporaryDirectory(prefix="serve-soak-") as folder:
        args.photo = top_square(args.photo, Path(folder))
        server_log = args.report.with_suffix(".server.log")
        with server_child(args, server_log, SERVER_START_TIMEOUT_S) as (url, child):
            health = server_health(url)
            start_s = time.monotonic()
            sampler = Sampler(child.pid, url, journal, start_s)
            sampler.start()
            try:
                asyncio.run(SoakRun(args, url, questions, sampler).run())
            finally:
                sampler.stop.set()
                sampler.join(timeout=15)
                if child.poll() is not None:
                    journal.add(
                        "failures", {"t_s": -1, "session": -1, "error": f"server exited {child.returncode}"}
                    )
    records = journal.records
    summary = summarize(records["samples"], records["turns"], records["failures"])
    summary["config"] = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in vars(args).items()
        if k not in ("llm", "knowledge")
    }
    summary["server"] = {k: health.get(k) for k in ("llm", "reply_engine", "turn_rule", "max_sessions")}
    summary["machine"] = describe_machine()
    summary["command"] = command
    args.report.write_text(json.dumps(summary, indent=1) + "\n")
    args.report.with_suffix(".md").write_text(markdown(summary, command, summary["machine"]))
    print(
        json.dumps({k: summary[k] for k in ("turns", "latency_ms", "av_offset_pts", "cpu_cores")}, indent=1)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
