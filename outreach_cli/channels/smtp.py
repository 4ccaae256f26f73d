"""The `smtp` email provider (SPEC section 5): smtplib to OUTREACH_SMTP_URL.

`smtp://[user:pass@]host[:port]`, `smtps://...` for implicit TLS, `?starttls=true`. Sender
OUTREACH_EMAIL_FROM. Subject: the step title; a plain-text body with an HTML alternative, the
payment link, and a List-Unsubscribe header. A refused recipient is a bounce: a permanent failure
that suppresses the address. 4xx answers and connection failures are transient; a timeout after
the message data went out is unknown (never re-sent blindly).
"""

from __future__ import annotations

import html
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlparse

from outreach_cli.channels.base import (
    DELIVERED,
    FAILED,
    TRANSIENT,
    UNKNOWN,
    Message,
    ProviderConfigError,
    ProviderOutcome,
)
from outreach_cli.domain.timeutil import Clock, utcnow
from outreach_cli.provider_settings import SMTP_URL_SHAPE

if TYPE_CHECKING:
    from outreach_cli.provider_settings import SmtpSettings

TIMEOUT_S = 20.0


class SmtpProvider:
    name = "smtp"

    def __init__(self, url: str, sender: str, timeout: float = TIMEOUT_S, clock: Clock = utcnow) -> None:
        u = urlparse(url)
        if u.scheme not in ("smtp", "smtps") or not u.hostname:
            raise ProviderConfigError(f"OUTREACH_SMTP_URL must look like {SMTP_URL_SHAPE}")
        self.implicit_tls = u.scheme == "smtps"
        self.host = u.hostname
        self.port = u.port or (465 if self.implicit_tls else 25)
        self.user = unquote(u.username) if u.username else None
        self.password = unquote(u.password) if u.password else None
        q = parse_qs(u.query)
        self.starttls = q.get("starttls", ["false"])[0].lower() in ("1", "true", "yes")
        self.sender = sender
        self.timeout = timeout
        self.clock = clock  # dates the message (the real clock: mail servers check it)

    @classmethod
    def from_settings(cls, settings: SmtpSettings, clock: Clock = utcnow) -> SmtpProvider:
        """Raises ProviderConfigError with the problems `doctor` reports."""
        problems = settings.problems()
        if problems:
            raise ProviderConfigError("channels.email = smtp: " + "; ".join(problems))
        return cls(str(settings.url), str(settings.sender), clock=clock)

    def build(self, msg: Message) -> EmailMessage:
        em = EmailMessage()
        em["Subject"] = msg.step_title
        em["From"] = self.sender
        em["To"] = msg.email or ""
        em["Date"] = formatdate(self.clock().timestamp(), localtime=False)
        domain = self.sender.rpartition("@")[2] or "localhost"
        em["Message-ID"] = make_msgid(idstring=f"outreach-{msg.send_id}", domain=domain)
        em["List-Unsubscribe"] = f"<mailto:{self.sender}?subject=unsubscribe>"
        text = f"{msg.body}\n\nPay securely online: {msg.payment_url}\n\n{msg.practice_name}"
        if msg.practice_phone:
            text += f"\n{msg.practice_phone}"
        em.set_content(text)
        body_html = html.escape(msg.body).replace("\n", "<br>")
        url = html.escape(msg.payment_url, quote=True)
        em.add_alternative(
            f'<html><body><p>{body_html}</p><p><a href="{url}">Pay securely online</a></p>'
            f"<p>{html.escape(msg.practice_name)}</p></body></html>",
            subtype="html",
        )
        return em

    def _connect(self) -> smtplib.SMTP:
        if self.implicit_tls:
            s: smtplib.SMTP = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=ssl.create_default_context()
            )
        else:
            s = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            if self.starttls:
                s.starttls(context=ssl.create_default_context())
        if self.user:
            s.login(self.user, self.password or "")
        return s

    def send(self, msg: Message) -> ProviderOutcome:
        em = self.build(msg)
        ref = str(em["Message-ID"])
        try:
            conn = self._connect()
        except smtplib.SMTPAuthenticationError:
            raise ProviderConfigError("the SMTP server rejected the credentials") from None
        except (OSError, smtplib.SMTPException) as exc:
            return ProviderOutcome(
                TRANSIENT, None, "connect", f"could not reach the SMTP server ({type(exc).__name__})"
            )
        try:
            try:
                refused = conn.send_message(em)
            except smtplib.SMTPRecipientsRefused as exc:
                code = next(iter(exc.recipients.values()))[0] if exc.recipients else 550
                if 400 <= code < 500:
                    return ProviderOutcome(TRANSIENT, None, str(code), "recipient temporarily refused (will retry)")
                return ProviderOutcome(
                    FAILED, None, str(code), "recipient refused (bounce)", {"email_suppressed": "bounced"}
                )
            except smtplib.SMTPSenderRefused as exc:
                raise ProviderConfigError(
                    f"the SMTP server refused the sender address (code {exc.smtp_code})"
                ) from None
            except smtplib.SMTPDataError as exc:
                if 400 <= exc.smtp_code < 500:
                    return ProviderOutcome(
                        TRANSIENT, None, str(exc.smtp_code), "message temporarily refused (will retry)"
                    )
                return ProviderOutcome(FAILED, None, str(exc.smtp_code), "message refused by the SMTP server")
            except (TimeoutError, smtplib.SMTPServerDisconnected) as exc:
                return ProviderOutcome(UNKNOWN, ref, None, f"no answer after sending ({type(exc).__name__})")
            if refused:
                return ProviderOutcome(
                    FAILED, ref, "550", "recipient refused (bounce)", {"email_suppressed": "bounced"}
                )
            return ProviderOutcome(DELIVERED, ref)
        finally:
            try:
                conn.quit()
            except (OSError, smtplib.SMTPException):
                pass

    def lookup(self, provider_ref: str | None, msg: Message) -> ProviderOutcome | None:
        # SMTP has no way to ask; an unknown email stays unknown (and is not re-sent).
        return None
