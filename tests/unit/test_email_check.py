"""`check_email` answers plain addresses from a cache of domain verdicts: it must agree with
email-validator itself on every address, plain or not."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outreach_cli.domain.contacts import _validate_email, check_email

LOCAL = st.text(alphabet="abcXYZ09._+-!#$%&'*/=?^`{|}~\"() <>@\\é", min_size=0, max_size=70)
DOMAIN = st.one_of(
    st.sampled_from(
        [
            "example.com",
            "Example.COM",
            "gmail.com",
            "x.invalid",
            "localhost",
            "a..b.com",
            "-a.com",
            "b-.org",
            "xn--bcher-kva.example",
            "bücher.example",
            "[127.0.0.1]",
            "",
            "com",
            "a.b",
            "test",
            "ex ample.com",
        ]
    ),
    st.text(alphabet="abc-.09é", min_size=0, max_size=70),
)


def _outcome(fn: object, text: str) -> str:
    try:
        return "ok:" + fn(text)  # type: ignore[operator]
    except ValueError as exc:
        return "error:" + str(exc)


@settings(max_examples=600, deadline=None)
@given(LOCAL, DOMAIN)
def test_check_email_agrees_with_email_validator(local: str, domain: str) -> None:
    text = f"{local}@{domain}"
    assert _outcome(check_email, text) == _outcome(_validate_email, text)


@pytest.mark.parametrize(
    "text",
    [
        "ann@example.com",
        "Ann.Lee+bills@Example.COM",
        "Postmaster@example.com",
        "a" * 64 + "@example.com",
        "a" * 65 + "@example.com",
        "ann@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 63 + "." + "e" * 57 + ".com",
        "abcdefghij@"
        + "b" * 63
        + "."
        + "c" * 63
        + "."
        + "d" * 63
        + "."
        + "e" * 54
        + ".com",  # only the whole is too long
        "ann@x.invalid",
        "José@example.com",
        '"ann lee"@example.com',
        "Ann <ann@example.com>",
        "ann@@example.com",
        "ann@",
        "@example.com",
        ".ann@example.com",
        "ann.@example.com",
        "an..n@example.com",
        "ann@bücher.example",
    ],
)
def test_check_email_agrees_on_the_edges(text: str) -> None:
    assert _outcome(check_email, text) == _outcome(_validate_email, text)
