"""One exception hierarchy for mlxk; each class carries its exit code.

Exit codes (documented in the README; the only place they are defined):

    0  success
    1  a check found something: drift (verify), changes (plan)
    2  user error: bad manifest, bad arguments, stale or missing lock with --locked
    3  source or environment error: hub unreachable, hash mismatch, disk, converter

`mlxk capture` passes on the exit code of a COMMAND that fails (CommandFailed).
"""

from __future__ import annotations

import re

EXIT_OK = 0
EXIT_CHANGES = 1
EXIT_USER = 2
EXIT_SOURCE = 3


_CREDENTIALS = re.compile(r"Bearer\s+\S+|\bhf_[A-Za-z0-9]{8,}")


def scrub(text: str, *secrets: str | None) -> str:
    """Text from outside (a hub's message) made safe to show: the given secrets, bearer
    credentials and anything shaped like a hub token are replaced."""
    for secret in filter(None, secrets):
        text = text.replace(secret, "<token>")
    return _CREDENTIALS.sub("<token>", text)


class MlxkError(Exception):
    """Base of every error mlxk reports to a user (never a traceback)."""

    exit_code = EXIT_SOURCE
    kind = "error"

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def to_dict(self) -> dict:
        return {
            "type": self.kind,
            "message": self.message,
            "hint": self.hint,
            "exit_code": self.exit_code,
        }


class UserError(MlxkError):
    exit_code = EXIT_USER
    kind = "user_error"


class ManifestError(UserError):
    kind = "manifest_error"


class LockError(UserError):
    """The lock is missing, stale, or malformed."""

    kind = "lock_error"


class NotSupportedError(UserError):
    kind = "not_supported"


class SourceError(MlxkError):
    """A hub or local source could not give what was asked."""

    exit_code = EXIT_SOURCE
    kind = "source_error"


class IntegrityError(MlxkError):
    """Bytes did not match the hash the lock or the hub declared."""

    exit_code = EXIT_SOURCE
    kind = "integrity_error"


class DiskError(MlxkError):
    exit_code = EXIT_SOURCE
    kind = "disk_error"


class CommandFailed(MlxkError):
    """The command a capture ran could not start or failed: its exit code is passed on
    (126 not executable, 127 not found, 128+N killed by signal N, as shells report them)."""

    kind = "command_failed"

    def __init__(self, message: str, exit_code: int, hint: str | None = None):
        super().__init__(message, hint)
        self.exit_code = exit_code
