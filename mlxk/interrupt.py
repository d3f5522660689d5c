"""Ctrl-C and SIGTERM: the first one stops the command (KeyboardInterrupt in the main thread,
and every fetch thread stops at its next chunk), later ones are ignored while the command
cleans up, so a user pressing it again never gets a traceback or a half-removed staging
directory. The exit code says which signal it was: 130 (SIGINT) or 143 (SIGTERM).
"""

from __future__ import annotations

import signal
import threading

STOP = threading.Event()  # set once a signal arrived: long loops in any thread check it
_received: list[int] = []


class Stopped(Exception):
    """Raised in a worker thread that saw STOP (the main thread has KeyboardInterrupt)."""


def _handle(signum, frame) -> None:
    if _received:
        return  # cleaning up already: ignore
    _received.append(signum)
    STOP.set()
    raise KeyboardInterrupt


def install() -> None:
    """Take over SIGINT and SIGTERM for this process (the CLI's entry point only)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _handle)
        signal.signal(signal.SIGTERM, _handle)


def received() -> int | None:
    return _received[0] if _received else None


def exit_code() -> int:
    """128 + the signal's number: 130 for SIGINT (also a plain KeyboardInterrupt), 143 for
    SIGTERM."""
    return 128 + (received() or signal.SIGINT)


def check(stop: threading.Event | None = None) -> None:
    """Raise Stopped when a signal arrived (or `stop`, a command's own flag, is set)."""
    if STOP.is_set() or (stop is not None and stop.is_set()):
        raise Stopped("interrupted")
