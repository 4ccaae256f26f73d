"""A read looks a ZIP code up on its own (`show` at 1M sets no longer loads the whole ZIP table,
issue 13); the answer is the table's."""

from __future__ import annotations

import pytest

from outreach_cli.core import contacts


@pytest.mark.parametrize("code", ["02115", "10001", "60601", "94105", "98101", "00501", "99950", "96799", "00000"])
def test_one_zip_lookup_answers_as_the_table(code: str) -> None:
    assert contacts._zip_one(code) == contacts._zip_data().get(code)


def test_a_read_does_not_load_the_whole_table(monkeypatch: pytest.MonkeyPatch) -> None:
    contacts._zip_data.cache_clear()
    contacts._zip_one.cache_clear()
    assert contacts._zip_row("02115-1234", "US") == ("America/New_York", "MA")
    assert contacts._zip_data.cache_info().currsize == 0
    for n in range(contacts._ZIP_ONE_BY_ONE):  # a writer looking many up loads it once
        contacts._zip_row(f"{10001 + n:05d}", None)
    contacts._zip_row("60601", None)
    assert contacts._zip_data.cache_info().currsize == 1
