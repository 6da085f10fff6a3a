"""A render stopped by SIGTERM or SIGINT cleans up as a failure does: its encoder is gone, no
partial video and no hidden temp file is left beside the output, and an older file under the
output's name is untouched. The CLI runs as a real child process and is signalled mid-render."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from avatar.core.stop_signals import Terminated, stop_signals_raise
from tests.conftest import ROOT, SAMPLE_PORTRAIT

SENTENCE = "The kettle is on, the cups are warm, and the tea will be ready in a minute or two."
START_TIMEOUT_S = 240  # engines load and the first window is spoken, on a loaded 2-core machine
EXIT_TIMEOUT_S = 60


def test_sigterm_raises_terminated_once_and_the_old_handlers_come_back():
    before = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    cleaned_up = False
    with pytest.raises(Terminated, match="SIGTERM"), stop_signals_raise():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs at once; reaching the end would fail the test
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # a second one must not cut the cleanup short
            os.kill(os.getpid(), signal.SIGINT)
            cleaned_up = True
    assert cleaned_up
    assert {number: signal.getsignal(number) for number in before} == before


def child_pids(pid: int) -> set[int]:
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        children.update(int(child) for child in (task / "children").read_text().split())
    return children


def wait_for_streamed_audio(folder: Path, process: subprocess.Popen) -> Path:
    """The hidden audio file of the render once its first window is written (frames are being
    encoded then): the moment a stop must clean up after."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        for path in folder.glob(".out.*.audio.wav"):
            if path.stat().st_size > 100_000:
                return path
        time.sleep(0.1)
    raise AssertionError(f"the render wrote no audio within {START_TIMEOUT_S} s")


@pytest.mark.parametrize(
    ("number", "exit_code", "message"),
    [(signal.SIGTERM, 143, "error: stopped by signal SIGTERM"), (signal.SIGINT, 130, "interrupted")],
)
def test_a_render_stopped_by_a_signal_leaves_only_what_was_there(tmp_path, number, exit_code, message):
    script = tmp_path / "script.txt"
    script.write_text(" ".join([SENTENCE] * 60), encoding="utf-8")  # minutes of speech: never done in time
    out = tmp_path / "out.mp4"
    out.write_bytes(b"an older video")
    command = [sys.executable, "-m", "avatar", "render", "--photo", str(SAMPLE_PORTRAIT)]
    command += ["--text-file", str(script), "--size", "256", "-o", str(out), "--quiet"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_streamed_audio(tmp_path, process)  # a hidden temp file now exists beside the output
        encoders = child_pids(process.pid)
        assert encoders, "the x264 encoder runs while frames are written"
        process.send_signal(number)
        _stdout, stderr = process.communicate(timeout=EXIT_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == exit_code, stderr
    assert stderr.strip().splitlines()[-1] == message
    assert "Traceback" not in stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.mp4", "script.txt"]
    assert out.read_bytes() == b"an older video"
    assert not [pid for pid in encoders if Path(f"/proc/{pid}").exists()], "the encoder was stopped"
