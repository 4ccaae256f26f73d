"""Stripe through the official `stripe` SDK: card-on-file charges (the `charge_card` channel),
Checkout Session payment links, and the event feed that closes the loop.

Configured by `STRIPE_API_KEY` (secret `sk_...` or restricted `rk_...` key) and, for tests and
proxies, `OUTREACH_STRIPE_BASE_URL` (replaces https://api.stripe.com). Every request has a
timeout (`OUTREACH_STRIPE_TIMEOUT`, seconds). The SDK's own retries are off: a failed call is
classified here and retried by a later run with the same idempotency key.

A charge is made exactly once: its idempotency key is derived from the send (`outreach-send-
{send_id}-{schedule_gen}`), which stays the same across retries, re-claims and crash recovery,
and its metadata carries the send ID so a send whose outcome is unknown is looked up before
anything is retried.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from outreach_cli.channels.base import (
    DELIVERED,
    FAILED,
    TRANSIENT,
    UNKNOWN,
    Message,
    ProviderConfigError,
    ProviderOutcome,
)

if TYPE_CHECKING:
    from outreach_cli.provider_settings import StripeSettings

DEFAULT_BASE_URL = "https://api.stripe.com"
CUSTOMER_RE = re.compile(r"^cus_[A-Za-z0-9]{6,}$")
PAYMENT_METHOD_RE = re.compile(r"^(pm|card|src)_[A-Za-z0-9_]{6,}$")


def idempotency_key(send_id: int, schedule_gen: int) -> str:
    return f"outreach-send-{send_id}-{schedule_gen}"


def _d(obj: Any) -> dict[str, Any]:
    """SDK objects as plain dicts (StripeObject is not a dict in recent SDKs)."""
    if hasattr(obj, "to_dict"):
        return dict(obj.to_dict())
    return dict(obj)


def _pi_outcome(obj: Any) -> ProviderOutcome:
    """A PaymentIntent's state as a send outcome."""
    pi = _d(obj)
    status = pi.get("status")
    ref = pi.get("id")
    if status == "succeeded":
        return ProviderOutcome(DELIVERED, ref, charged_cents=int(pi.get("amount_received") or pi.get("amount") or 0))
    if status == "processing":
        return ProviderOutcome(UNKNOWN, ref, None, "the card payment is still processing at Stripe")
    err = pi.get("last_payment_error") or {}
    if status == "requires_action":
        return ProviderOutcome(
            FAILED, ref, "authentication_required", "card declined: the bank requires authentication"
        )
    if status in ("requires_payment_method", "canceled") and (err or status == "canceled"):
        return _decline(err.get("code"), err.get("decline_code"), ref)
    return ProviderOutcome(UNKNOWN, ref, None, f"payment is {status} at Stripe")


def _decline(code: str | None, decline_code: str | None, ref: str | None) -> ProviderOutcome:
    what = decline_code or code or "declined"
    reason = {
        "insufficient_funds": "card declined: insufficient funds",
        "expired_card": "card declined: the card has expired",
        "authentication_required": "card declined: the bank requires authentication",
        "generic_decline": "card declined",
        "card_declined": "card declined",
    }.get(what, f"card declined: {what.replace('_', ' ')}")
    return ProviderOutcome(FAILED, ref, what, reason)


@dataclass
class StripeApi:
    """A thin, typed handle on the SDK client."""

    api_key: str
    base_url: str = DEFAULT_BASE_URL
    timeout: float = 20.0

    @classmethod
    def from_settings(cls, settings: StripeSettings) -> StripeApi:
        """Raises ProviderConfigError with the problems `doctor` reports."""
        problems = settings.problems()
        if problems:
            raise ProviderConfigError("Stripe: " + "; ".join(problems))
        return cls(str(settings.api_key), settings.base_url, settings.timeout)

    def client(self) -> Any:
        import stripe

        return stripe.StripeClient(
            self.api_key,
            base_addresses={"api": self.base_url},
            max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=self.timeout),
        )


def _config_error(exc: Exception) -> ProviderConfigError:
    return ProviderConfigError(f"Stripe rejected the API key or its permissions ({type(exc).__name__})")


def _network_outcome(exc: Exception, ref: str | None = None) -> ProviderOutcome:
    text = str(exc)
    # Never reached Stripe: safe to retry. Anything else (a read timeout, a reset mid-answer) may
    # have been executed: unknown, looked up first.
    if "ConnectTimeout" in text or "NewConnectionError" in text or "Connection refused" in text:
        return ProviderOutcome(TRANSIENT, ref, "network", "Stripe could not be reached")
    return ProviderOutcome(UNKNOWN, ref, "network", "Stripe did not answer in time; looking the charge up")


class StripeProvider:
    """The `charge_card` channel with `channels.charge_card = "stripe"`."""

    name = "stripe"

    def __init__(self, api: StripeApi) -> None:
        self.api = api
        self._client: Any = None

    @classmethod
    def from_settings(cls, settings: StripeSettings) -> StripeProvider:
        return cls(StripeApi.from_settings(settings))

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self.api.client()
        return self._client

    def _amount(self, msg: Message) -> int:
        amount = msg.balance_cents
        if msg.max_charge_cents is not None:
            amount = min(amount, msg.max_charge_cents)
        return amount

    def _params(self, msg: Message) -> dict[str, Any]:
        return {
            "amount": self._amount(msg),
            "currency": "usd",
            "customer": msg.stripe_customer_id,
            "payment_method": msg.stripe_payment_method_id,
            "off_session": True,
            "confirm": True,
            "description": f"{msg.practice_name} balance, invoice {msg.set_id}".strip(),
            "metadata": {
                "outreach_set_id": str(msg.set_id),
                "outreach_send_id": str(msg.send_id),
                "outreach_step": msg.step_title,
                "outreach_schedule_gen": str(msg.schedule_gen),
            },
        }

    def send(self, msg: Message) -> ProviderOutcome:
        import stripe

        if not (msg.stripe_customer_id and msg.stripe_payment_method_id):
            return ProviderOutcome(
                FAILED, None, "no_card", "no Stripe card on file (stripe_customer_id and stripe_payment_method_id)"
            )
        if self._amount(msg) <= 0:
            return ProviderOutcome(FAILED, None, "no_balance", "nothing to charge")
        try:
            pi = self.client.v1.payment_intents.create(
                params=self._params(msg), options={"idempotency_key": idempotency_key(msg.send_id, msg.schedule_gen)}
            )
        except stripe.CardError as exc:
            err = exc.error
            pi_ref = None
            if err is not None and getattr(err, "payment_intent", None):
                pi_ref = getattr(err.payment_intent, "id", None)
            return _decline(exc.code, getattr(err, "decline_code", None) if err else None, pi_ref)
        except stripe.IdempotencyError:
            # The key was used with other parameters (the balance changed since a first attempt that
            # Stripe did execute): what that attempt did is the outcome.
            return self.lookup(None, msg) or ProviderOutcome(UNKNOWN, None, "idempotency", "looking the charge up")
        except stripe.RateLimitError:
            return ProviderOutcome(TRANSIENT, None, "429", "Stripe rate limit")
        except (stripe.AuthenticationError, stripe.PermissionError) as exc:
            raise _config_error(exc) from None
        except stripe.APIConnectionError as exc:
            return _network_outcome(exc)
        except stripe.InvalidRequestError as exc:
            return ProviderOutcome(
                FAILED, None, exc.code or "invalid_request", f"Stripe refused the charge: {exc.user_message}"
            )
        except stripe.StripeError as exc:
            status = exc.http_status or 0
            if status >= 500 or status == 409:
                return ProviderOutcome(TRANSIENT, None, str(status), f"Stripe error {status}")
            return ProviderOutcome(UNKNOWN, None, str(status), f"Stripe answered {status}")
        return _pi_outcome(pi)

    def lookup(self, provider_ref: str | None, msg: Message) -> ProviderOutcome | None:
        """The outcome of an earlier attempt: by its PaymentIntent ID when known, else by the
        send ID in the metadata. TRANSIENT when Stripe positively has no such charge (it never
        went out; the retry uses the same idempotency key, so it cannot charge twice)."""
        import stripe

        try:
            if provider_ref and provider_ref.startswith("pi_"):
                return _pi_outcome(self.client.v1.payment_intents.retrieve(provider_ref))
            found = self._find(msg)
        except (stripe.AuthenticationError, stripe.PermissionError) as exc:
            raise _config_error(exc) from None
        except stripe.StripeError:
            return None
        if found is None:
            return ProviderOutcome(TRANSIENT, None, None, "Stripe has no charge for this send; it will be tried again")
        return _pi_outcome(found)

    def _find(self, msg: Message) -> Any | None:
        """Listing the customer's PaymentIntents is strongly consistent (search can lag)."""
        want = str(msg.send_id)
        params: dict[str, Any] = {"limit": 100}
        if msg.stripe_customer_id:
            params["customer"] = msg.stripe_customer_id
        page = self.client.v1.payment_intents.list(params=params)
        for pi in page.auto_paging_iter():
            if (_d(pi).get("metadata") or {}).get("outreach_send_id") == want:
                return pi
        return None


class StripeLinks:
    """Checkout Sessions as the payment link (`payments.provider = "stripe"`)."""

    def __init__(self, api: StripeApi, success_url: str) -> None:
        self.api = api
        self.success_url = success_url
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self.api.client()
        return self._client

    def create(
        self, set_id: int, amount_cents: int, customer: str | None, practice_name: str, key: str
    ) -> dict[str, Any]:
        import stripe

        meta = {"outreach_set_id": str(set_id)}
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": amount_cents,
                        "product_data": {"name": f"{practice_name} balance, invoice {set_id}".strip()},
                    },
                }
            ],
            "metadata": meta,
            "payment_intent_data": {"metadata": meta},
            "success_url": self.success_url,
        }
        if customer:
            params["customer"] = customer
        try:
            s = _d(self.client.v1.checkout.sessions.create(params=params, options={"idempotency_key": key}))
        except (stripe.AuthenticationError, stripe.PermissionError) as exc:
            raise _config_error(exc) from None
        return {
            "session_id": s.get("id"),
            "url": s.get("url"),
            "amount_cents": amount_cents,
            "expires_at": datetime.fromtimestamp(int(s.get("expires_at") or 0), UTC),
            "status": s.get("status"),
        }

    def retrieve_status(self, session_id: str) -> str | None:
        s = _d(self.client.v1.checkout.sessions.retrieve(session_id))
        return str(s.get("status")) if s.get("status") else None

    def expire(self, session_id: str) -> None:
        import stripe

        try:
            self.client.v1.checkout.sessions.expire(session_id)
        except stripe.InvalidRequestError:
            pass  # already complete or expired


def events_since(api: StripeApi, created_gte: int | None, types: tuple[str, ...]) -> list[dict[str, Any]]:
    """Stripe events (oldest first) created at or after ``created_gte`` of the given types."""
    import stripe

    params: dict[str, Any] = {"limit": 100, "types": list(types)}
    if created_gte is not None:
        params["created"] = {"gte": created_gte}
    client = api.client()
    try:
        page = client.v1.events.list(params=params)
        items = [e.to_dict() for e in page.auto_paging_iter()]
    except (stripe.AuthenticationError, stripe.PermissionError) as exc:
        raise _config_error(exc) from None
    items.reverse()
    return items


def ping(api: StripeApi) -> str | None:
    """None when the key works against the API (one cheap GET), else what went wrong."""
    import stripe

    try:
        api.client().v1.payment_intents.list(params={"limit": 1})
    except stripe.AuthenticationError:
        return "the API key was rejected"
    except stripe.PermissionError:
        return "the key lacks permission to read PaymentIntents"
    except stripe.APIConnectionError:
        return f"{api.base_url} is not reachable"
    except stripe.StripeError as exc:
        return f"Stripe answered {exc.http_status}"
    return None
