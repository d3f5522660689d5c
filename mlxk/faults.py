"""Crash points for the reliability tests: `MLXK_FAULT=<point>` kills the process with SIGKILL
when it reaches that point (a real kill -9, at a place a test can name); `MLXK_FAULT_SLEEP=
<point>:<seconds>` pauses there instead (to hold a lock while a second process starts).

Unset (always, in normal use), each point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import time

from .settings import fault_settings

POINTS = (
    "fetch-mid",  # a download has written its first chunk into the store's partial file
    "fetch-done",  # a blob has entered the store, nothing staged yet
    "stage-mid",  # half of a workspace's files are in its staging directory
    "sentinel",  # the sentinel is written into staging
    "switch-before",  # staging is complete and checked; the old workspace is untouched
    "switch-between",  # old workspace moved aside, new one not yet in place (no RENAME_EXCHANGE)
    "switch-after",  # new workspace in place, old one not yet removed
    "lock-write",  # the new lock is in its temp file, not yet renamed over mlxk.lock
    "convert-mid",  # a convert step's worker is running
    "cache-flush",  # the hash cache is about to be written
)
# Points of other commands than sync (tests/test_reliability.py kills sync at each of POINTS).
OTHER_POINTS = (
    "push-chunk",  # `mlxk push`: one chunk of a chunked blob upload has been sent
)


def point(name: str) -> None:
    fault, pause = fault_settings()
    if fault == name:
        os.kill(os.getpid(), signal.SIGKILL)
    if pause.startswith(name + ":"):
        time.sleep(float(pause.split(":", 1)[1]))


def no_exchange() -> bool:
    """Tests force the two-rename switch (the fallback where RENAME_EXCHANGE is missing)."""
    return fault_settings()[0] == "switch-between"
