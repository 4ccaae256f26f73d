"""The small application object every command receives (as hatch does): global options,
settings, the clock, the store and the output consoles."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

import typer

from outreach_cli.cli.env import Environment

if TYPE_CHECKING:
    from rich.console import Console

    from outreach_cli.config import Settings
    from outreach_cli.domain.context import Context
    from outreach_cli.store.database import Store


@dataclass
class App:
    """The global options and what every command shares: settings, clock, store, output."""

    env: Environment
    db: str | None = None
    config_file: str | None = None
    now_text: str | None = None
    quiet: bool = False
    verbose: bool = False
    no_color: bool = False
    _store: Store | None = field(default=None, repr=False)
    _phase: Callable[[str], None] | None = field(default=None, repr=False)

    @property
    def color(self) -> bool:
        return self.env.stdout_isatty and not self.no_color and not self.env.no_color_env

    @property
    def err_color(self) -> bool:
        return self.env.stderr_isatty and not self.no_color and not self.env.no_color_env

    @property
    def interactive(self) -> bool:
        """A person is there to answer a prompt."""
        return self.env.stdin_isatty and self.env.stderr_isatty

    @cached_property
    def settings(self) -> Settings:
        from outreach_cli.config import load_settings
        from outreach_cli.domain.errors import InvalidInput

        overrides: dict[str, Any] = {}
        if self.db is not None:
            if not self.db.strip():
                raise InvalidInput("--db is empty: give a database URL or an SQLite file path")
            overrides["database"] = self.db
        if self.config_file is not None and not self.config_file.strip():
            raise InvalidInput("--config is empty: give a config file path")
        return load_settings(config_file=self.config_file, overrides=overrides)

    @cached_property
    def now(self) -> datetime:
        from outreach_cli.domain.errors import InvalidInput
        from outreach_cli.domain.timeutil import BadTime, get_zone, parse_datetime, utcnow

        if self.now_text is not None:
            text, origin = self.now_text, "--now"
            if not text.strip():
                raise InvalidInput("--now is empty: give a time like 2026-11-26T14:00Z (or leave --now out)")
        else:
            text, origin = self.settings.now_text or "", "OUTREACH_NOW"
        if not text:
            return utcnow()
        try:
            return parse_datetime(text, get_zone(self.settings.timezone))
        except BadTime as exc:  # the value is named already
            raise InvalidInput(f"{origin} {text!r}: {exc.reason} ({exc.hint})") from None
        except ValueError as exc:
            raise InvalidInput(f"{origin} {text!r}: {exc}") from None

    def store(self, *, check_schema: bool = True, create: bool | None = None) -> Store:
        """The command's store, opened on first use and disposed of when the command ends."""
        from outreach_cli.store.database import open_store

        if self._store is None:
            self._store = open_store(
                self.settings.database, check_schema=check_schema, create=create, on_lock_wait=self._lock_wait_notice
            )
        return self._store

    def close(self) -> None:
        """End of the command: close the database connections. PostgreSQL gets them back at
        once (tests run many commands in one process); on SQLite closing the last connection
        checkpoints the write-ahead log into the file and removes `-wal`/`-shm`, so a copy of
        the `.db` file is complete and a read-only reader never meets files it cannot write."""
        if self._store is not None:
            self._store.engine.dispose()
            self._store = None

    def reopen_store(self) -> Store:
        """Open the store again (after `settings.database` changed, as `demo` does)."""
        self.close()
        return self.store()

    def _lock_wait_notice(self) -> None:
        """Said on a terminal only, like progress: cron runs that queue for a moment stay silent."""
        from outreach_cli.store.database import BUSY_TIMEOUT_MS

        if self.env.stderr_isatty:
            self.info(
                f"waiting for the database: another outreach process is writing (up to {BUSY_TIMEOUT_MS // 1000} s)..."
            )

    def stored_secret(self) -> str | None:
        """The payment-link secret `outreach init` stored (opens the store)."""
        store = self.store()
        with store.read() as conn:
            return store.get_meta(conn, "secret")

    def context(self, actor: str | None = None) -> Context:
        from outreach_cli.config import resolve_secret
        from outreach_cli.domain.context import Context
        from outreach_cli.domain.scheduling import Window

        s = self.settings
        secret = resolve_secret(s, None if s.secret else self.stored_secret())
        w = s.sending
        return Context(
            now=self.now,
            window=Window.from_settings(w.window, w.weekends, list(w.holidays), w.state_holidays),
            practice_tz=s.timezone,
            actor=actor or default_actor(s.env),
            practice_name=s.practice_name,
            practice_phone=s.practice_phone,
            url_template=s.payments.url_template,
            secret=secret,
            extra={"default_rule_set": s.values.get("default_rule_set"), "settings": s},
        )

    # --- output ---------------------------------------------------------------------------

    @cached_property
    def out(self) -> Console:
        from rich.console import Console

        return Console(
            file=self.env.stdout,
            force_terminal=self.color,
            no_color=not self.color,
            highlight=False,
            width=None if self.env.stdout_isatty else 200,
        )

    @cached_property
    def err_console(self) -> Console:
        from rich.console import Console

        return Console(
            file=self.env.stderr, force_terminal=self.err_color, no_color=not self.err_color, highlight=False
        )

    def info(self, message: str) -> None:
        """Progress and summaries: stderr, silenced by -q."""
        if not self.quiet:
            print(message, file=self.env.stderr)

    def debug(self, message: str) -> None:
        if self.verbose:
            print(message, file=self.env.stderr)

    def write(self, text: str) -> None:
        self.env.stdout.write(text)

    @contextmanager
    def progress(
        self, description: str, total: int | None = None, *, show_count: bool = True
    ) -> Iterator[Callable[[int], None]]:
        """A progress bar on stderr when it is a terminal (and not -q); nothing otherwise.
        Yields ``advance(n)`` (``total`` known) or ``update(done)`` (``total`` unknown).
        ``show_count=False``: a spinner only, for work done in one step (no count that never moves)."""
        if self.quiet or not self.env.stderr_isatty:
            yield lambda _n: None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        columns = [SpinnerColumn(), TextColumn("{task.description}")]
        if total:
            columns += [BarColumn(), MofNCompleteColumn()]
        elif show_count:
            columns += [TextColumn("{task.completed:,}")]
        with Progress(*columns, TimeElapsedColumn(), console=self.err_console, transient=True) as bar:
            task = bar.add_task(description, total=total)
            self._phase = lambda text: bar.update(task, description=text)
            try:
                if total:
                    yield lambda n: bar.advance(task, n)
                else:
                    yield lambda done: bar.update(task, completed=done)
            finally:
                self._phase = None

    def phase(self, text: str) -> None:
        """Name the step the current progress display is in (`importing patients: writing`)."""
        if self._phase is not None:
            self._phase(text)


def default_actor(env: Mapping[str, str]) -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no user database entry (containers)
        return env.get("USER") or "unknown"


def get_app(ctx: typer.Context) -> App:
    obj = ctx.find_root().obj
    assert isinstance(obj, App)
    return obj


def read_input(app: App, path: str) -> tuple[bytes, str]:
    """FILE or `-` (stdin) as bytes, with a name for messages."""
    from outreach_cli.domain.errors import InvalidInput

    if path == "-":
        stream = getattr(app.env.stdin, "buffer", None)
        data = stream.read() if stream is not None else app.env.stdin.read().encode()
        return data, "<stdin>"
    try:
        with open(path, "rb") as fh:
            return fh.read(), path
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InvalidInput(f"{path}: is a directory, expected a file") from None
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read: {exc.strerror}") from None
