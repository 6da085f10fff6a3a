"""Render many videos from a CSV or JSONL manifest on every core, and report what happened.

The whole manifest is checked before the first job starts, so a typo on line 900 costs seconds,
not an afternoon; every problem is reported at once with its line number. Jobs then run in worker
processes (rendering is CPU-bound Python), each of which loads the engines once and keeps them for
all the jobs it is given. A failing job is recorded and the others go on.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import multiprocessing.util
import os
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path

from avatar.core.errors import AvatarError, InputError
from avatar.core.storage import write_text_atomically
from avatar.core.types import EMOTIONS
from avatar.render.request import RenderRequest, RenderResult

RenderFn = Callable[[RenderRequest], RenderResult]

REPORT_NAME = "batch_report.json"
LANGUAGES = ("en", "zh")
MIN_SIZE_PX, MAX_SIZE_PX = 64, 4096
# Manifest column -> RenderRequest field. The long field names are accepted as well.
COLUMNS = {
    "photo": "photo_path",
    "text": "text",
    "audio": "audio_path",
    "voice": "voice_sample_path",
    "emotion": "emotion",
    "lang": "language",
    "size": "size_px",
    "face": "face_index",
    "output": "output_path",
}
_ALIASES = {**{name: name for name in COLUMNS}, **{field: name for name, field in COLUMNS.items()}}
_THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


@dataclass(frozen=True)
class BatchJob:
    """One validated manifest row; `line` is where it starts in the manifest (1-based)."""

    line: int
    request: RenderRequest


@dataclass(frozen=True)
class JobOutcome:
    """How one job ended; `message` says why when it failed, `detail` holds a traceback for bugs."""

    line: int
    output_path: Path
    ok: bool
    message: str = ""
    duration_s: float = 0.0
    frame_count: int = 0
    render_time_s: float = 0.0
    notes: tuple[str, ...] = ()
    detail: str = ""

    def __str__(self) -> str:
        status = "ok" if self.ok else self.message
        return f"line {self.line} -> {self.output_path}: {status}"


@dataclass(frozen=True)
class BatchReport:
    succeeded: list[JobOutcome]
    failed: list[JobOutcome]
    wall_time_s: float
    report_path: Path
    workers: int = 1


# -- manifest ----------------------------------------------------------------------------------


def _read_rows(manifest_path: Path) -> list[tuple[int, dict | None, str]]:
    """(line, raw row, parse problem) for every data row of a CSV or JSONL manifest."""
    suffix = manifest_path.suffix.lower()
    try:
        text = manifest_path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"manifest not found: {manifest_path}") from None
    except UnicodeDecodeError:
        raise InputError(f"manifest is not UTF-8 text: {manifest_path}") from None
    if suffix == ".csv":
        reader = csv.DictReader(text.splitlines(keepends=True))
        rows = []
        start_line = 2
        for row in reader:
            problem = "more cells than header columns" if None in row else ""
            rows.append((start_line, {k: v for k, v in row.items() if k is not None}, problem))
            start_line = reader.line_num + 1
        return rows
    if suffix in (".jsonl", ".ndjson"):
        rows = []
        for line_number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                rows.append((line_number, None, f"invalid JSON ({exc.msg})"))
                continue
            if not isinstance(row, dict):
                rows.append((line_number, None, "each line must be a JSON object"))
                continue
            rows.append((line_number, row, ""))
        return rows
    raise InputError(f"unknown manifest type '{suffix}': {manifest_path}", "use a .csv or .jsonl file")


def _cell(row: dict, name: str) -> str | None:
    value = row.get(name)
    if value is None:
        return None
    value = str(value).strip() if not isinstance(value, str) else value.strip()
    return value or None


def _resolve(base: Path, value: str | None) -> Path | None:
    if value is None:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _int_cell(row: dict, name: str, low: int, high: int, problems: list[str]) -> int | None:
    value = _cell(row, name)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        problems.append(f"{name} must be a whole number, got '{value}'")
        return None
    if not low <= number <= high:
        problems.append(f"{name} must be between {low} and {high}, got {number}")
        return None
    return number


def _row_request(row: dict, row_number: int, base: Path, out_dir: Path, problems: list[str]) -> RenderRequest:
    """Build the request for one row, appending every problem found to `problems`."""
    unknown = sorted(str(key) for key in row if str(key).strip().lower() not in _ALIASES)
    if unknown:
        problems.append(f"unknown column(s) {', '.join(unknown)} (valid: {', '.join(COLUMNS)})")
    row = {_ALIASES.get(str(k).strip().lower(), k): v for k, v in row.items()}

    photo = _resolve(base, _cell(row, "photo"))
    audio = _resolve(base, _cell(row, "audio"))
    voice = _resolve(base, _cell(row, "voice"))
    text = _cell(row, "text")
    if photo is None:
        problems.append("photo is missing")
    elif not photo.is_file():
        problems.append(f"photo not found: {photo}")
    if text is None and audio is None:
        problems.append("give either text or audio")
    elif text is not None and audio is not None:
        problems.append("give text or audio, not both")
    if audio is not None and not audio.is_file():
        problems.append(f"audio not found: {audio}")
    if voice is not None:
        if audio is not None:
            problems.append("voice applies to text only (recorded audio is used as it is)")
        elif not voice.is_file():
            problems.append(f"voice sample not found: {voice}")
    emotion = (_cell(row, "emotion") or "neutral").lower()
    if emotion not in EMOTIONS:
        problems.append(f"unknown emotion '{emotion}' (use one of: {', '.join(EMOTIONS)})")
    language = _cell(row, "lang")
    if language is not None and language.lower() not in LANGUAGES:
        problems.append(f"unsupported lang '{language}' (use {' or '.join(LANGUAGES)}, or leave it empty)")
    if text is not None and emotion in EMOTIONS:
        from avatar.core.text_script import parse_script

        try:
            parse_script(text, default_emotion=emotion)
        except InputError as exc:
            problems.append(f"text: {exc}")
    output = _resolve(base, _cell(row, "output")) or out_dir / f"{row_number}.mp4"
    if output.suffix.lower() != ".mp4":
        problems.append(f"output must be an .mp4 file, got {output.name}")
    elif output.is_dir():
        problems.append(f"output is a folder: {output}")
    return RenderRequest(
        photo_path=photo or Path(),
        output_path=output,
        text=text,
        audio_path=audio,
        voice_sample_path=voice,
        emotion=emotion,
        language=language.lower() if language else None,
        size_px=_int_cell(row, "size", MIN_SIZE_PX, MAX_SIZE_PX, problems),
        face_index=_int_cell(row, "face", 0, 99, problems),
    )


def read_manifest(manifest_path: Path | str, out_dir: Path | str) -> list[BatchJob]:
    """Every job of the manifest, or one InputError listing every problem with its line number.

    Paths in the manifest are relative to the manifest's folder; rows without an output go to
    `<out_dir>/<row number>.mp4`.
    """
    manifest_path = Path(manifest_path)
    base = manifest_path.resolve().parent
    out_dir = Path(out_dir)
    jobs: list[BatchJob] = []
    problems: list[str] = []
    writers: dict[Path, int] = {}
    rows = _read_rows(manifest_path)
    for row_number, (line, row, parse_problem) in enumerate(rows, start=1):
        row_problems = [parse_problem] if parse_problem else []
        if row is not None:
            request = _row_request(row, row_number, base, out_dir, row_problems)
            key = request.output_path.resolve()
            if key in writers:
                row_problems.append(f"output {request.output_path} is also written by line {writers[key]}")
            writers.setdefault(key, line)
            jobs.append(BatchJob(line, request))
        problems.extend(f"line {line}: {problem}" for problem in row_problems)
    if not rows:
        raise InputError(f"manifest has no jobs: {manifest_path}", "add one row per video after the header")
    if problems:
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        raise InputError(f"{manifest_path.name} has {count}: {'; '.join(problems)}")
    return jobs


# -- workers -----------------------------------------------------------------------------------


class JobRunner:
    """Renders jobs one after another in one process, keeping the engines loaded between them."""

    def __init__(self, render_fn: RenderFn | None = None) -> None:
        self._render_fn = render_fn
        self._engines = None

    def run(self, job: BatchJob) -> JobOutcome:
        output = job.request.output_path
        try:
            result = self._render(job.request)
        except AvatarError as exc:
            return JobOutcome(job.line, output, ok=False, message=str(exc))
        except Exception as exc:
            # A bug hit by one job must not sink the other jobs: it is reported with its traceback.
            message = f"internal error {type(exc).__name__}: {exc}"
            return JobOutcome(job.line, output, ok=False, message=message, detail=traceback.format_exc())
        return JobOutcome(
            job.line,
            Path(result.output_path),
            ok=True,
            duration_s=result.duration_s,
            frame_count=result.frame_count,
            render_time_s=result.render_time_s,
            notes=tuple(result.notes),
        )

    def _render(self, request: RenderRequest) -> RenderResult:
        if self._render_fn is not None:
            return self._render_fn(request)
        from avatar.engines.engine_set import EngineSet
        from avatar.render.job import render_video

        if self._engines is None:
            self._engines = EngineSet()
        return render_video(request, self._engines)

    def close(self) -> None:
        if self._engines is not None:
            self._engines.close()
            self._engines = None


# The one piece of per-process state, and only in worker processes: ProcessPoolExecutor discards
# the initializer's return value and pickles each task afresh, so the engines a worker loaded can
# reach its later tasks only through a slot in the worker's own module. `_init_worker` fills it once
# per worker; the parent process never touches it (with jobs=1 the runner is a local variable).
_worker_runner: JobRunner | None = None


def _init_worker(render_fn: RenderFn | None, threads_per_worker: int) -> None:
    """Runs once in each worker process, before any engine is imported."""
    global _worker_runner
    for name in _THREAD_ENV_VARS:
        os.environ[name] = str(threads_per_worker)
    import cv2  # the renderer's warps; its own thread pool ignores OMP_NUM_THREADS

    cv2.setNumThreads(threads_per_worker)
    _worker_runner = JobRunner(render_fn)
    # Close engines (and any helper processes they own) when the worker shuts down.
    multiprocessing.util.Finalize(_worker_runner, _worker_runner.close, exitpriority=10)


def _run_in_worker(job: BatchJob) -> JobOutcome:
    if _worker_runner is None:
        raise RuntimeError("_run_in_worker called outside a batch worker process")
    return _worker_runner.run(job)


# -- running -----------------------------------------------------------------------------------


def _run_serial(jobs: list[BatchJob], render_fn: RenderFn | None, bar) -> list[JobOutcome]:
    runner = JobRunner(render_fn)
    outcomes = []
    try:
        for job in jobs:
            outcomes.append(runner.run(job))
            bar.update(1)
    finally:
        runner.close()
    return outcomes


def _run_parallel(jobs: list[BatchJob], render_fn: RenderFn | None, workers: int, bar) -> list[JobOutcome]:
    threads_per_worker = max(1, (os.cpu_count() or 1) // workers)
    # spawn, not fork: workers start clean (no copied threads or half-initialised engines) and read
    # the thread limits before their engines load.
    executor = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(render_fn, threads_per_worker),
    )
    outcomes: list[JobOutcome] = []
    try:
        pending = {executor.submit(_run_in_worker, job): job for job in jobs}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                job = pending.pop(future)
                try:
                    outcomes.append(future.result())
                except BrokenProcessPool:
                    message = "the worker process died (out of memory? try fewer --jobs)"
                    outcomes.append(JobOutcome(job.line, job.request.output_path, ok=False, message=message))
                bar.update(1)
    except BaseException:
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    executor.shutdown(wait=True)
    return outcomes


def _write_report(report_path: Path, manifest_path: Path, report: BatchReport) -> None:
    def entry(outcome: JobOutcome) -> dict:
        data = asdict(outcome)
        data["output_path"] = str(outcome.output_path)
        data["notes"] = list(outcome.notes)
        return data

    payload = {
        "manifest": str(manifest_path),
        "workers": report.workers,
        "wall_time_s": round(report.wall_time_s, 3),
        "succeeded": [entry(o) for o in report.succeeded],
        "failed": [entry(o) for o in report.failed],
    }
    write_text_atomically(report_path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


def run_batch(
    manifest_path: Path | str,
    out_dir: Path | str = Path("videos"),
    jobs: int | None = None,
    render_fn: RenderFn | None = None,
    show_progress: bool = True,
) -> BatchReport:
    """Validate the whole manifest, render every job on `jobs` processes, write batch_report.json.

    `render_fn` replaces `avatar.render.job.render_video` (tests, other front ends); it must be
    picklable (a module-level function) because it travels to the worker processes.
    """
    from tqdm import tqdm

    started = time.perf_counter()
    manifest_path = Path(manifest_path)
    out_dir = Path(out_dir)
    if jobs is not None and jobs < 1:
        raise InputError(f"--jobs must be at least 1, got {jobs}")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out-dir is not a folder: {out_dir}")
    batch = read_manifest(manifest_path, out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for job in batch:
            job.request.output_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output folder {exc.filename}: {exc.strerror}") from None
    workers = min(jobs or os.cpu_count() or 1, len(batch))
    with tqdm(total=len(batch), unit="video", desc="batch", disable=not show_progress) as bar:
        if workers == 1:
            outcomes = _run_serial(batch, render_fn, bar)
        else:
            outcomes = _run_parallel(batch, render_fn, workers, bar)
    outcomes.sort(key=lambda outcome: outcome.line)
    report = BatchReport(
        succeeded=[o for o in outcomes if o.ok],
        failed=[o for o in outcomes if not o.ok],
        wall_time_s=time.perf_counter() - started,
        report_path=out_dir / REPORT_NAME,
        workers=workers,
    )
    _write_report(report.report_path, manifest_path, report)
    return report
