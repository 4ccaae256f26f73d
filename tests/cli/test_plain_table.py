"""Tables written to a pipe are drawn without rich when they are simple (`output.plain_table`,
issue 13: `metrics` starts without loading rich): the text must be rich's own, character for
character, and anything rich would draw differently (wrapping, markup, emoji codes, wide or
control characters) must go to rich."""

from __future__ import annotations

import io
import string
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from outreach_cli.cli import output
from outreach_cli.cli.context import App
from outreach_cli.cli.env import Environment
from outreach_cli.cli.output import Col, Styled, badge, plain_table, print_table


def piped() -> tuple[App, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    env = Environment(sys.stdin, out, err, False, False, False, False)
    return App(env=env), out, err


def both(rows: list[dict[str, object]], cols: list[Col]) -> tuple[str, str]:
    """(the table as printed, as rich prints it)."""
    a, out, err = piped()
    print_table(a, rows, cols)
    b, rich_out, rich_err = piped()
    real = output.plain_table
    output.plain_table = lambda *args: None  # type: ignore[assignment]
    try:
        print_table(b, rows, cols)
    finally:
        output.plain_table = real
    assert err.getvalue() == rich_err.getvalue()
    return out.getvalue(), rich_out.getvalue()


TEXT = st.text(alphabet=string.ascii_letters + string.digits + " ,.$-()[]:/_", max_size=30)
ODD = st.text(alphabet="ab é中\t\n😀:[]", max_size=8)  # wide, accented, control, emoji codes, markup
CELL = st.one_of(TEXT, ODD, st.builds(Styled, TEXT, st.sampled_from(["", "bold red", "green", "dim"])))


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[dict[str, object]], list[Col]]:
    n = draw(st.integers(1, 5))
    cols = [
        Col(
            f"c{i}",
            draw(st.one_of(st.sampled_from(["ID", "Status", "Balance", "Next send", "Reason"]), TEXT.filter(bool))),
            justify=draw(st.sampled_from(["left", "right", "left", "center"])),
            keep=draw(st.booleans()),
            wrap=draw(st.booleans()),
            min_width=draw(st.integers(4, 24)),
            drop=i,
            optional=draw(st.booleans()),
        )
        for i in range(n)
    ]
    rows = [{f"c{i}": draw(CELL) for i in range(n)} for _ in range(draw(st.integers(1, 6)))]
    return rows, cols


@settings(max_examples=600, deadline=None)
@given(tables())
def test_a_table_drawn_without_rich_is_richs_own(table: tuple[list[dict[str, object]], list[Col]]) -> None:
    rows, cols = table
    mine, richs = both(rows, cols)
    assert mine == richs


def test_the_metrics_table_and_a_wide_one() -> None:
    cols = [
        Col("key", "Status", lambda r: badge(r["key"]), keep=True),
        Col("count", "Sets", lambda r: f"{r['count']:,}", "right", keep=True),
        Col("cents", "Outstanding", lambda r: f"${r['cents'] / 100:,.2f}", "right", keep=True),
    ]
    rows = [{"key": "failed", "count": 39943, "cents": 1934091691}, {"key": "will-fail", "count": 7, "cents": 5}]
    mine, richs = both(rows, cols)
    assert (
        mine
        == richs
        == (
            "Status    ┃   Sets ┃    Outstanding\n"
            + "━" * 10
            + "╇"
            + "━" * 8
            + "╇"
            + "━" * 15
            + "\n"
            + "Failed    │ 39,943 │ $19,340,916.91\n"
            + "Will Fail │      7 │          $0.05\n"
        )
    )
    wide = [Col(f"c{i}", f"Column {i}", wrap=True, min_width=12) for i in range(8)]
    long_rows = [{f"c{i}": "word " * 12 for i in range(8)}]
    mine, richs = both(long_rows, wide)  # wraps at 200 columns: rich draws it
    assert mine == richs


def test_only_simple_tables_are_drawn_without_rich() -> None:
    cols = [Col("a", "A"), Col("b", "B", justify="right")]
    assert plain_table(cols, [["x", "1"]], [0, 1], [1, 1]) == "A ┃ B\n━━╇━━\nx │ 1\n"
    for cell in ("[bold]x[/bold]", ":smile: x", "é", "a\tb", "a\nb", "too wide", "0 ", " 0"):
        assert plain_table(cols, [[cell, "1"]], [0, 1], [3, 1]) is None, cell
    assert plain_table([Col("a", "A", justify="center")], [["x"]], [0], [1]) is None
