from hypothesis import given
from hypothesis import strategies as st

from outreach_cli.domain.csvsafe import neutralize


def test_formula_cells_are_neutralized() -> None:
    assert neutralize('=cmd|"/c calc"!A1') == '\'=cmd|"/c calc"!A1'
    assert neutralize("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    for prefix in ("+", "-", "@", "\t", "\r"):
        assert neutralize(prefix + "x") == "'" + prefix + "x"


def test_plain_values_and_numbers_are_unchanged() -> None:
    for value in ("", "O'Brien", "Garcia, Sofia", "-12.50", "+3", "120.50", "a=b"):
        assert neutralize(value) == value


@given(st.text())
def test_only_a_leading_apostrophe_is_ever_added(value: str) -> None:
    cell = neutralize(value)
    assert cell == value or cell == "'" + value
    assert not cell.startswith(("=", "+", "@", "\t", "\r")) or cell == value
