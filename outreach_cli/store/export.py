"""`list --format jsonl|json|csv|tsv` over any number of sets: the fast path (SPEC section 12).

The same filters, order, limit and offset as `queries.list_sets` (the statements come from the
same builder), but the rows come straight from the DBAPI cursor in batches (a server-side cursor
on PostgreSQL), with the per-row work done by the query where it is exact: times as
`2026-03-02T14:00:00Z`, amounts as `1234.56`, `needs_review` as true/false, and for TSV/CSV the
tabs and newlines of text cells made spaces plus a flag for the rare rows whose cells a
spreadsheet could read as formulas. Python adds what only it can (the payment link's HMAC, JSON
quoting of free text) and writes one string per batch. The output is byte-identical to the
generic path's (`emit` over `list_sets`); tests compare the two on both databases.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable, Generator, Iterator
from json.encoder import encode_basestring
from typing import TYPE_CHECKING, Any

from sqlalchemy import literal_column

from outreach_cli.domain.context import Context
from outreach_cli.domain.csvsafe import neutralize
from outreach_cli.domain.paymentlink import set_mac_maker
from outreach_cli.store.loaded_rulesets import RuleSets
from outreach_cli.store.queries import ListFilter, _base, _iso_of_stored, _pages, _walks_next_send, exports_by_scan

if TYPE_CHECKING:
    from outreach_cli.store.database import Store

BATCH = 2000
_URLSAFE = bytes.maketrans(b"+/", b"-_")
_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_FIRST = frozenset(_TRIGGERS)  # a flattened cell starting with one of these may be a formula
_STARTS_FORMULA = "'[=+@-]*'"  # SQLite GLOB: the text starts with =, +, @ or - (a flattened cell)


def _iso_sql(col: str, dialect: str, *, quoted: bool) -> str:
    """A stored time as `iso_z` writes it (NULL stays NULL, or `null` when ``quoted``)."""
    q = '"' if quoted else ""
    if dialect == "sqlite":
        # The stored text is sliced exactly as _iso_of_stored does (26 characters, a space at 11
        # and a point at 20: what the GLOB matches); anything else goes to it.
        fast = f"printf('{q}%!.10sT%!.8sZ{q}', {col}, substr({col}, 12))"
        other = f"'{q}' || outreach_iso({col}) || '{q}'"
        v = f"CASE WHEN {col} GLOB '?????????? ????????.??????' THEN {fast} ELSE {other} END"
    else:
        v = f"'{q}' || to_char(timezone('UTC', {col}), 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') || '{q}'"
    null = "'null'" if quoted else "NULL"
    return f"CASE WHEN {col} IS NULL THEN {null} ELSE {v} END"


def _dollars_sql(col: str, dialect: str) -> str:
    """`plain_dollars`: 123456 -> 1234.56, -5 -> -0.05."""
    sign = f"CASE WHEN {col} < 0 THEN '-' ELSE '' END"
    if dialect == "sqlite":
        return f"printf('%s%d.%02d', {sign}, abs({col}) / 100, abs({col}) % 100)"
    return f"{sign} || (abs({col}) / 100)::text || '.' || lpad((abs({col}) % 100)::text, 2, '0')"


def _flat_sql(col: str, dialect: str) -> str:
    """`output.flat` of a text cell: tabs, carriage returns and newlines become spaces."""
    if dialect == "sqlite":
        return f"replace(replace(replace({col}, char(9), ' '), char(13), ' '), char(10), ' ')"
    return f"translate({col}, E'\\t\\r\\n', '   ')"


def _formula_flag_sql(cols: list[str], phone: str, dialect: str) -> str:
    """1 when a (flattened) text cell starts like a formula, so the row takes `neutralize` in
    Python; a phone that is a plain number (`+16175550100`) never does, as in `neutralize`."""
    return f"CASE WHEN {_formula_test_sql(cols, phone, dialect)} THEN 1 ELSE 0 END"


def _formula_test_sql(cols: list[str], phone: str, dialect: str) -> str:
    """The condition of `_formula_flag_sql`."""
    if dialect == "sqlite":  # GLOB '[...]*' looks at the first character only: cheaper than substr
        starts = [f"{c} GLOB {_STARTS_FORMULA}" for c in cols]
        plain = f"({phone} GLOB '[+-][0-9]*' AND substr({phone}, 2) NOT GLOB '*[^0-9]*')"
        starts.append(f"({phone} GLOB {_STARTS_FORMULA} AND NOT {plain})")
    else:
        starts = [f"left({c}, 1) IN ('=', '+', '-', '@')" for c in cols]
        starts.append(f"(left({phone}, 1) IN ('=', '+', '-', '@') AND NOT ({phone} ~ '^[+-][0-9]+$'))")
    return " OR ".join(starts)


# What str.strip() removes (`patient_name` is f"{first} {last}".strip()): trim() with this set of
# characters on both databases.
# (Every character whose str.isspace() is true; a test checks the list.)
SPACES = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _json_sql(col: str, dialect: str) -> str:
    """A text value as `json.dumps(..., ensure_ascii=False)` writes it, `null` for NULL (the
    databases escape exactly the same characters the same way; tests check every one)."""
    if dialect == "sqlite":
        return f"json_quote({col})"
    return f"coalesce(to_json({col})::text, 'null')"


def json_columns(dialect: str, *, rule_set_joined: bool = False) -> list[Any]:
    """id, the JSON object up to `"payment_url": `, and its end (`needs_review`): the link is the
    only part Python adds. ``rule_set_joined``: the query joins `rule_set` (else a subquery)."""
    s, p = "invoice_set", "patient"

    def q(c: str) -> str:
        return _json_sql(c, dialect)

    def n(c: str) -> str:  # a number as text
        return c if dialect == "sqlite" else f"({c})::text"

    spaces = "'" + SPACES.replace("'", "''") + "'"
    name = f"{p}.first_name || ' ' || {p}.last_name"
    name = f"trim({name}, {spaces})" if dialect == "sqlite" else f"btrim({name}, {spaces})"
    rs = q("rule_set.name")
    if not rule_set_joined:
        rs = f"(SELECT {rs} FROM rule_set WHERE rule_set.id = {s}.rule_set_id)"
    methods = (
        f"CASE WHEN {s}.next_methods IS NULL OR {s}.next_methods = '' THEN '[]'"
        f" ELSE '[' || replace({q(f'{s}.next_methods')}, ',', '\", \"') || ']' END"
    )
    parts = [
        ("id", n(f"{s}.id")),
        ("status", q(f"{s}.status")),
        ("amount_outstanding", "'\"' || " + _dollars_sql(f"{s}.amount_outstanding_cents", dialect) + " || '\"'"),
        ("amount_outstanding_cents", n(f"{s}.amount_outstanding_cents")),
        ("patient_id", q(f"{p}.patient_id")),
        ("patient_name", q(name)),
        ("phone", q(f"{p}.phone")),
        ("email", q(f"{p}.email")),
        ("rule_set", rs),
        ("created_at", _iso_sql(f"{s}.created_at", dialect, quoted=True)),
        ("next_send_at", _iso_sql(f"{s}.next_send_at", dialect, quoted=True)),
        ("next_step", q(f"{s}.next_step")),
        ("next_methods", methods),
        ("status_reason", q(f"{s}.status_reason")),
    ]
    if dialect == "sqlite":  # one printf: a chain of || copies the growing text once per part
        fmt = ", ".join(f'"{k}": %s' for k, _ in parts)
        pre = f"printf('{{{fmt}', {', '.join(v for _, v in parts)})"
    else:
        pre = " || ".join(f"'{', ' if i else '{'}\"{k}\": ' || {v}" for i, (k, v) in enumerate(parts))
    post = f"CASE WHEN {p}.needs_review THEN ', \"needs_review\": true}}' ELSE ', \"needs_review\": false}}' END"
    return [literal_column(c) for c in (f"{s}.id", pre + " || ', \"payment_url\": '", post)]


def _csv_cell_sql(v: str, dialect: str, delim: str, *, flat: bool = True, test: str | None = None) -> str:
    """A text value as its TSV/CSV cell: flattened (`output.flat`), then as the csv module
    writes it (QUOTE_MINIMAL: quoted, quotes doubled, when it holds a quote or the delimiter;
    flattening changes neither, so the raw value is tested); NULL as the empty cell."""
    find = "instr({}, {})" if dialect == "sqlite" else "strpos({}, {})"
    t = test or v
    need = f"{find.format(t, chr(39) + chr(34) + chr(39))} > 0"
    if delim == ",":
        need += f" OR {find.format(t, chr(39) + ',' + chr(39))} > 0"
    f = _flat_sql(v, dialect) if flat else v
    return f"coalesce(CASE WHEN {need} THEN '\"' || replace({f}, '\"', '\"\"') || '\"' ELSE {f} END, '')"


def csv_line_columns(dialect: str, delim: str, rule_sets: dict[int, str] | None = None) -> list[Any]:
    """id, the TSV/CSV line up to the payment link (NULL when a cell may need `neutralize`: that
    row is made in Python from `export_columns(csv=True)`), and the line's end (needs_review);
    on SQLite also next_methods (see `_sqlite_csv_line`; ``rule_sets``: the rule sets' names).
    The formula test looks at the raw values: flattening only turns tabs and line breaks into
    spaces, which never start a formula, and keeps a plain number plain."""
    if dialect == "sqlite":
        return _sqlite_csv_line(delim, rule_sets or {})
    s, p = "invoice_set", "patient"
    trim = "trim" if dialect == "sqlite" else "btrim"
    spaces = "'" + SPACES.replace("'", "''") + "'"
    raw_name = f"{trim}({p}.first_name || ' ' || {p}.last_name, {spaces})"
    name = f"{trim}({_flat_sql(f'{p}.first_name', dialect)} || ' ' || {_flat_sql(f'{p}.last_name', dialect)}, {spaces})"
    rs = f"(SELECT rule_set.name FROM rule_set WHERE rule_set.id = {s}.rule_set_id)"

    def n(c: str) -> str:  # a number as text
        return c if dialect == "sqlite" else f"({c})::text"

    texts = [f"{p}.patient_id", f"{p}.phone", f"{p}.email", rs]
    more = [f"{s}.next_step", f"{s}.next_methods", f"{s}.status_reason"]
    pid, phone, email, rs_cell = (_csv_cell_sql(v, dialect, delim) for v in texts)
    cells = [
        n(f"{s}.id"),
        _csv_cell_sql(f"{s}.status", dialect, delim),
        _dollars_sql(f"{s}.amount_outstanding_cents", dialect),
        n(f"{s}.amount_outstanding_cents"),
        pid,
        _csv_cell_sql(name, dialect, delim, flat=False, test=f"{p}.first_name || {p}.last_name"),
        phone,
        email,
        rs_cell,
        f"coalesce({_iso_sql(f'{s}.created_at', dialect, quoted=False)}, '')",
        f"coalesce({_iso_sql(f'{s}.next_send_at', dialect, quoted=False)}, '')",
        *(_csv_cell_sql(v, dialect, delim) for v in more),
    ]
    ch = "char" if dialect == "sqlite" else "chr"
    sep = f"{ch}(9)" if delim == "\t" else "','"
    line = f" || {sep} || ".join(cells) + f" || {sep}"
    flag = _formula_flag_sql(
        [f"{s}.status", f"{p}.patient_id", raw_name, f"{p}.email", rs, *more], f"{p}.phone", dialect
    )
    post = f"{sep} || CASE WHEN {p}.needs_review THEN 'true' ELSE 'false' END || {ch}(10)"
    return [literal_column(c) for c in (f"{s}.id", f"CASE WHEN {flag} = 1 THEN NULL ELSE {line} END", post)]


SEPARATORS = 14  # delimiters in a line up to the payment link: one after each of its 14 cells


def _sqlite_csv_line(delim: str, rule_sets: dict[int, str]) -> list[Any]:
    """`csv_line_columns` on SQLite: the line is ONE printf of the stored text as it is (a chain
    of || copies the growing text once per part), with no flattening or quoting. The stored text
    is its own cell when it holds no quote, delimiter, tab or line break (nearly always), and
    Python checks that on the whole line (`odd_rows`: counts of quotes and delimiters, no line
    break), which costs less than a test per cell here. Only next_methods, a comma list, is
    quoted here (returned too, so the check knows what its cell adds); the rule set's cell comes
    from Python (`_rule_set_cells`), not a subquery per row. NULL when a cell may need
    `neutralize`, holds a NUL character, or the rule set has no cell there: those rows and the
    odd ones are made in Python from `export_columns(csv=True)`."""
    s, p = "invoice_set", "patient"
    first, last, cents = f"{p}.first_name", f"{p}.last_name", f"{s}.amount_outstanding_cents"
    spaces = "'" + SPACES.replace("'", "''") + "'"
    trimmed = f"trim({first} || ' ' || {last}, {spaces})"
    # A name that starts and ends with printable ASCII other than a space is its own strip();
    # one whose first_name starts so starts with first_name's first character (trim() only when
    # not: it is the dearest part of the name).
    ascii_ends = f"{first} GLOB '[!-~]*' AND substr({last}, -1) GLOB '[!-~]'"
    name = f"CASE WHEN {ascii_ends} THEN {first} || ' ' || {last} ELSE {trimmed} END"
    name_formula = f"{first} GLOB {_STARTS_FORMULA} OR (NOT {first} GLOB '[!-~]*' AND {trimmed} GLOB {_STARTS_FORMULA})"
    cells = _rule_set_cells(rule_sets, delim)
    whens = " ".join(f"WHEN {i} THEN '{c}'" for i, c in cells.items())
    rs = f"CASE {s}.rule_set_id {whens} END" if cells else "NULL"
    more = [f"{s}.next_step", f"{s}.next_methods", f"{s}.status_reason"]
    parts = [
        ("%s", f"{s}.id"),
        ("%s", f"{s}.status"),
        ("%s%d.%02d", f"CASE WHEN {cents} < 0 THEN '-' ELSE '' END, abs({cents}) / 100, abs({cents}) % 100"),
        ("%s", cents),
        ("%s", f"{p}.patient_id"),
        ("%s", name),
        ("%s", f"{p}.phone"),
        ("%s", f"{p}.email"),
        ("%s", rs),
        ("%s", _iso_sql(f"{s}.created_at", "sqlite", quoted=False)),
        ("%s", _iso_sql(f"{s}.next_send_at", "sqlite", quoted=False)),
        ("%s", more[0]),
        ("%s", _csv_cell_sql(more[1], "sqlite", delim, flat=False)),
        ("%s", more[2]),
    ]
    fmt = "".join(f + delim for f, _ in parts)
    line = f"printf('{fmt}', {', '.join(v for _, v in parts)})"
    formula = _formula_test_sql([f"{s}.status", f"{p}.patient_id", f"{p}.email", *more], f"{p}.phone", "sqlite")
    ids = ", ".join(map(str, cells))
    # printf's %s ends a text at a NUL character (|| and the csv module keep it): such rows too.
    texts = [f"{s}.status", f"{p}.patient_id", first, last, f"{p}.phone", f"{p}.email", *more]
    nul = " OR ".join(f"instr({c}, char(0))" for c in texts)
    left = f"{formula} OR {name_formula} OR {nul} OR {s}.rule_set_id NOT IN ({ids})"
    post = f"CASE WHEN {p}.needs_review THEN '{delim}true\n' ELSE '{delim}false\n' END"
    cols = (f"{s}.id", f"CASE WHEN {left} THEN NULL ELSE {line} END", post, more[1])
    return [literal_column(c) for c in cols]


def _rule_set_cells(names: dict[int, str], delim: str) -> dict[int, str]:
    """Each rule set's cell as `emit` writes it (`neutralize(flat(name))`), SQL-quoted, for those
    whose cell the csv module writes as it is (all of them: names are slugs)."""
    from outreach_cli.domain.csvsafe import flat

    cells = {i: neutralize(flat(n)) for i, n in names.items()}
    return {i: c.replace("'", "''") for i, c in cells.items() if not any(x in c for x in ('"', delim, "\0"))}


class _Expected(dict[str | None, tuple[int, int]]):
    """next_methods -> the quotes and delimiters in a `_sqlite_csv_line` line whose other cells
    hold neither: those of the methods cell, and the separators. A tab in the methods must be
    flattened: (-1, -1), no line has that (line breaks anywhere, and a tab in a CSV line,
    `odd_rows` finds itself)."""

    def __init__(self, delim: str) -> None:
        super().__init__()
        self.delim = delim

    def __missing__(self, m: str | None) -> tuple[int, int]:
        cell = m or ""
        if '"' in cell or (self.delim == "," and "," in cell):  # as the query quotes it (_csv_cell_sql)
            cell = '"' + cell.replace('"', '""') + '"'
        got = (-1, -1) if "\t" in cell else (cell.count('"'), SEPARATORS + cell.count(self.delim))
        self[m] = got
        return got


def odd_rows(batch: list[tuple[Any, ...]], expected: _Expected) -> list[int]:
    """The IDs of the rows of a `_sqlite_csv_line` batch left to Python: those the query left
    (NULL), and those where a cell other than next_methods holds a quote, the delimiter, a tab
    or a line break (which the line's counts of quotes and delimiters, and a search for the
    others, show)."""
    if expected.delim == "\t":
        return [
            i
            for i, line, _end, m in batch
            if line is None or (line.count('"'), line.count("\t")) != expected[m] or "\n" in line or "\r" in line
        ]
    return [
        i
        for i, line, _end, m in batch
        if line is None
        or (line.count('"'), line.count(",")) != expected[m]
        or "\t" in line
        or "\n" in line
        or "\r" in line
    ]


def export_columns(dialect: str, *, csv: bool) -> list[Any]:
    """The SELECT list of the fast path (see the row layout in `json_lines` / `cell_rows`)."""
    if not csv:
        return json_columns(dialect)
    s, p = "invoice_set", "patient"
    amount = _dollars_sql(f"{s}.amount_outstanding_cents", dialect)
    text = [_flat_sql(f"{p}.{c}", dialect) for c in ("patient_id", "first_name", "last_name", "phone", "email")]
    more = [_flat_sql(f"{s}.{c}", dialect) for c in ("next_step", "next_methods", "status_reason")]
    cols = [
        f"{s}.id",
        f"{s}.status",
        amount,
        f"{s}.amount_outstanding_cents",
        *text,
        f"{s}.rule_set_id",
        _iso_sql(f"{s}.created_at", dialect, quoted=False),
        _iso_sql(f"{s}.next_send_at", dialect, quoted=False),
        *more,
        f"CASE WHEN {p}.needs_review THEN 'true' ELSE 'false' END",
        _formula_flag_sql([text[0], text[4], more[0], more[1], more[2]], text[3], dialect),  # name: in Python
    ]
    return [literal_column(c) for c in cols]


def _compiled(conn: Any, stmt: Any) -> tuple[Any, dict[str, Any]]:
    """``stmt`` compiled for the connection's database, and its parameters with the columns'
    bind conversion done (what SQLAlchemy would hand the driver)."""
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = dict(compiled.params)
    for name, proc in compiled._bind_processors.items():
        if params.get(name) is not None:
            params[name] = proc(params[name])
    return compiled, params


def _driver_rows(conn: Any, stmt: Any, *, server: bool = True) -> Iterator[list[tuple[Any, ...]]]:
    """Runs ``stmt`` on the DBAPI cursor and yields its rows in batches of BATCH (PostgreSQL: a
    server-side cursor, so memory stays flat). Parameters get the columns' bind conversion."""
    compiled, params = _compiled(conn, stmt)
    raw = conn.connection.dbapi_connection
    if conn.dialect.name == "sqlite":
        raw.create_function("outreach_iso", 1, _iso_of_stored, deterministic=True)
        cur = raw.cursor()
        args: Any = tuple(params[k] for k in compiled.positiontup)
    else:
        cur = raw.cursor(name="outreach_export") if server else raw.cursor()
        args = params
    # SQLAlchemy's cursor-execute listeners (statement logging, the query-plan tests) see this
    # statement as if SQLAlchemy had run it.
    conn.dispatch.before_cursor_execute(conn, cur, str(compiled), args, None, False)
    cur.execute(str(compiled), args)
    try:
        while batch := cur.fetchmany(BATCH):
            yield batch
    finally:
        cur.close()


def link_parts(ctx: Context, *, csv: bool, delim: str = ",") -> list[str] | None:
    """The payment link's template around its tokens, written as its JSON string or its TSV/CSV
    cell. None when the link cannot be made that way (a Stripe checkout link; a template whose
    cell a spreadsheet could read as a formula)."""
    settings = ctx.extra.get("settings")
    if settings is not None and settings.values["payments"]["provider"] == "stripe":
        return None
    from outreach_cli.domain.csvsafe import flat

    parts = ctx.url_template.split("{token}")
    if csv:
        parts = [flat(x) for x in parts]
        if not parts[0] or parts[0].startswith(_TRIGGERS) or any('"' in x or delim in x for x in parts):
            return None  # the token could start the cell, or the cell needs quoting: the generic path
    else:
        parts = [encode_basestring(x)[1:-1] for x in parts]
        parts[0], parts[-1] = '"' + parts[0], parts[-1] + '"'
    return parts


def payment_links(ctx: Context, *, csv: bool, delim: str = ",") -> Callable[[int], str] | None:
    """`payment_url_maker` (the MAC of `set_mac_maker`) for `link_parts`; None where that is."""
    parts = link_parts(ctx, csv=csv, delim=delim)
    if parts is None:
        return None
    b64 = binascii.b2a_base64
    mac = set_mac_maker(ctx.secret)

    def link(set_id: int) -> str:
        # 24 bytes: 32 characters of URL-safe base64 with no padding, as payment_url makes them.
        token = b64(mac(set_id)[:24], newline=False).translate(_URLSAFE)
        return token.decode().join(parts)

    return link


def rule_set_names(store: Store) -> dict[int, str]:
    with store.read() as conn:
        return RuleSets(conn).names()


def export_rows(store: Store, f: ListFilter, *, delim: str | None) -> Generator[list[tuple[Any, ...]], None, None]:
    """The fast path's rows in batches, in `list` order: (id, JSON text up to the link, its
    end) or, with ``delim``, (id, TSV/CSV line up to the link, its end[, next_methods on
    SQLite]), or (id, None, None, the cells of `export_columns(csv=True)`) when the line is left
    to Python."""
    with store.read() as conn:
        rule_sets = RuleSets(conn)
        walk = _walks_next_send(conn, store.dialect, f)
        scan = not walk and exports_by_scan(conn, store.dialect, f)
        # Scanning, the status filter too is written `+col` (no index): the table in its order.
        base = _base(rule_sets, f, walk_next_send=walk or scan, dialect=store.dialect)
        if delim is None:
            cols = json_columns(store.dialect)
        else:
            cols = csv_line_columns(store.dialect, delim, rule_sets.names())
        base = base.with_only_columns(*cols, maintain_column_froms=False)
        pages = _pages(conn, base, f, run=lambda q: _driver_rows(conn, q), size=len, scan=scan)
        expected = _Expected(delim or ",")
        for batch in pages:
            if delim is None:
                yield batch
                continue
            odd = odd_rows(batch, expected) if store.dialect == "sqlite" else [r[0] for r in batch if r[1] is None]
            yield _with_cells(conn, store.dialect, batch, odd) if odd else batch


def _with_cells(conn: Any, dialect: str, batch: list[tuple[Any, ...]], ids: list[int]) -> list[tuple[Any, ...]]:
    """The rows whose line is left to Python (``ids``) get their cells (one query per batch)."""
    from sqlalchemy import select

    from outreach_cli.store.models import invoice_set_t, patient_t

    q = (
        select(*export_columns(dialect, csv=True))
        .select_from(invoice_set_t)
        .join(patient_t, patient_t.c.id == invoice_set_t.c.patient_pk)
        .where(invoice_set_t.c.id.in_(ids))
    )
    cells = {r[0]: r for rows in _driver_rows(conn, q, server=False) for r in rows}
    wanted = set(ids)
    return [(r[0], None, None, cells[r[0]]) if r[0] in wanted else r for r in batch]


def json_batches(batches: Iterator[list[tuple[Any, ...]]], link: Callable[[int], str]) -> Iterator[list[str]]:
    """Each row as the JSON text `json.dumps(row, ensure_ascii=False)` gives for `list_sets`."""
    for batch in batches:
        yield [f"{pre}{link(i)}{post}" for i, pre, post in batch]


def csv_batches(
    batches: Iterator[list[tuple[Any, ...]]], names: dict[int, str], link: Callable[[int], str], delim: str
) -> Iterator[tuple[str, int]]:
    """Each batch as the TSV/CSV text `emit` writes for `list_sets` (no header), and its rows."""
    import csv
    import io

    from outreach_cli.domain.csvsafe import flat

    rs = {i: neutralize(flat(n)) for i, n in names.items()}
    buf = io.StringIO()
    writer = csv.writer(buf, dialect="excel-tab" if delim == "\t" else "excel", lineterminator="\n")
    for batch in batches:
        lines = []
        for r in batch:
            if r[1] is not None:
                lines.append(f"{r[1]}{link(r[0])}{r[2]}")
                continue
            buf.seek(0)
            buf.truncate()
            writer.writerow(_cells(r[3], rs, link))
            lines.append(buf.getvalue())
        yield "".join(lines), len(lines)


def _cells(r: tuple[Any, ...], rs: dict[int, str], link: Callable[[int], str]) -> tuple[Any, ...]:
    i, st, amt, cents, pid, first, last, phone, email, rsid, cr, nx, step, meth, why, nr, formula = r
    name = f"{first} {last}".strip()
    if name[:1] in _FIRST:
        name = neutralize(name)
    if formula:
        pid, phone, email = neutralize(pid), neutralize(phone or ""), neutralize(email or "")
        step, meth, why = neutralize(step or ""), neutralize(meth or ""), neutralize(why or "")
    return (i, st, amt, cents, pid, name, phone, email, rs[rsid], cr, nx, step, meth, why, link(i), nr)


# PostgreSQL streams a JSON export with COPY: every line made by the query, the payment link's
# HMAC included (core sha256 on the key's inner and outer pads, RFC 2104, as `set_mac_maker`),
# so Python only passes text on. CSV format with two control characters as delimiter and quote:
# the lines (JSON, whose control characters are escaped) never hold them or a line break, so
# COPY writes each as it is.
_COPY = "COPY ({}) TO STDOUT (FORMAT csv, DELIMITER E'\\x1f', QUOTE E'\\x1e')"


def _pg_token_sql(set_id: str) -> str:
    """The link's token, as `payment_url_maker` makes it: the first 24 bytes of the HMAC in
    URL-safe base64 (32 characters, no padding)."""
    inner = f"sha256(:link_ipad || convert_to('invoice-set:' || {set_id}::text, 'UTF8'))"
    return f"translate(encode(substring(sha256(:link_opad || {inner}) from 1 for 24), 'base64'), '+/', '-_')"


def pg_json_lines(store: Store, f: ListFilter, ctx: Context, parts: list[str]) -> Generator[list[str], None, None]:
    """PostgreSQL: the JSON lines of `json_batches`, each made whole by the query and streamed with
    COPY, in batches of BATCH, in `list` order (``parts``: `link_parts` for JSON)."""
    from sqlalchemy import LargeBinary, bindparam, text

    from outreach_cli.domain.paymentlink import key_pads

    ipad, opad = key_pads(ctx.secret)
    token = _pg_token_sql("invoice_set.id")
    link = f" || {token} || ".join(f":link_part_{i}" for i in range(len(parts)))
    # rule_set joined, not a subquery per row: the whole line is then parallel-safe, and
    # PostgreSQL's workers make the lines (the HMAC included) before the sort.
    _id, pre, post = json_columns("postgresql", rule_set_joined=True)
    line = text(f"({pre}) || {link} || ({post})").bindparams(
        bindparam("link_ipad", ipad, type_=LargeBinary),
        bindparam("link_opad", opad, type_=LargeBinary),
        *(bindparam(f"link_part_{i}", p) for i, p in enumerate(parts)),
    )
    with store.read() as conn:
        rule_sets = RuleSets(conn)
        from outreach_cli.store.models import invoice_set_t, rule_set_t

        base = _base(rule_sets, f, dialect="postgresql")
        base = base.outerjoin(rule_set_t, rule_set_t.c.id == invoice_set_t.c.rule_set_id)
        base = base.with_only_columns(line, maintain_column_froms=False)
        yield from _pages(conn, base, f, run=lambda q: _copied_lines(conn, q), size=len)


def _copied_lines(conn: Any, stmt: Any) -> Iterator[list[str]]:
    """The one-column rows of ``stmt`` through COPY, in batches of BATCH lines."""
    compiled, params = _compiled(conn, stmt)
    sql = _COPY.format(str(compiled))
    cur = conn.connection.dbapi_connection.cursor()
    conn.dispatch.before_cursor_execute(conn, cur, sql, params, None, False)
    batch: list[str] = []
    with cur.copy(sql, params) as copy:
        for data in copy:
            batch.append(bytes(data).decode()[:-1])
            if len(batch) >= BATCH:
                yield batch
                batch = []
    if batch:
        yield batch
