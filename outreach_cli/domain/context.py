"""What every change needs: the clock, who acts, the practice and scheduling settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from outreach_cli.domain.scheduling import Window


@dataclass
class Context:
    """What every change needs: the (injectable) clock, who acts, and the scheduling settings."""

    now: datetime
    window: Window
    practice_tz: str
    actor: str = "system"
    practice_name: str = ""
    practice_phone: str = ""
    url_template: str = "https://pay.example.com/p/{token}"
    secret: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
