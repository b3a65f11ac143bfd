"""Every URL, every form field, every role, with hostile values: never a 5xx, never a changed balance.

The URLs come from the resolver, so a new page is covered the day it is added; its form fields come from
the page's own HTML (every `name=` of an input, select or textarea), so a new field is too. Path converters
are filled with ids of the seeded demo (so the view really runs) and with hostile values. Values come
from one table and are spread over the roles, so each URL sees every value once per run without the
run growing with roles × values (it stays well under a minute on SQLite).

The money tables are checksummed after every POST: a hostile request that changed anything fails with
the request that did it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from accounts.models import BillingAccount, Membership, User
from gateway_sim.models import SimCard, SimCharge
from payments.models import PaymentAllocation, PaymentAttempt, PaymentMethod
from subscriptions.models import Invoice, Subscription
from tests.pages_helpers import seed_demo

pytestmark = pytest.mark.django_db(transaction=False)

SCRIPT = "<script>alert(1)</script>"
# One table of hostile values: Unicode digits, NUL, very long, negative, huge, markup, and look-alikes.
HOSTILE = [
    "²",
    "٣",
    "1\x00",
    "x" * 10_000,
    "-1",
    "99999999999999999999999",
    SCRIPT,
    "0",
    " 1 ",
    "new\x00",
    "1e9",
    "%s%s%n",
]
# Values for path segments: the converter must refuse them (404) or the view must find nothing (404).
HOSTILE_PATH = ["%00", "%C2%B2", "-1", "0", "9" * 25, "999999999999999999", "x" * 300, "%3Cscript%3E"]
# Query parameters the portal reads somewhere; each GET sets all of them at once.
QUERY_PARAMS = ["page", "method", "attempt", "q", "status", "issued_from", "issued_to", "next"]
# Django's admin is Django's own and staff-only; its index is enough to know the shell around it works.
SKIP_PREFIXES = ("django-admin/",)
# Sign-out ends the session the rest of the run needs; it is posted once at the very end.
SIGN_OUT = "sign-out/"
# Actions that take no input at all: the POST with every field missing is the valid request, and it may
# change state (that is what the button is for). Hostile values sent to them still must change nothing.
NO_INPUT_ACTIONS = {"a/{account_id}/billing/payment-methods/{method_id}/make-active/"}

ROLES = ["owner", "admin", "reader", "outsider", "anonymous", "support"]
ROLE_EMAILS = {
    "owner": "admin@contoso.example",
    "admin": "finance@contoso.example",
    "reader": "reader@contoso.example",
    "outsider": "admin@fabrikam.example",
    "support": "support@billing.example",
}
FIELD_NAME_RE = re.compile(r"<(?:input|select|textarea)\b[^>]*\bname=\"([^\"]+)\"", re.I)


@dataclass(frozen=True)
class Route:
    template: str  # "a/{account_id}/billing/invoices/{number}/"
    params: tuple[tuple[str, str], ...]  # (name, converter) in order


def _routes() -> list[Route]:
    """Every pattern of the URLconf as a path template with its converters, from the resolver itself."""
    found: list[Route] = []

    def walk(patterns: list[Any], prefix: str, params: tuple[tuple[str, str], ...]) -> None:
        for p in patterns:
            route = str(p.pattern)
            converters = getattr(p.pattern, "converters", {})
            parts = re.findall(r"<(?:(\w+):)?(\w+)>", route)
            here = tuple((name, conv or "str") for conv, name in parts)
            template = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route).lstrip("^").rstrip("$")
            if (prefix + template).startswith(SKIP_PREFIXES):
                continue
            assert set(converters) >= {n for n, _ in here}, route
            if isinstance(p, URLResolver):
                walk(p.url_patterns, prefix + template, params + here)
            elif isinstance(p, URLPattern):
                found.append(Route(prefix + template, params + here))

    walk(get_resolver().url_patterns, "", ())
    routes = [r for r in found if not r.template.startswith(SKIP_PREFIXES)]
    routes.append(Route("django-admin/", ()))
    return routes


def _checksum() -> str:
    """Row counts and contents of the tables that hold money, methods and settings."""
    parts: list[str] = []
    for model, fields in (
        (Invoice, ["id", "status", "amount_due_minor", "total_minor", "attempt_count", "paid_at"]),
        (Subscription, ["id", "status", "payment_method_id", "grace_ends_at", "quantity"]),
        (PaymentAttempt, ["id", "status", "amount_minor"]),
        (PaymentAllocation, ["id", "amount_minor"]),
        (PaymentMethod, ["id", "status", "exp_month", "exp_year", "is_default", "last_decline_code"]),
        (SimCard, ["id", "exp_month", "exp_year"]),
        (SimCharge, ["id", "status", "amount_minor"]),
        (BillingAccount, ["id", "language", "notification_email", "attach_pdf", "payment_mode"]),
        (Membership, ["id", "role"]),
    ):
        available = [f for f in fields if f in {x.attname for x in model._meta.concrete_fields}]
        rows = list(model.objects.order_by("pk").values_list(*available))
        parts.append(f"{model.__name__}:{len(rows)}:{rows!r}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


@dataclass
class World:
    ids: dict[str, str]
    users: dict[str, User]


def _world() -> World:
    seed_demo()
    contoso = BillingAccount.objects.get(domain="contoso.example")
    declined = PaymentMethod.objects.filter(account=contoso, status=PaymentMethod.Status.DECLINED).first()
    assert declined is not None
    attempt = PaymentAttempt.objects.filter(account=contoso).order_by("pk").first()
    assert attempt is not None
    invoice = Invoice.objects.filter(account=contoso, status=Invoice.Status.PAST_DUE).order_by("pk").first()
    assert invoice is not None
    card = SimCard.objects.order_by("pk").first()
    assert card is not None
    charge = SimCharge.objects.create(
        reference="sim_ch_fuzz3ds",
        idempotency_key="fuzz-3ds",
        card=card,
        amount_minor=1000,
        currency="EUR",
        status=SimCharge.Status.REQUIRES_ACTION,
        return_url="/",
    )
    assert invoice.subscription_id is not None
    ids = {
        "account_id": str(contoso.pk),
        "method_id": str(declined.pk),
        "failed_method_id": str(declined.pk),
        "attempt_id": str(attempt.pk),
        "subscription_id": str(invoice.subscription_id),
        "number": invoice.number,
        "reference": charge.reference,
    }
    users = {role: User.objects.get(email=email) for role, email in ROLE_EMAILS.items()}
    return World(ids=ids, users=users)


def _path(route: Route, fill: dict[str, str]) -> str:
    return "/" + route.template.format(**fill)


def _requests(route: Route, world: World, role_index: int) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(method, path, data) for one route and one role: valid ids with hostile query values, hostile ids."""
    valid = {name: world.ids.get(name, "1") for name, _ in route.params}
    path = _path(route, valid)
    yield "GET", path, {}
    # This role's share of the table: every value reaches every route once over the six roles.
    for value in _share(HOSTILE, role_index):
        yield "GET", path, dict.fromkeys(QUERY_PARAMS, value)
    for name, _ in route.params:
        for j, bad in enumerate(HOSTILE_PATH):
            if j % len(ROLES) == role_index or role_index in (0, 4):  # owner and anonymous see them all
                yield "GET" if j % 2 else "POST", _path(route, {**valid, name: bad}), {}


def _form_fields(html: str) -> list[str]:
    names = {n for n in FIELD_NAME_RE.findall(html) if n != "csrfmiddlewaretoken"}
    return sorted(names)


def _body(response: Any) -> str:
    """The response's text; a streamed one (the CSV export) is read to its end, which is where it fails."""
    raw = b"".join(response.streaming_content) if response.streaming else response.content
    return raw.decode("utf-8", "replace") if raw else ""


def _assert_sane(response: Any, what: str) -> None:
    assert response.status_code < 500, f"{what} → {response.status_code}"
    body = _body(response)
    assert SCRIPT not in body, f"{what} reflects unescaped markup"
    assert "URLconf defined in" not in body, f"{what} shows Django's debug 404"


def _client(world: World, role: str) -> Client:
    client = Client(raise_request_exception=False)
    if role != "anonymous":
        client.force_login(world.users[role])
    return client


def _share(values: list[str], role_index: int) -> list[str]:
    """This role's share of a table: over the six roles every value reaches every route once."""
    return [v for i, v in enumerate(values) if i % len(ROLES) == role_index]


def test_every_url_every_field_every_role_hostile_values_no_5xx_no_change():
    world = _world()
    routes = _routes()
    # The URLconf is really walked: customer, payments, support and gateway pages are all there.
    templates = {r.template for r in routes}
    assert {
        "a/{account_id}/billing/settle/{failed_method_id}/",
        "support/",
        "gateway/simulated/3ds/{reference}/",
    } <= templates
    before = _checksum()
    counted = 0
    for role_index, role in enumerate(ROLES):
        client = _client(world, role)
        seen_fields: set[str] = set()  # POST-only URLs (support actions, expiry) get every field seen so far
        for route in routes:
            if route.template == SIGN_OUT:
                continue
            fields: set[str] = set()
            for method, path, data in _requests(route, world, role_index):
                what = f"{role} {method} {path} {sorted(data)[:3]}"
                if method == "GET":
                    response = client.get(path, data)
                    if (
                        not data
                        and response.status_code == 200
                        and "text/html" in response.get("Content-Type", "")
                        and not response.streaming
                    ):
                        fields |= set(_form_fields(response.content.decode()))
                else:
                    response = client.post(path, data)
                _assert_sane(response, what)
                counted += 1
            path = _path(route, {name: world.ids.get(name, "1") for name, _ in route.params})
            posts: list[dict[str, str]] = [{}]  # every field missing
            seen_fields |= fields
            posts += [dict.fromkeys(fields or seen_fields, value) for value in _share(HOSTILE, role_index)]
            # One field at a time hostile while the others are missing: a field checked only when alone.
            posts += [
                {name: HOSTILE[(k + role_index) % len(HOSTILE)]} for k, name in enumerate(sorted(fields))
            ]
            for data in posts:
                response = client.post(path, data)
                what = f"{role} POST {path} {sorted(data)[:4]}={next(iter(data.values()), '')[:20]!r}"
                _assert_sane(response, what)
                counted += 1
                if not data and route.template in NO_INPUT_ACTIONS:
                    before = _checksum()  # the action itself ran; what follows must change nothing more
                    continue
                assert _checksum() == before, f"state changed by {what}"
    # Last, sign-out with hostile values: it may end the session, never fail.
    for value in HOSTILE[:3]:
        _assert_sane(_client(world, "owner").post("/" + SIGN_OUT, {"next": value}), "sign-out")
    assert _checksum() == before
    assert counted > 500, counted


def test_with_debug_on_errors_are_still_the_branded_pages(settings):
    """`make run` has DEBUG on: a foreign id, an unknown URL or a NUL never shows Django's debug pages."""
    settings.DEBUG = True
    world = _world()
    account = world.ids["account_id"]
    outsider = _client(world, "outsider")
    reader = _client(world, "reader")
    cases = [
        (outsider, f"/a/{account}/billing/invoices/", 404),
        (outsider, "/no/such/page/", 404),
        (_client(world, "anonymous"), "/gateway/simulated/3ds/%00/", 404),
        (outsider, f"/a/{account}/billing/invoices/%00/", 404),
        (reader, f"/a/{account}/billing/payment-methods/add/", 403),
    ]
    for client, path, status in cases:
        response = client.get(path)
        assert response.status_code == status, path
        _assert_sane(response, path)
        assert 'id="shell"' in response.content.decode(), path


def test_the_fuzzer_sees_the_forms_it_claims_to_fill(client):
    """The field scraper finds the settle pane's fields (so a POST sweep is not a sweep of nothing)."""
    world = _world()
    client.force_login(world.users["owner"])
    html = client.get(f"/a/{world.ids['account_id']}/billing/settle/{world.ids['failed_method_id']}/").content
    assert {"method", "form_key", "number", "exp_month", "cvc"} <= set(_form_fields(html.decode()))
