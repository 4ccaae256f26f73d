"""A fake Twilio REST API on 127.0.0.1 for the real twilio SDK (pointed at it through
OUTREACH_TWILIO_BASE_URL): Messages and Calls (create, fetch, list with filters), Twilio's JSON
shapes and error bodies, and fault injection (errors, slow answers, resets)."""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

ACCOUNT = "AC" + "0" * 32
TOKEN = "test-token-not-a-secret"
# How often the server loop looks for `stop()`: shutdown waits up to this long (the default,
# half a second, was most of a short test's time).
POLL_S = 0.02

ERRORS = {
    "+15005550001": (400, 21211, "The 'To' number is not a valid phone number."),
    "+15005550009": (400, 21614, "'To' number is not a valid mobile number"),
    "+15005550004": (400, 21610, "Attempt to send to unsubscribed recipient"),
}


def rfc2822(dt: datetime) -> str:
    return format_datetime(dt.astimezone(UTC), usegmt=True).replace("GMT", "+0000")


@dataclass
class FakeTwilio:
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    create_requests: list[dict[str, str]] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)  # queued for the next creates: "429", "500", "hang", "reset"
    hang_seconds: float = 3.0
    delay: float = 0.0  # latency of every create
    fault_rates: dict[str, float] = field(default_factory=dict)  # random faults: {"500": 0.1, ...}
    seed: int = 1
    keep_alive: bool = False  # HTTP/1.1 kept-alive connections, as the real API (the benchmark's)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None
    thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeTwilio:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if fake.keep_alive else "HTTP/1.0"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                fake._handle(self, "POST")

            def do_GET(self) -> None:
                fake._handle(self, "GET")

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # many workers at once, as the real API would take them

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(POLL_S,), daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    # --- test hooks -------------------------------------------------------------------------

    def set_status(self, sid: str, status: str, error_code: int | None = None) -> None:
        with self.lock:
            self.messages[sid].update(status=status, error_code=error_code)

    def add_inbound(self, from_: str, to: str, body: str, at: datetime) -> str:
        sid = "SM" + secrets.token_hex(16)
        with self.lock:
            self.messages[sid] = self._message(sid, to, from_, body, "received", at, direction="inbound")
        return sid

    def sent_to(self, number: str) -> list[dict[str, Any]]:
        return [m for m in self.messages.values() if m["to"] == number and m["direction"] != "inbound"]

    # --- the API ----------------------------------------------------------------------------

    def _message(
        self,
        sid: str,
        to: str,
        from_: str,
        body: str,
        status: str,
        at: datetime,
        direction: str = "outbound-api",
        mss: str | None = None,
    ) -> dict[str, Any]:
        return {
            "sid": sid,
            "account_sid": ACCOUNT,
            "to": to,
            "from": from_,
            "body": body,
            "status": status,
            "direction": direction,
            "error_code": None,
            "error_message": None,
            "messaging_service_sid": mss,
            "date_created": rfc2822(at),
            "date_sent": rfc2822(at),
            "date_updated": rfc2822(at),
            "num_segments": "1",
            "num_media": "0",
            "price": None,
            "price_unit": "USD",
            "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}.json",
            "subresource_uris": {},
        }

    def _send_json(self, h: BaseHTTPRequestHandler, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _error(self, h: BaseHTTPRequestHandler, status: int, code: int, message: str) -> None:
        self._send_json(
            h,
            status,
            {
                "code": code,
                "message": message,
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            },
        )

    def _handle(self, h: BaseHTTPRequestHandler, verb: str) -> None:
        import base64

        auth = h.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
        if auth != expected:
            self._error(h, 401, 20003, "Authenticate")
            return
        url = urlparse(h.path)
        parts = url.path.strip("/").split("/")  # 2010-04-01 Accounts AC.. Messages[.json|/SID.json]
        if len(parts) < 4 or parts[0] != "2010-04-01" or parts[2] != ACCOUNT:
            self._error(h, 404, 20404, "The requested resource was not found")
            return
        resource = parts[3]
        if verb == "POST" and resource in ("Messages.json", "Calls.json"):
            length = int(h.headers.get("Content-Length", "0"))
            raw = h.rfile.read(length)
            if len(raw) < length:  # the client died mid-request: like Twilio, create nothing
                return
            form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
            self._create(h, "message" if resource == "Messages.json" else "call", form)
        elif verb == "GET" and resource in ("Messages.json", "Calls.json"):
            self._list(
                h,
                "messages" if resource == "Messages.json" else "calls",
                {k: v[0] for k, v in parse_qs(url.query).items()},
            )
        elif verb == "GET" and len(parts) == 5 and resource in ("Messages", "Calls"):
            sid = parts[4].removesuffix(".json")
            store = self.messages if resource == "Messages" else self.calls
            with self.lock:
                item = dict(store[sid]) if sid in store else None
            if item is None:
                self._error(h, 404, 20404, f"The requested resource /{resource}/{sid}.json was not found")
            else:
                self._send_json(h, 200, item)
        else:
            self._error(h, 405, 20004, "Method not allowed")

    def _create(self, h: BaseHTTPRequestHandler, kind: str, form: dict[str, str]) -> None:
        import random

        with self.lock:
            self.create_requests.append(dict(form, _kind=kind))
            fault = self.faults.pop(0) if self.faults else None
            if fault is None and self.fault_rates:
                rnd = getattr(self, "_rnd", None) or random.Random(self.seed)
                self._rnd = rnd
                roll = rnd.random()
                for name, rate in self.fault_rates.items():
                    if roll < rate:
                        fault = name
                        break
                    roll -= rate
        if self.delay:
            time.sleep(self.delay)
        if fault == "slow":
            time.sleep(self.hang_seconds / 3)
            fault = None
        to = form.get("To", "")
        if fault in ("429", "500", "503"):
            status = int(fault)
            self._error(
                h,
                status,
                20429 if status == 429 else 20500,
                "Too Many Requests" if status == 429 else "Internal Server Error",
            )
            return
        if fault == "reset":
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            h.connection.close()
            return
        if kind == "message" and to in ERRORS:
            status, code, message = ERRORS[to]
            self._error(h, status, code, message)
            return
        if kind == "call" and to == "+15005550001":
            self._error(h, 400, 21211, "The 'To' number is not a valid phone number.")
            return
        now = datetime.now(UTC)
        if kind == "message":
            sid = "SM" + secrets.token_hex(16)
            item = self._message(
                sid, to, form.get("From", ""), form.get("Body", ""), "queued", now, mss=form.get("MessagingServiceSid")
            )
            with self.lock:
                self.messages[sid] = item
        else:
            sid = "CA" + secrets.token_hex(16)
            item = {
                "sid": sid,
                "account_sid": ACCOUNT,
                "to": to,
                "from": form.get("From", ""),
                "status": "queued",
                "direction": "outbound-api",
                "start_time": None,
                "date_created": rfc2822(now),
                "twiml": form.get("Twiml"),
                "uri": f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{sid}.json",
                "subresource_uris": {},
            }
            with self.lock:
                self.calls[sid] = item
        if fault == "hang":
            time.sleep(self.hang_seconds)  # accepted, but the client gives up before the answer
        try:
            self._send_json(h, 201, item)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _list(self, h: BaseHTTPRequestHandler, key: str, q: dict[str, str]) -> None:
        store = self.messages if key == "messages" else self.calls
        with self.lock:
            items = [dict(v) for v in store.values()]
        if "To" in q:
            items = [i for i in items if i["to"] == q["To"]]
        if "From" in q:
            items = [i for i in items if i["from"] == q["From"]]
        for fld in ("DateSent>", "StartTime>"):
            if fld in q:  # Twilio compares dates (day granularity)
                day = q[fld][:10]
                items = [i for i in items if _day(i.get("date_sent") or i.get("date_created")) >= day]
        items.sort(key=lambda i: i.get("date_created") or "", reverse=True)
        size = int(q.get("PageSize", "50"))
        self._send_json(
            h,
            200,
            {
                key: items[:size],
                "end": max(0, min(len(items), size) - 1),
                "first_page_uri": h.path,
                "next_page_uri": None,
                "page": 0,
                "page_size": size,
                "previous_page_uri": None,
                "start": 0,
                "uri": h.path,
            },
        )


def _day(rfc: str | None) -> str:
    if not rfc:
        return ""
    from email.utils import parsedate_to_datetime

    return parsedate_to_datetime(rfc).astimezone(UTC).strftime("%Y-%m-%d")
