"""Exit codes (SPEC section 7) and the exceptions that carry them.

Every failure a user can cause is an ``OutreachError`` with a message that says what was wrong,
where, and how to fix it; the command layer prints the message and exits with ``exit_code``.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1
    USAGE = 2
    PARTIAL = 3
    CONFIG = 4
    ABORTED = 5
    TEMPORARY = 75
    INTERRUPTED = 130


class OutreachError(Exception):
    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, *, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class InvalidInput(OutreachError):
    """Bad flag value, malformed file, unknown rule set: exit 2."""

    exit_code = ExitCode.USAGE


class ConfigError(OutreachError):
    """Missing credentials, unreachable database, schema out of date: exit 4."""

    exit_code = ExitCode.CONFIG


class Aborted(OutreachError):
    exit_code = ExitCode.ABORTED


class TemporaryFailure(OutreachError):
    exit_code = ExitCode.TEMPORARY


class NotFound(OutreachError):
    exit_code = ExitCode.PARTIAL
