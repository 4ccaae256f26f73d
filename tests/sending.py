"""Keeps every message the engine hands to its providers, for tests that check what was sent."""

from __future__ import annotations

from typing import Any

import pytest

from outreach_cli.channels.base import Message, ProviderOutcome


class Recorder:
    """Wraps the real providers and keeps every message handed to them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import outreach_cli.channels as channels

        self.messages: list[Message] = []
        real = channels.build_providers

        def build(cfg: dict[str, Any]) -> dict[str, Any]:
            provs = real(cfg)
            return {m: _Wrap(p, self.messages) for m, p in provs.items()}

        monkeypatch.setattr(channels, "build_providers", build)


class _Wrap:
    def __init__(self, inner: Any, sink: list[Message]) -> None:
        self.inner, self.sink, self.name = inner, sink, inner.name

    def send(self, msg: Message) -> ProviderOutcome:
        self.sink.append(msg)
        return self.inner.send(msg)  # type: ignore[no-any-return]

    def lookup(self, ref: str | None, msg: Message) -> ProviderOutcome | None:
        return self.inner.lookup(ref, msg)  # type: ignore[no-any-return]
