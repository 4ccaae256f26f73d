"""A fake Stripe API on 127.0.0.1 for the real stripe SDK (pointed at it through
OUTREACH_STRIPE_BASE_URL): PaymentIntents (create, retrieve, list, search by metadata), Checkout
Sessions (create, retrieve, expire), Events (list with `created` and `starting_after`), and test
helpers that pay a Checkout Session, refund or dispute a payment.

Idempotency as Stripe documents it: the first request with an `Idempotency-Key` that starts
executing has its status and body saved; the same key with the same parameters replays that
answer (also for 402 card errors), the same key with other parameters is a 400 idempotency_error.
Injected faults ("429", "500") answer before executing, so nothing is saved and a retry with the
same key runs for real; "hang" executes, saves, then answers late (a timeout after sending);
"drop" closes the connection without executing (the client cannot tell it from a lost answer).

Test payment methods: pm_card_visa succeeds; pm_card_chargeDeclined, ..InsufficientFunds and
..ExpiredCard are declined; pm_card_authenticationRequired needs authentication, which an
off-session charge cannot do. Every request is logged (method, path, idempotency key, params).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlparse

API_KEY = "sk_test_" + "4eC39HqLyjWDarjtT1zdp7dc"  # Stripe's published documentation test key
WEBHOOK_SECRET = "whsec_test_fake_secret"
# How often the server loop looks for `stop()`: shutdown waits up to this long (the default,
# half a second, was most of a short test's time).
POLL_S = 0.02

DECLINES = {
    "pm_card_chargeDeclined": ("card_declined", "generic_decline", "Your card was declined."),
    "pm_card_chargeDeclinedInsufficientFunds": (
        "card_declined",
        "insufficient_funds",
        "Your card has insufficient funds.",
    ),
    "pm_card_chargeDeclinedExpiredCard": ("expired_card", "expired_card", "Your card has expired."),
    "pm_card_authenticationRequired": (
        "authentication_required",
        "authentication_required",
        "Your card was declined. This transaction requires authentication.",
    ),
}


def parse_form(body: str) -> dict[str, Any]:
    """Stripe's form encoding: a[b]=1&a[c][0]=x -> {"a": {"b": "1", "c": ["x"]}}."""
    out: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        parts = re.findall(r"[^\[\]]+", key)
        cur: Any = out
        for i, p in enumerate(parts):
            last = i == len(parts) - 1
            nxt_is_index = not last and parts[i + 1].isdigit()
            if isinstance(cur, list):
                idx = int(p)
                while len(cur) <= idx:
                    cur.append({} if not nxt_is_index else [])
                if last:
                    cur[idx] = value
                else:
                    cur = cur[idx]
            else:
                if last:
                    cur[p] = value
                else:
                    cur = cur.setdefault(p, [] if nxt_is_index else {})
    return out


def _id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


@dataclass
class FakeStripe:
    payment_intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)  # next POSTs: "429", "500", "hang", "drop", "401"
    hang_seconds: float = 3.0
    delay: float = 0.0  # latency of every POST
    idem: dict[str, tuple[str, str, dict[str, Any], int, dict[str, Any]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None
    clock: int = 0  # event `created` (seconds); strictly increasing so cursors are exact

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeStripe:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                fake._handle(self, "POST")

            def do_GET(self) -> None:
                fake._handle(self, "GET")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(POLL_S,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    # --- assertions -----------------------------------------------------------------------

    def creates(self, path: str = "/v1/payment_intents") -> list[dict[str, Any]]:
        return [r for r in self.log if r["method"] == "POST" and r["path"] == path]

    # --- test helpers (what a patient or the card network does) --------------------------

    def _now(self) -> int:
        self.clock = max(self.clock + 1, int(time.time()))
        return self.clock

    def _event(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        ev = {
            "id": _id("evt_"),
            "object": "event",
            "api_version": "2024-06-20",
            "created": self._now(),
            "livemode": False,
            "pending_webhooks": 0,
            "request": {"id": None, "idempotency_key": None},
            "type": kind,
            "data": {"object": json.loads(json.dumps(obj))},
        }
        self.events.append(ev)
        return ev

    def _new_pi(
        self, amount: int, customer: str | None, pm: str | None, metadata: dict[str, Any], status: str
    ) -> dict[str, Any]:
        pi = {
            "id": _id("pi_"),
            "object": "payment_intent",
            "amount": amount,
            "amount_received": amount if status == "succeeded" else 0,
            "currency": "usd",
            "customer": customer,
            "payment_method": pm,
            "status": status,
            "metadata": metadata,
            "created": self._now(),
            "livemode": False,
            "latest_charge": _id("ch_") if status == "succeeded" else None,
            "last_payment_error": None,
        }
        self.payment_intents[pi["id"]] = pi
        return pi

    def pay_session(self, session_id: str) -> dict[str, Any]:
        """The patient pays a Checkout Session: its PaymentIntent succeeds and both events fire."""
        with self.lock:
            s = self.sessions[session_id]
            meta = dict(s.get("payment_intent_data", {}).get("metadata", {}) or s["metadata"])
            pi = self._new_pi(s["amount_total"], s.get("customer"), "pm_card_visa", meta, "succeeded")
            s.update(status="complete", payment_status="paid", payment_intent=pi["id"])
            self._event("payment_intent.succeeded", pi)
            return self._event("checkout.session.completed", self._session_view(s))

    def succeed_outside(self, amount: int, customer: str, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """A payment made elsewhere (the patient portal): only its event reaches us."""
        with self.lock:
            pi = self._new_pi(amount, customer, "pm_card_visa", metadata or {}, "succeeded")
            return self._event("payment_intent.succeeded", pi)

    def refund(self, pi_id: str, amount: int | None = None) -> dict[str, Any]:
        with self.lock:
            pi = self.payment_intents[pi_id]
            pi["amount_refunded"] = pi.get("amount_refunded", 0) + (amount or pi["amount_received"])
            charge = {
                "id": pi["latest_charge"],
                "object": "charge",
                "amount": pi["amount_received"],
                "amount_refunded": pi["amount_refunded"],
                "refunded": pi["amount_refunded"] >= pi["amount_received"],
                "payment_intent": pi_id,
                "customer": pi["customer"],
                "metadata": {},
            }
            return self._event("charge.refunded", charge)

    def dispute(self, pi_id: str, reason: str = "fraudulent") -> dict[str, Any]:
        with self.lock:
            pi = self.payment_intents[pi_id]
            dp = {
                "id": _id("dp_"),
                "object": "dispute",
                "amount": pi["amount_received"],
                "charge": pi["latest_charge"],
                "payment_intent": pi_id,
                "reason": reason,
                "status": "needs_response",
            }
            return self._event("charge.dispute.created", dp)

    # --- HTTP ------------------------------------------------------------------------------

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            h.send_header("Request-Id", _id("req_"))
            h.end_headers()
            h.wfile.write(data)
        except OSError:
            pass  # the client gave up (timeout): what it missed is what a real timeout misses

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length).decode() if length else ""
        params = parse_form(raw if method == "POST" else url.query)
        key = h.headers.get("Idempotency-Key")
        auth = h.headers.get("Authorization", "")
        with self.lock:
            self.log.append({"method": method, "path": url.path, "idempotency_key": key, "params": params})
            fault = self.faults.pop(0) if (self.faults and method == "POST") else None
        if auth != f"Bearer {API_KEY}" or fault == "401":
            return self._send(
                h, 401, {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided: sk_****"}}
            )
        if fault == "429":
            return self._send(
                h, 429, {"error": {"type": "invalid_request_error", "code": "rate_limit", "message": "Too many"}}
            )
        if fault == "drop":  # the connection closes before Stripe took the request: nothing executed
            h.close_connection = True
            return None
        if fault == "500":
            return self._send(h, 500, {"error": {"type": "api_error", "message": "Something went wrong."}})
        if method == "GET":
            with self.lock:
                status, body = self._get(url.path, params)
            return self._send(h, status, body)
        if self.delay:
            time.sleep(self.delay)
        with self.lock:
            if key and key in self.idem:
                path0, _, params0, status, body = self.idem[key]
                if path0 != url.path or params0 != params:
                    status, body = (
                        400,
                        {
                            "error": {
                                "type": "idempotency_error",
                                "message": "Keys for idempotent requests can only be used with the same parameters "
                                "they were first used with.",
                            }
                        },
                    )
            else:
                status, body = self._post(url.path, params)
                if key and status != 404:
                    self.idem[key] = (url.path, method, params, status, body)
        if fault == "hang":
            time.sleep(self.hang_seconds)
        self._send(h, status, body)

    def _not_found(self, what: str) -> tuple[int, dict[str, Any]]:
        return 404, {"error": {"type": "invalid_request_error", "code": "resource_missing", "message": what}}

    def _post(self, path: str, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if path == "/v1/payment_intents":
            pm = p.get("payment_method")
            if not str(p.get("amount", "")).isdigit() or int(p["amount"]) <= 0:
                return 400, {"error": {"type": "invalid_request_error", "param": "amount", "message": "bad amount"}}
            confirm = p.get("confirm") == "true"
            pi = self._new_pi(
                int(p["amount"]), p.get("customer"), pm, dict(p.get("metadata") or {}), "requires_confirmation"
            )
            if not confirm:
                return 200, dict(pi)
            if pm in DECLINES:
                code, decline, message = DECLINES[pm]
                if pm == "pm_card_authenticationRequired" and p.get("off_session") != "true":
                    pi["status"] = "requires_action"
                    return 200, dict(pi)
                err = {"type": "card_error", "code": code, "decline_code": decline, "message": message}
                pi["status"] = "requires_payment_method"
                pi["last_payment_error"] = err
                self._event("payment_intent.payment_failed", pi)
                return 402, {"error": {**err, "payment_intent": dict(pi)}}
            if pm and not pm.startswith("pm_"):
                return self._not_found(f"No such PaymentMethod: '{pm}'")
            pi.update(status="succeeded", amount_received=pi["amount"], latest_charge=_id("ch_"))
            self._event("payment_intent.succeeded", pi)
            return 200, dict(pi)
        if path == "/v1/checkout/sessions":
            items = p.get("line_items") or []
            total = sum(
                int(i["price_data"]["unit_amount"]) * int(i.get("quantity", "1")) for i in items if "price_data" in i
            )
            sid = _id("cs_test_")
            s = {
                "id": sid,
                "object": "checkout.session",
                "amount_total": total,
                "currency": "usd",
                "customer": p.get("customer"),
                "metadata": dict(p.get("metadata") or {}),
                "payment_intent_data": p.get("payment_intent_data") or {},
                "mode": p.get("mode", "payment"),
                "status": "open",
                "payment_status": "unpaid",
                "payment_intent": None,
                "url": f"https://checkout.stripe.com/c/pay/{sid}",
                "expires_at": int(p.get("expires_at") or int(time.time()) + 24 * 3600),
                "created": self._now(),
                "livemode": False,
            }
            self.sessions[sid] = s
            return 200, self._session_view(s)
        m = re.fullmatch(r"/v1/checkout/sessions/([^/]+)/expire", path)
        if m:
            s = self.sessions.get(m.group(1))
            if s is None:
                return self._not_found("No such checkout.session")
            if s["status"] == "open":
                s["status"] = "expired"
            return 200, self._session_view(s)
        return self._not_found(f"Unrecognized request URL (POST: {path})")

    def _session_view(self, s: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in s.items() if k != "payment_intent_data"}
        if out["status"] != "open":
            out["url"] = None
        return json.loads(json.dumps(out))

    def _get(self, path: str, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        m = re.fullmatch(r"/v1/payment_intents/([^/]+)", path)
        if m and m.group(1) != "search":
            pi = self.payment_intents.get(m.group(1))
            return (200, dict(pi)) if pi else self._not_found("No such payment_intent")
        if path == "/v1/payment_intents/search":
            q = str(p.get("query", ""))
            mm = re.fullmatch(r"metadata\['([^']+)'\]:'([^']*)'", q.strip())
            if not mm:
                return 400, {"error": {"type": "invalid_request_error", "message": f"bad query {q}"}}
            hits = [pi for pi in self.payment_intents.values() if pi["metadata"].get(mm.group(1)) == mm.group(2)]
            return 200, {"object": "search_result", "data": hits, "has_more": False, "next_page": None, "url": path}
        if path == "/v1/payment_intents":
            items = sorted(self.payment_intents.values(), key=lambda x: x["created"], reverse=True)
            if p.get("customer"):
                items = [i for i in items if i["customer"] == p["customer"]]
            return 200, self._page(items, p, path)
        m = re.fullmatch(r"/v1/checkout/sessions/([^/]+)", path)
        if m:
            s = self.sessions.get(m.group(1))
            return (200, self._session_view(s)) if s else self._not_found("No such checkout.session")
        if path == "/v1/events":
            items = list(reversed(self.events))  # newest first, as Stripe lists them
            created = p.get("created")
            if isinstance(created, dict) and "gte" in created:
                items = [e for e in items if e["created"] >= int(created["gte"])]
            if isinstance(created, dict) and "gt" in created:
                items = [e for e in items if e["created"] > int(created["gt"])]
            if p.get("types"):
                items = [e for e in items if e["type"] in p["types"]]
            return 200, self._page(items, p, path)
        return self._not_found(f"Unrecognized request URL (GET: {path})")

    def _page(self, items: list[dict[str, Any]], p: dict[str, Any], path: str) -> dict[str, Any]:
        if p.get("starting_after"):
            ids = [i["id"] for i in items]
            items = items[ids.index(p["starting_after"]) + 1 :] if p["starting_after"] in ids else []
        limit = int(p.get("limit") or 10)
        return {"object": "list", "data": items[:limit], "has_more": len(items) > limit, "url": path}


def main() -> None:  # pragma: no cover - run by hand: python -m tests.fakes.stripe_server
    fake = FakeStripe().start()
    print(fake.base_url, flush=True)
    threading.Event().wait()


if __name__ == "__main__":  # pragma: no cover
    main()
