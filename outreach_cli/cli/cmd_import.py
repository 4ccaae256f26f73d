"""`outreach import patients|charges|payments FILE|-`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Annotated

import typer

from outreach_cli.cli.context import App, get_app

imp = typer.Typer(
    help="Import patients, charges or payments.\n\nCSV (header row) or JSON lines; upsert by ID, so re-importing changes nothing."
    "\n\n\b\nExample:\n  outreach import charges charges.csv --rule-set standard",
    no_args_is_help=True,
)

FileArg = Annotated[
    str, typer.Argument(help="A CSV (header row) or JSON-lines file, or - for stdin.", metavar="FILE|-")
]
FormatOpt = Annotated[
    str | None,
    typer.Option("--input-format", metavar="csv|jsonl", help="csv or jsonl (default: by extension, else sniffed)."),
]
SkipOpt = Annotated[bool, typer.Option("--skip-invalid", help="Import the valid rows, report the rest, exit 3.")]
DryOpt = Annotated[bool, typer.Option("--dry-run", help="Validate and report what would change; write nothing.")]


@contextmanager
def open_input(app: App, path: str) -> Iterator[tuple[IO[bytes], str]]:
    """FILE or `-` (stdin) as a binary stream, read once as the import goes (never whole in
    memory), with a name for messages."""
    from outreach_cli.domain.errors import InvalidInput

    if path == "-":
        stream = getattr(app.env.stdin, "buffer", None)
        if stream is None:  # a text stream without bytes underneath (tests)
            import io

            stream = io.BytesIO(app.env.stdin.read().encode())
        yield stream, "<stdin>"
        return
    try:
        fh = open(path, "rb")  # closed below, after the import has read it
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InvalidInput(f"{path}: is a directory, expected a file") from None
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read: {exc.strerror}") from None
    with fh:
        yield fh, path


def register(app: typer.Typer) -> None:
    app.add_typer(imp, name="import")


def _run(
    ctx: typer.Context,
    kind: str,
    file: str,
    input_format: str | None,
    skip_invalid: bool,
    dry_run: bool,
    rule_set: str | None = None,
) -> None:
    from outreach_cli.domain.errors import ExitCode
    from outreach_cli.imports.importer import run_import

    a = get_app(ctx)
    store = a.store()
    with open_input(a, file) as (data, source), a.progress(f"importing {kind}") as update:
        report = run_import(
            store,
            kind,
            data,
            source=source,
            ctx=a.context(),
            input_format=input_format,
            skip_invalid=skip_invalid,
            dry_run=dry_run,
            rule_set=rule_set,
            progress=update,
            phase=lambda step: a.phase(f"importing {kind}: {step}"),
        )
    for e in report.errors:
        print(f"{source}: {e}", file=a.env.stderr)
    a.info(report.summary())
    for line in report.credit_lines():  # money not applied is never silent, even with -q
        print(line, file=a.env.stderr)
    if report.errors:
        raise typer.Exit(int(ExitCode.PARTIAL))


@imp.command("patients")
def patients(
    ctx: typer.Context,
    file: FileArg,
    input_format: FormatOpt = None,
    skip_invalid: SkipOpt = False,
    dry_run: DryOpt = False,
) -> None:
    """Import or update patients.

    Columns: patient_id, first_name (required), last_name, phone, phone_type, email,
    address_line1, address_line2, city, state, postal_code, country, timezone, sms_opt_out,
    call_opt_out, email_opt_out, card_token, stripe_customer_id, stripe_payment_method_id.

    \b
    Example:
      outreach import patients patients.csv --dry-run
    """
    _run(ctx, "patients", file, input_format, skip_invalid, dry_run)


@imp.command("charges")
def charges(
    ctx: typer.Context,
    file: FileArg,
    rule_set: Annotated[
        str | None,
        typer.Option(
            "--rule-set",
            help="Rule set for the invoice sets this creates (default: default_rule_set); "
            "NAME:WEIGHT,NAME:WEIGHT (e.g. standard:70,gentle:30) spreads new sets over an A/B test.",
            metavar="NAME",
        ),
    ] = None,
    input_format: FormatOpt = None,
    skip_invalid: SkipOpt = False,
    dry_run: DryOpt = False,
) -> None:
    """Import charges; they join or open invoice sets.

    Columns: charge_id, patient_id, amount (dollars) or amount_cents, created_at, description.
    A charge joins the patient's in-progress invoice set, or opens a new one.

    \b
    Example:
      outreach import charges charges.csv --rule-set standard
    """
    _run(ctx, "charges", file, input_format, skip_invalid, dry_run, rule_set)


@imp.command("payments")
def payments(
    ctx: typer.Context,
    file: FileArg,
    input_format: FormatOpt = None,
    skip_invalid: SkipOpt = False,
    dry_run: DryOpt = False,
) -> None:
    """Import payments; oldest charges are paid first.

    Columns: payment_id, patient_id, amount (dollars) or amount_cents, paid_at,
    charge_id (optional). Applied to the named charge, else oldest charges first; a set whose
    balance reaches zero becomes paid.

    \b
    Example:
      cat payments.jsonl | outreach import payments - --input-format jsonl
    """
    _run(ctx, "payments", file, input_format, skip_invalid, dry_run)
