"""The `outreach` command: global options, command registration, errors and exit codes.

Command modules import only typer at module level; the database, providers and other heavy
modules load inside the command that needs them, so `--help` and completion stay fast.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from outreach_cli import __version__
from outreach_cli.cli.context import App
from outreach_cli.cli.env import Environment

HELP = """Automated outreach to patients about their outstanding balances.

Invoice sets (a patient's unpaid charges) follow rule sets (timed SMS, email, call, letter and
card-charge steps with a payment link). Cron runs `outreach run-outreach`; billing admins watch
`metrics`, find sets with `list`, inspect one with `show` and act on one or thousands with `act`.

Exit codes: 0 ok, 1 internal error, 2 invalid input, 3 some items ineligible/not found/invalid,
4 configuration error, 5 aborted, 75 temporary failure (retry), 130 interrupted.

\b
Examples:
  outreach demo && outreach --db demo.db list
  outreach --db demo.db show 42
  outreach --db demo.db list --status failed --format ids | outreach --db demo.db act pause -
"""

# The module registering each command, in the order of `outreach --help`. A run that names its
# command loads only that module (`outreach metrics` never imports the importer or the engine);
# help, completion and unknown names load them all.
COMMAND_MODULES = {
    "init": "cmd_init",
    "import": "cmd_import",
    "rulesets": "cmd_rulesets",
    "list": "cmd_list",
    "metrics": "cmd_admin",
    "show": "cmd_admin",
    "audit": "cmd_admin",
    "collections": "cmd_admin",
    "act": "cmd_act",
    "run-outreach": "cmd_engine",
    "forecast": "cmd_engine",
    "events": "cmd_engine",
    "doctor": "cmd_doctor",
    "demo": "cmd_demo",
    "report": "cmd_report",
}


def _version(value: bool) -> None:
    if value:
        print(f"outreach {__version__}")
        raise typer.Exit(0)


def root(
    ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option("--db", help="Database URL or SQLite file path (env OUTREACH_DATABASE).", metavar="URL_OR_PATH"),
    ] = None,
    config: Annotated[
        str | None,
        typer.Option("--config", help="Config file (env OUTREACH_CONFIG; default ./outreach.toml).", metavar="FILE"),
    ] = None,
    now: Annotated[
        str | None,
        typer.Option(
            "--now",
            help="Treat this as the current time (simulation, forecasts, tests; env OUTREACH_NOW).",
            metavar="TIMESTAMP",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Print only data and errors.")] = False,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="Say more on stderr; show tracebacks of internal errors.")
    ] = False,
    no_color: Annotated[bool, typer.Option("--no-color", help="No colour (also NO_COLOR).")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    from outreach_cli.domain.errors import InvalidInput

    for flag, value in (("--db", db), ("--config", config), ("--now", now)):
        if value is not None and not value.strip():
            raise InvalidInput(f"{flag} is empty: give a value or leave {flag} out")
    # `run` hands the Environment in as the root context's object; a caller driving the Click
    # command directly (documentation tools) gets the process's own.
    env = ctx.obj if isinstance(ctx.obj, Environment) else Environment.detect()
    ctx.obj = App(
        env=env,
        db=db,
        config_file=config,
        now_text=now,
        quiet=quiet,
        verbose=verbose,
        no_color=no_color,
    )
    ctx.call_on_close(ctx.obj.close)
    if verbose:
        import logging

        logging.basicConfig(
            level=logging.INFO, stream=env.stderr, format="%(levelname)s %(name)s: %(message)s", force=True
        )
        # The twilio SDK logs whole requests (numbers, message bodies) at INFO: PHI stays out of logs.
        for noisy in ("twilio", "twilio.http_client", "urllib3", "aiosmtpd", "mail.log", "fontTools", "fpdf"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def build_app(modules: list[str] | None = None) -> typer.Typer:
    """The `outreach` Typer app with the commands of ``modules`` (default: all of them)."""
    import importlib

    t = typer.Typer(
        name="outreach",
        help=HELP,
        no_args_is_help=True,
        add_completion=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    )
    t.callback()(root)
    for name in modules if modules is not None else list(dict.fromkeys(COMMAND_MODULES.values())):
        importlib.import_module(f"outreach_cli.cli.{name}").register(t)
    return t


def __getattr__(name: str) -> Any:
    """`app`: the whole command tree, built on first use (tests, documentation tools)."""
    if name == "app":
        return _command_for(None)[0]
    raise AttributeError(name)


def _print_error(env: Environment, message: str, details: list[str] | None = None) -> None:
    print(f"error: {message}", file=env.stderr)
    for line in details or []:
        print(f"  {line}", file=env.stderr)


_commands: dict[str | None, tuple[typer.Typer, Any]] = {}  # per command name (None: all), built once


def _command_for(name: str | None) -> tuple[typer.Typer, Any]:
    """The Typer app and its Click command holding the command ``name`` (None: every command)."""
    from typer.main import get_command

    if name not in _commands:
        t = build_app(None if name is None else [COMMAND_MODULES[name]])
        _commands[name] = (t, get_command(t))
    return _commands[name]


def command_name(args: list[str]) -> str | None:
    """The command a command line runs, when it names one and asks for no help or completion."""
    import os

    if "_OUTREACH_COMPLETE" in os.environ:
        return None
    i = 0
    while i < len(args):
        tok = args[i]
        name = tok.split("=", 1)[0]
        if name not in GLOBAL_OPTIONS:
            return tok if tok in COMMAND_MODULES else None
        i += 2 if GLOBAL_OPTIONS[name] and "=" not in tok else 1
    return None


# Global options (SPEC section 7) and whether each takes a value; written after the command they
# are moved in front of it (`outreach list --db demo.db` works like `outreach --db demo.db list`).
GLOBAL_OPTIONS = {
    "--db": True,
    "--config": True,
    "--now": True,
    "-q": False,
    "--quiet": False,
    "-v": False,
    "--verbose": False,
    "--no-color": False,
}


def hoist_global_options(args: list[str], root: Any) -> list[str]:
    """Move global options written after the command to before it. Option values of the command
    itself (`--reason -q`) and everything after `--` stay where they are."""
    i = 0
    head: list[str] = []
    while i < len(args):  # the global options already in front
        tok = args[i]
        name = tok.split("=", 1)[0]
        if name in GLOBAL_OPTIONS or tok in ("--version", "-h", "--help"):
            takes = GLOBAL_OPTIONS.get(name, False) and "=" not in tok
            head.extend(args[i : i + (2 if takes else 1)])
            i += 2 if takes else 1
            continue
        break
    cmd = root
    path: list[str] = []
    while i < len(args) and hasattr(cmd, "commands") and args[i] in cmd.commands:
        cmd = cmd.commands[args[i]]
        path.append(args[i])
        i += 1
    if not path:
        return args
    own = {
        opt: not p.is_flag for p in getattr(cmd, "params", []) for opt in getattr(p, "opts", []) if opt.startswith("-")
    }
    moved: list[str] = []
    rest: list[str] = []
    while i < len(args):
        tok = args[i]
        if tok == "--":
            rest.extend(args[i:])
            break
        name = tok.split("=", 1)[0]
        if name in own:
            takes = own[name] and "=" not in tok
            rest.extend(args[i : i + (2 if takes else 1)])
            i += 2 if takes else 1
            continue
        if name in GLOBAL_OPTIONS:
            takes = GLOBAL_OPTIONS[name] and "=" not in tok
            moved.extend(args[i : i + (2 if takes else 1)])
            i += 2 if takes else 1
            continue
        rest.append(tok)
        i += 1
    return head + moved + path + rest


def _quiet_broken_pipe() -> None:
    """The reader went away (`| head`): send whatever is still buffered, or written later
    (Python flushes stdout at exit), to /dev/null so nothing fails or prints afterwards."""
    from outreach_cli.cli.output import stdout_to_devnull

    stdout_to_devnull()


def _is_broken_pipe(exc: BaseException | None) -> bool:
    import errno

    while exc is not None:
        if isinstance(exc, BrokenPipeError) or (isinstance(exc, OSError) and exc.errno == errno.EPIPE):
            return True
        exc = exc.__context__
    return False


def run(argv: list[str] | None = None, env: Environment | None = None) -> int:
    """Run the command line and return the exit code. The terminal environment is detected here,
    once, unless given (tests give theirs: a pipe, or a terminal of their choosing)."""
    from outreach_cli.domain.errors import Aborted, ExitCode, OutreachError

    env = Environment.detect() if env is None else env
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in args or "--verbose" in args
    cmd = _command_for(command_name(args))[1]
    args = hoist_global_options(args, cmd)
    try:
        rv = cmd.main(args=args, prog_name="outreach", standalone_mode=False, obj=env)
        code = int(rv) if isinstance(rv, int) else 0
        if code == ExitCode.INTERRUPTED and not env.interruption_told:  # Ctrl-C inside a command
            print("\ninterrupted", file=env.stderr)
        return code
    except OutreachError as exc:
        if isinstance(exc, Aborted):
            print(f"aborted: {exc.message}", file=env.stderr)
            return int(exc.exit_code)
        _print_error(env, exc.message, exc.details)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("\ninterrupted", file=env.stderr)
        return int(ExitCode.INTERRUPTED)
    except SystemExit as exc:
        # Typer/Click turn EPIPE into `sys.exit(1)`: a reader that stops early is not an error.
        if _is_broken_pipe(exc.__context__):
            _quiet_broken_pipe()
            return 0
        raise
    except BrokenPipeError:
        _quiet_broken_pipe()
        return 0
    except Exception as exc:
        if _is_broken_pipe(exc):
            _quiet_broken_pipe()
            return 0
        name = type(exc).__name__
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # click usage errors
            if name == "Abort":
                print("aborted", file=env.stderr)
                return int(ExitCode.ABORTED)
            exc.show()
            return int(ExitCode.USAGE)
        if verbose:
            import traceback

            traceback.print_exc()
        msg = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        _print_error(
            env,
            f"unexpected internal error ({name}: {msg[0] if msg else ''}); run again with -v for details",
        )
        return int(ExitCode.INTERNAL)


def main() -> None:
    if sys.stdout is None:  # started with stdout closed (`outreach list >&-`): data goes nowhere
        import os

        sys.stdout = open(os.devnull, "w")
    code = run()
    try:
        sys.stdout.flush()
    except (BrokenPipeError, OSError, ValueError):
        _quiet_broken_pipe()
    sys.exit(code)
