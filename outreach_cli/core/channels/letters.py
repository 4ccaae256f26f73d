"""Which text a printed letter carries (pure; the outbox provider renders it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from outreach_cli.core.rulesets import Step


def letter_template(step: Step | None, method: str, is_fallback: bool) -> str | None:
    """The step's own letter text, or None for the outbox's standard letter.

    A step's `mail` message (``[step.messages] mail = ...``) is the letter. Without one, a
    letter-only step's `message` was written for paper and is used; a letter sent as a fallback
    for, or alongside, an SMS/email/call step gets the standard letter instead, so SMS wording
    ("Reply STOP to opt out") never reaches paper.
    """
    if method != "mail" or step is None:
        return None
    messages = getattr(step, "messages", None) or {}
    own = messages.get("mail") if isinstance(messages, dict) else None
    if own and str(own).strip():
        return str(own)
    if not is_fallback and tuple(step.methods) == ("mail",) and step.message.strip():
        return str(step.message)
    return None
