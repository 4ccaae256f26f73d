"""The `twilio` provider for sms and call, through the official twilio SDK (SPEC section 5).

- `OUTREACH_TWILIO_BASE_URL` replaces https://api.twilio.com for every request (tests, proxies).
- Every request has a timeout; the SDK's HTTP retries are off, so a POST is never repeated by the
  library: a timed-out create may have been accepted, so it becomes `unknown` and is resolved by
  looking the message up, not by sending again.
- Error codes are classified: a bad recipient is a permanent failure (and updates the patient),
  429 and 5xx are transient, authentication/account errors stop the run (exit 4).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from outreach_cli.channels.base import (
    DELIVERED,
    FAILED,
    SENT,
    TRANSIENT,
    UNKNOWN,
    InboundSms,
    Message,
    ProviderConfigError,
    ProviderOutcome,
)
from outreach_cli.domain.timeutil import Clock, utcnow

if TYPE_CHECKING:
    from outreach_cli.provider_settings import TwilioSettings

DEFAULT_BASE = "https://api.twilio.com"
TIMEOUT_S = 15.0

# Recipient problems: permanent, with what we learn about the patient.
PERMANENT: dict[int, tuple[str, dict[str, str | bool]]] = {
    21211: ("invalid phone number", {}),
    21217: ("invalid phone number", {}),
    21407: ("number not reachable by SMS", {}),
    21408: ("region not enabled", {}),
    21612: ("number cannot receive this message", {}),
    21614: ("not a mobile number (landline)", {"phone_type": "landline"}),
    21610: ("recipient opted out of SMS", {"sms_opt_out": True}),
    30003: ("unreachable destination handset", {}),
    30004: ("message blocked by the recipient", {}),
    30005: ("unknown destination handset", {}),
    30006: ("landline or unreachable carrier", {"phone_type": "landline"}),
    30007: ("carrier filtered the message", {}),
    13224: ("invalid phone number", {}),
}
ACCOUNT_CODES = {20003, 20005, 20008, 21606, 21603, 21212, 21659}
FINAL_OK = {"delivered", "read", "completed", "received"}
FINAL_BAD = {"undelivered", "failed", "busy", "no-answer", "canceled"}
PENDING = {"accepted", "scheduled", "queued", "sending", "sent", "initiated", "ringing", "in-progress"}


def classify_status(status: str, error_code: int | str | None, message_sid: str | None) -> ProviderOutcome:
    code = int(error_code) if error_code not in (None, "") else None
    if status in FINAL_OK:
        return ProviderOutcome(DELIVERED, message_sid)
    if status in FINAL_BAD:
        reason, update = PERMANENT.get(code or 0, (f"{status}" + (f" (error {code})" if code else ""), {}))
        return ProviderOutcome(FAILED, message_sid, str(code) if code else status, reason, dict(update))
    return ProviderOutcome(SENT, message_sid)


def classify_exception(exc: Exception, method: str) -> ProviderOutcome:
    """Anything raised by a create call."""
    from twilio.base.exceptions import TwilioRestException

    if isinstance(exc, TwilioRestException):
        code = int(exc.code) if exc.code else None
        status = int(exc.status or 0)
        if status in (401, 403) or (code in ACCOUNT_CODES):
            raise ProviderConfigError(f"Twilio rejected the account or credentials (HTTP {status}, error {code})")
        if status == 429 or status >= 500:
            return ProviderOutcome(TRANSIENT, None, str(code or status), f"Twilio HTTP {status} (will retry)")
        if code in PERMANENT:
            reason, update = PERMANENT[code]
            if method == "call":
                update = {k: v for k, v in update.items() if k != "sms_opt_out"}
                if code == 21614:
                    update = {}
            return ProviderOutcome(FAILED, None, str(code), reason, dict(update))
        return ProviderOutcome(FAILED, None, str(code or status), f"Twilio error {code or status}")
    import requests

    if isinstance(exc, (requests.exceptions.ConnectTimeout,)):
        return ProviderOutcome(TRANSIENT, None, "connect-timeout", "could not reach Twilio (will retry)")
    if isinstance(exc, requests.exceptions.ConnectionError) and not isinstance(exc, requests.exceptions.ReadTimeout):
        text = str(exc).lower()
        if "refused" in text or "name or service" in text or "failed to establish" in text:
            return ProviderOutcome(TRANSIENT, None, "connect", "could not reach Twilio (will retry)")
    # A read timeout or a reset after the request went out: it may have been accepted.
    return ProviderOutcome(UNKNOWN, None, None, f"no answer from Twilio ({type(exc).__name__}); resolving by lookup")


POOL_MAXSIZE = 256  # kept-alive connections to the Twilio API (the highest --concurrency)


def _http_client(base: str, timeout: float) -> Any:
    from requests.adapters import HTTPAdapter
    from twilio.http.http_client import TwilioHttpClient

    class RedirectingHttpClient(TwilioHttpClient):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(timeout=timeout, max_retries=0)
            # The SDK must never repeat a POST itself. One kept-alive connection per concurrent call
            # (`--concurrency` is at most 256): with requests' default pool of 10, every call
            # beyond the tenth opened and dropped a connection of its own.
            adapter = HTTPAdapter(max_retries=0, pool_connections=1, pool_maxsize=POOL_MAXSIZE)
            self.session.mount("https://", adapter)
            self.session.mount("http://", adapter)

        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            if base != DEFAULT_BASE and url.startswith(DEFAULT_BASE):
                url = base + url[len(DEFAULT_BASE) :]
            return super().request(method, url, *args, **kwargs)

    return RedirectingHttpClient()


class TwilioProvider:
    name = "twilio"

    def __init__(
        self,
        method: str,
        account_sid: str,
        auth_token: str,
        from_number: str | None,
        messaging_service_sid: str | None,
        base_url: str = DEFAULT_BASE,
        timeout: float = TIMEOUT_S,
        clock: Clock = utcnow,
    ) -> None:
        from twilio.rest import Client

        self.method = method
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid
        self.clock = clock  # the real clock: Twilio dates messages by its own
        self.client = Client(account_sid, auth_token, http_client=_http_client(base_url.rstrip("/"), timeout))

    @classmethod
    def from_settings(cls, settings: TwilioSettings, method: str, clock: Clock = utcnow) -> TwilioProvider:
        """Raises ProviderConfigError with the problems `doctor` reports for this method."""
        problems = settings.problems_for(method)
        if problems:
            raise ProviderConfigError(f"channels.{method} = twilio: " + "; ".join(problems))
        return cls(
            method,
            str(settings.account_sid),
            str(settings.auth_token),
            settings.from_number,
            settings.messaging_service_sid,
            settings.base_url,
            settings.timeout,
            clock,
        )

    # --- sending ---------------------------------------------------------------------------

    def send(self, msg: Message) -> ProviderOutcome:
        try:
            if self.method == "sms":
                kwargs: dict[str, Any] = {"to": msg.phone, "body": msg.body}
                if self.messaging_service_sid:
                    kwargs["messaging_service_sid"] = self.messaging_service_sid
                else:
                    kwargs["from_"] = self.from_number
                m = self.client.messages.create(**kwargs)
                return classify_status(m.status or "queued", m.error_code, m.sid)
            twiml = f"<Response><Say>{escape(msg.body)}</Say></Response>"
            c = self.client.calls.create(to=msg.phone, from_=self.from_number, twiml=twiml)
            return classify_status(c.status or "queued", None, c.sid)
        except ProviderConfigError:
            raise
        except Exception as exc:
            return classify_exception(exc, self.method)

    # --- looking up ------------------------------------------------------------------------

    def fetch(self, message_sid: str) -> ProviderOutcome:
        """The current status of a message or call we know the SID of."""
        from twilio.base.exceptions import TwilioRestException

        try:
            if message_sid.startswith("CA"):
                c = self.client.calls(message_sid).fetch()
                return classify_status(c.status or "queued", None, message_sid)
            m = self.client.messages(message_sid).fetch()
            return classify_status(m.status or "queued", m.error_code, message_sid)
        except TwilioRestException as exc:
            if exc.status in (401, 403):
                raise ProviderConfigError("Twilio rejected the credentials") from None
            return ProviderOutcome(UNKNOWN, message_sid, str(exc.code or exc.status), "lookup failed")

    def lookup(self, provider_ref: str | None, msg: Message) -> ProviderOutcome | None:
        """Resolve a send whose outcome was never recorded. With a SID: fetch it. Without:
        search what went to this number since shortly before the attempt; a match is the
        message; no match means it never reached Twilio (TRANSIENT: safe to try again)."""
        if provider_ref:
            out = self.fetch(provider_ref)
            return None if out.status == UNKNOWN else out
        # The attempt's time by the tool's clock, or the provider's clock if earlier (`--now` may
        # be a simulated future; Twilio dates messages by its own clock).
        real_now = self.clock()
        since = min(msg.attempted_at or real_now, real_now) - timedelta(minutes=10)
        try:
            if self.method == "sms":
                found = self.client.messages.list(to=msg.phone, date_sent_after=since, limit=50)
                for m in found:
                    if (m.body or "") == msg.body:
                        return classify_status(m.status or "queued", m.error_code, m.sid)
            else:
                calls = self.client.calls.list(to=msg.phone, start_time_after=since, limit=20)
                if calls:
                    c = calls[0]
                    return classify_status(c.status or "queued", None, c.sid)
        except Exception as exc:
            classify_exception(exc, self.method)  # raises on account/credential errors
            return None  # the lookup itself failed: stays unknown, asked again next run
        return ProviderOutcome(TRANSIENT, None, None, "not found at Twilio: it was never sent")

    def inbound(self, to_number: str, since: datetime | None) -> list[InboundSms]:
        """Messages sent to the practice number since ``since`` (oldest first)."""
        kwargs: dict[str, Any] = {"to": to_number, "limit": 1000}
        if since is not None:
            kwargs["date_sent_after"] = since
        out: list[InboundSms] = []
        for m in self.client.messages.list(**kwargs):
            if (m.direction or "").startswith("inbound"):
                out.append(
                    InboundSms(
                        message_sid=m.sid,
                        from_number=m.from_,
                        body=m.body or "",
                        received_at=m.date_sent or m.date_created,
                    )
                )
        out.sort(key=lambda r: (r["received_at"] or datetime.min.replace(tzinfo=UTC), r["message_sid"] or ""))
        return out
