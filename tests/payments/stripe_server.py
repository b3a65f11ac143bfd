"""A tiny local HTTP server that answers the Stripe SDK with Stripe's JSON shapes (never the network).

Card behaviour follows the payment method id in the request, after Stripe's test payment methods:
pm_card_visa / pm_card_mastercard succeed, pm_card_chargeDeclined is declined,
pm_card_authenticationRequired needs the customer (off-session), pm_card_threeDSecure2Required asks
for 3-D Secure, pm_card_timeout charges but never answers, pm_card_lost never arrives.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlparse

from tests.payments import stripe_contract

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


class FakeStripe:
    def __init__(self) -> None:
        self.setup_intent_customers: dict[str, str] = {}
        self.setup_intents: dict[str, dict] = {}
        self.detached: list[str] = []
        self.refunds: dict[str, dict] = {}
        self.intents: dict[str, dict] = {}
        self.by_idempotency_key: dict[str, tuple[int, dict]] = {}
        self.requests: list[tuple[str, str, dict, dict]] = []
        # Every refused parameter, as (SDK method, violation): the contract check's findings.
        self.violations: list[tuple[str, stripe_contract.Violation]] = []
        self.counter = itertools.count(1)
        stripe_contract.routes()  # read the SDK now, before any test patches a service method
        self.lock = threading.Lock()

    @property
    def creates(self) -> list[dict]:
        return [
            body
            for method, path, body, _h in self.requests
            if method == "POST" and path == "/v1/payment_intents"
        ]

    def _new_intent(self, body: dict, template: str) -> dict:
        intent = fixture(template)
        intent["id"] = f"pi_fake{next(self.counter):06d}"
        intent["amount"] = int(body["amount"])
        intent["currency"] = body["currency"]
        intent["metadata"] = body.get("metadata", {})
        intent["payment_method"] = body.get("payment_method")
        self.intents[intent["id"]] = intent
        return intent

    def handle(self, method: str, path: str, body: dict, headers: dict) -> tuple[int, dict] | None:
        """Returns (status, json) or None to drop the connection without answering."""
        self.requests.append((method, path, body, headers))
        # Like Stripe: a request the pinned API version does not define is refused before anything
        # happens (and before its idempotency key is remembered).
        route = stripe_contract.route_for(method, path)
        if route is None:
            unknown = stripe_contract.Violation(
                "resource_missing", path, f"Unrecognized request URL ({method}: {path})"
            )
            self.violations.append(("(no SDK method)", unknown))
            return 404, unknown.as_stripe_error()
        violations = stripe_contract.check(route.params, body)
        if violations:
            self.violations.extend((route.sdk_method, v) for v in violations)
            return 400, violations[0].as_stripe_error()
        if headers.get("authorization") == "Bearer sk_test_revoked":
            return 401, {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}}
        if body.get("payment_method") == "pm_card_rateLimited":
            return 429, _invalid("rate_limit", "Too many requests hit the API too quickly.")
        if body.get("payment_method") == "pm_card_keyReused":
            return 400, {
                "error": {
                    "type": "idempotency_error",
                    "message": "Keys for idempotent requests can only be used with the same parameters.",
                }
            }
        key = headers.get("idempotency-key")
        if method == "POST" and key and key in self.by_idempotency_key:
            return self.by_idempotency_key[key]
        answer = self._route(method, path, body)
        if method == "POST" and key and answer is not None:
            self.by_idempotency_key[key] = answer
        return answer

    def _route(self, method: str, path: str, body: dict) -> tuple[int, dict] | None:
        if method == "POST" and path == "/v1/payment_intents":
            pm = body.get("payment_method", "")
            if pm == "pm_card_lost":
                return None
            if pm == "pm_card_missing":  # a well-formed request Stripe still refuses: 400, not a card error
                return 400, _invalid(
                    "resource_missing", f"No such PaymentMethod: '{pm}'", param="payment_method"
                )
            if pm == "pm_card_chargeDeclined":
                return 402, fixture("error_card_declined")
            if pm == "pm_card_authenticationRequired" and body.get("off_session") == "true":
                return 402, fixture("error_authentication_required")
            if pm == "pm_card_threeDSecure2Required" and body.get("off_session") != "true":
                return 200, self._new_intent(body, "payment_intent_requires_action")
            intent = self._new_intent(body, "payment_intent_succeeded")
            if pm == "pm_card_timeout":
                return None  # charged, but the answer never leaves the building
            return 200, intent
        if method == "GET" and path == "/v1/payment_intents/search":
            wanted = re.search(r"metadata\['idempotency_key'\]:'([^']+)'", body.get("query", ""))
            data = [
                i
                for i in self.intents.values()
                if wanted and i["metadata"].get("idempotency_key") == wanted[1]
            ]
            return 200, {"object": "search_result", "data": data, "has_more": False, "url": path}
        match = re.fullmatch(r"/v1/payment_intents/(\w+)(/cancel)?", path)
        if match:
            found = self.intents.get(match[1])
            if found is None:
                return 404, {
                    "error": {
                        "type": "invalid_request_error",
                        "code": "resource_missing",
                        "message": "No such payment_intent",
                    }
                }
            intent = found
            if match[2]:
                if intent["status"] not in ("requires_action", "requires_payment_method"):
                    return 400, {
                        "error": {
                            "type": "invalid_request_error",
                            "code": "payment_intent_unexpected_state",
                            "message": f"This PaymentIntent's status is {intent['status']}.",
                        }
                    }
                intent["status"] = "canceled"
                intent["next_action"] = None
            return 200, intent
        match = re.fullmatch(r"/v1/payment_methods/(\w+)/detach", path)
        if match and method == "POST":
            if match[1] in self.detached:
                return 400, _invalid(
                    "payment_method_unexpected_state", "The payment method is not attached to a customer."
                )
            self.detached.append(match[1])
            return 200, {"id": match[1], "object": "payment_method", "type": "card", "customer": None}
        if path == "/v1/refunds" and method == "POST":
            return self._refund(body)
        match = re.fullmatch(r"/v1/payment_methods/(\w+)", path)
        if match and method == "POST":
            card = body.get("card", {})
            return 200, {
                "id": match[1],
                "object": "payment_method",
                "type": "card",
                "card": {
                    "brand": "visa",
                    "last4": "4242",
                    "exp_month": int(card.get("exp_month", 1)),
                    "exp_year": int(card.get("exp_year", 2030)),
                },
            }
        if path == "/v1/customers" and method == "POST":
            return 200, {
                "id": f"cus_fake{next(self.counter):06d}",
                "object": "customer",
                "name": body.get("name"),
            }
        if path == "/v1/setup_intents" and method == "POST":
            intent = fixture("setup_intent_succeeded")
            if self.setup_intent_customers:  # the first keeps the fixture's id; later ones are new
                intent["id"] = f"seti_fake{next(self.counter):06d}"
                intent["client_secret"] = f"{intent['id']}_secret_fake"
            intent["status"] = "requires_payment_method"
            intent["payment_method"] = None
            # Like Stripe, the intent belongs to the customer it was created for.
            intent["customer"] = body.get("customer") or intent["customer"]
            self.setup_intent_customers[intent["id"]] = intent["customer"]
            self.setup_intents[intent["id"]] = intent
            return 200, intent
        match = re.fullmatch(r"/v1/setup_intents/(\w+)", path)
        if match:
            known = self.setup_intents.get(match[1])
            if known is not None and known["status"] != "succeeded":
                return 200, known
            intent = fixture("setup_intent_succeeded")
            if known is not None:
                intent.update(copy.deepcopy(known))
            intent["customer"] = self.setup_intent_customers.get(match.group(1), intent["customer"])
            intent["payment_method"]["customer"] = intent["customer"]
            if "payment_method" not in body.get("expand", []):
                intent["payment_method"] = intent["payment_method"]["id"]
            return 200, intent
        return 404, _invalid("resource_missing", f"The fake has no answer for {method} {path}")

    def _refund(self, body: dict) -> tuple[int, dict]:
        intent = self.intents.get(body.get("payment_intent", ""))
        if intent is None or intent["status"] != "succeeded":
            return 400, _invalid("resource_missing", "No such payment_intent", param="payment_intent")
        refunded = sum(r["amount"] for r in self.refunds.values() if r["payment_intent"] == intent["id"])
        amount = int(body.get("amount") or intent["amount"] - refunded)
        if amount + refunded > intent["amount"]:
            return 400, _invalid(
                "amount_too_large", "Refund amount is greater than unrefunded amount", param="amount"
            )
        refund = {
            "id": f"re_fake{next(self.counter):06d}",
            "object": "refund",
            "amount": amount,
            "currency": intent["currency"],
            "payment_intent": intent["id"],
            "charge": f"ch_{intent['id']}",
            "status": "succeeded",
            "metadata": body.get("metadata", {}),
            "created": 1795000000 + len(self.refunds),
        }
        self.refunds[refund["id"]] = refund
        return 200, refund

    # Test helpers
    def confirm_setup(self, setup_intent_id: str, *, payment_method: str = "pm_1QaNewCard0000001") -> dict:
        """What Stripe.js does in the browser: the customer's card is confirmed on the SetupIntent."""
        intent = self.setup_intents[setup_intent_id]
        intent["status"] = "succeeded"
        intent["payment_method"] = {
            **fixture("setup_intent_succeeded")["payment_method"],
            "id": payment_method,
        }
        return copy.deepcopy(intent)

    def authenticate(self, intent_id: str, *, success: bool) -> None:
        intent = self.intents[intent_id]
        intent["next_action"] = None
        if success:
            intent["status"] = "succeeded"
        else:
            intent["status"] = "requires_payment_method"
            intent["last_payment_error"] = {
                "code": "payment_intent_authentication_failure",
                "type": "card_error",
            }

    def intent_copy(self, intent_id: str) -> dict:
        return copy.deepcopy(self.intents[intent_id])


def _invalid(code: str, message: str, *, param: str = "") -> dict:
    error = {"type": "invalid_request_error", "code": code, "message": message}
    if param:
        error["param"] = param
    return {"error": error}


def serve(fake: FakeStripe) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _do(self) -> None:
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode() if length else ""
            pairs = parse_qsl(raw or url.query, keep_blank_values=True)
            with fake.lock:
                answer = fake.handle(
                    self.command,
                    url.path,
                    stripe_contract.decode_form(pairs),
                    {k.lower(): v for k, v in self.headers.items()},
                )
            if answer is None:
                self.close_connection = True
                self.connection.shutdown(2)
                return
            status, payload = answer
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Request-Id", "req_fake")
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _do

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
