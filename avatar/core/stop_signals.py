"""SIGTERM handled like Ctrl-C, so a command stopped by a service manager or `kill` cleans up.

Python turns SIGINT into KeyboardInterrupt, so `finally` and `except BaseException` blocks run (a
render kills its encoder and deletes the temp files beside its output). SIGTERM's default action
ends the process on the spot instead, and a render stopped that way left its hidden temp files
(the streamed audio, the video-only encode) next to the output. Inside `stop_signals_raise()`
SIGTERM raises `Terminated` in the main thread, and once either signal has been raised both are
ignored, so the cleanup it starts is not cut short by a second signal.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(BaseException):
    """The process was asked to stop (SIGTERM). A BaseException, as KeyboardInterrupt is, so that
    no `except Exception` handler swallows it on its way out."""

    exit_code = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """Within the block, SIGTERM raises `Terminated` and SIGINT `KeyboardInterrupt` (each once);
    the previous handlers come back on exit. Outside the main thread, where Python cannot set
    handlers, it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.getsignal(number) for number in STOP_SIGNALS}

    def stop(number: int, _frame) -> None:
        for other in STOP_SIGNALS:  # the cleanup this starts must run to its end
            signal.signal(other, signal.SIG_IGN)
        if number == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(f"stopped by signal {signal.Signals(number).name}")

    for number in STOP_SIGNALS:
        signal.signal(number, stop)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
