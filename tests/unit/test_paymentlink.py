"""`set_mac_maker` (the export's and `payment_url_maker`'s HMAC, from precomputed key states) is
the standard library's HMAC-SHA256 for every key length, and the URLs match `payment_url`."""

from __future__ import annotations

import hashlib
import hmac
from types import SimpleNamespace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from outreach_cli.domain.paymentlink import payment_url, payment_url_maker, set_mac_maker


@given(secret=st.text(max_size=150), set_id=st.integers(min_value=0, max_value=2**63 - 1))
def test_the_mac_is_hmac_sha256_of_the_set(secret: str, set_id: int) -> None:
    expected = hmac.new(secret.encode(), f"invoice-set:{set_id}".encode(), hashlib.sha256).digest()
    assert set_mac_maker(secret)(set_id) == expected


def test_keys_around_the_block_size() -> None:
    """Keys shorter than, equal to and longer than SHA-256's 64-byte block (a longer key is hashed
    first), and several sets from one maker (the copied states are not used up)."""
    for n in (0, 1, 63, 64, 65, 128, 500):
        mac = set_mac_maker("k" * n)
        for set_id in (1, 2, 1, 999_999):
            assert mac(set_id) == hmac.new(b"k" * n, b"invoice-set:%d" % set_id, hashlib.sha256).digest(), n


def test_urls_for_many_sets_match_one_at_a_time() -> None:
    # the two read only the template and the secret of the command's context
    ctx: Any = SimpleNamespace(url_template="https://pay.example.test/p/{token}?v=1", secret="s3cret-\u00e9")
    url = payment_url_maker(ctx)
    assert [url(i) for i in (1, 42, 10**9)] == [payment_url(i, ctx) for i in (1, 42, 10**9)]
