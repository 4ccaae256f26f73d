"""The terminal environment: detected once by the real entry point (`outreach`, `python -m
outreach_cli`), given explicitly by tests (`run(argv, env)`), as httpie does."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import TextIO


@dataclass
class Environment:
    """The process's streams and which of them are terminals (and NO_COLOR)."""

    stdin: TextIO
    stdout: TextIO
    stderr: TextIO
    stdin_isatty: bool
    stdout_isatty: bool
    stderr_isatty: bool
    no_color_env: bool
    # Set by a command that has said, on stderr, why and how it stopped on Ctrl-C or SIGTERM:
    # the entry point then adds no "interrupted" line of its own.
    interruption_told: bool = False

    @classmethod
    def detect(cls) -> Environment:
        def tty(s: TextIO) -> bool:
            try:
                return s.isatty()
            except (AttributeError, ValueError):
                return False

        return cls(
            stdin=sys.stdin,
            stdout=sys.stdout,
            stderr=sys.stderr,
            stdin_isatty=tty(sys.stdin),
            stdout_isatty=tty(sys.stdout),
            stderr_isatty=tty(sys.stderr),
            no_color_env="NO_COLOR" in os.environ,
        )
