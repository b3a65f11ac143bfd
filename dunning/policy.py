"""The decline-code policy as the engine reads it: the DeclineCode table behind a short-lived
process cache, the category fallback for codes without a row, and the timing settings.

The payment gateways' classify_decline() and decline_message() read through here (registered in
DunningConfig.ready()), so the operator's table is the one source of categories and messages.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.db.models.signals import post_delete, post_save

from payments.gateways.base import DeclineCategory, fallback_decline_category

from .messages import customer_message
from .models import DeclineCode, RetryPolicy
from .recovery import PolicyName, RetryRule, Timing

CACHE_SECONDS = 60.0
_lock = threading.Lock()
_cache: tuple[float, dict[str, DeclineEntry]] | None = None

FALLBACK_MESSAGE = {
    DeclineCategory.SOFT: "generic",
    DeclineCategory.HARD: "generic",
    DeclineCategory.AUTHENTICATION_REQUIRED: "authenticate",
    DeclineCategory.UNKNOWN: "generic",
}
FALLBACK_ACTION = {
    DeclineCategory.SOFT: "none",
    DeclineCategory.HARD: "new_card",
    DeclineCategory.AUTHENTICATION_REQUIRED: "authenticate",
    DeclineCategory.UNKNOWN: "none",
}


@dataclass(frozen=True, slots=True)
class DeclineEntry:
    rule: RetryRule
    message: str  # a key of dunning.messages.CUSTOMER_MESSAGES
    visa_response_code: str = ""
    in_table: bool = True


def _normal(code: str) -> str:
    return (code or "").strip().lower()


def decline_table() -> dict[str, DeclineEntry]:
    """Every row of the table, read at most once a minute per process (and again after an edit here)."""
    global _cache
    now = time.monotonic()
    cached = _cache
    if cached is not None and cached[0] > now:
        return cached[1]
    with _lock:
        table = {
            row.code: DeclineEntry(
                rule=RetryRule(
                    code=row.code,
                    category=row.category,
                    visa_category=row.visa_category,
                    retry=row.retry,
                    retry_days=tuple(int(d) for d in row.retry_days or ()),
                    customer_action=row.customer_action,
                    waits_for_payday=row.waits_for_payday,
                ),
                message=row.customer_message,
                visa_response_code=row.visa_response_code,
            )
            for row in DeclineCode.objects.all()
        }
        _cache = (now + CACHE_SECONDS, table)
    return table


_generation = 0


def decline_table_clear(**_kwargs: object) -> None:
    global _cache, _generation
    _cache = None
    _generation += 1


def decline_table_generation() -> int:
    """Bumped by every clear: lets tests notice that a test edited the table."""
    return _generation


def decline_codes_ensure_defaults(**_kwargs: object) -> None:
    """Create the default rows that are missing (after migrate, and after a test database flush)."""
    import importlib

    defaults = importlib.import_module("dunning.migrations.0004_default_decline_codes").DEFAULTS
    have = set(DeclineCode.objects.values_list("code", flat=True))
    DeclineCode.objects.bulk_create(
        [
            DeclineCode(
                code=code,
                category=category,
                visa_category=visa,
                visa_response_code=visa_code,
                retry=retry,
                retry_days=days,
                waits_for_payday=payday,
                customer_action=action,
                customer_message=message,
                source=source,
            )
            for code, (
                category,
                visa,
                visa_code,
                retry,
                days,
                payday,
                action,
                message,
                source,
            ) in defaults.items()
            if code not in have
        ],
        ignore_conflicts=True,
    )
    decline_table_clear()


post_save.connect(decline_table_clear, sender=DeclineCode, dispatch_uid="dunning.decline_table.save")
post_delete.connect(decline_table_clear, sender=DeclineCode, dispatch_uid="dunning.decline_table.delete")


def category_days(category: str, policies: dict[str, RetryPolicy] | None) -> tuple[int, ...]:
    if policies and category in policies:
        return tuple(policies[category].days)
    return ()


def decline_entry(code: str, *, policies: dict[str, RetryPolicy] | None = None) -> DeclineEntry:
    """The policy of one decline code; a code without a row falls back to its category: the built-in
    category of the gateway module (or unknown) with that category's retry days."""
    code = _normal(code)
    entry = decline_table().get(code)
    if entry is not None:
        return entry
    category = fallback_decline_category(code)
    days = category_days(str(category), policies)
    return DeclineEntry(
        rule=RetryRule(
            code=code,
            category=str(category),
            retry=bool(days) and category in (DeclineCategory.SOFT, DeclineCategory.UNKNOWN),
            retry_days=days,
            customer_action=FALLBACK_ACTION[category],
        ),
        message=FALLBACK_MESSAGE[category],
        in_table=False,
    )


def classify(code: str) -> DeclineCategory:
    """classify_decline() backed by the table; codes without a row keep the module fallback."""
    entry = decline_table().get(_normal(code))
    if entry is None:
        return fallback_decline_category(code)
    return DeclineCategory(entry.rule.category)


def message_for(code: str) -> str | None:
    """decline_message() backed by the table: None for codes without a row (the module's own text)."""
    entry = decline_table().get(_normal(code))
    return customer_message(entry.message) if entry is not None else None


def active_policy() -> str:
    """Which policy schedules live retries (settings.DUNNING_RETRY_POLICY: "smart", "per_code" or "fixed")."""
    name = getattr(settings, "DUNNING_RETRY_POLICY", PolicyName.SMART)
    return name if name in (PolicyName.SMART, PolicyName.PER_CODE, PolicyName.FIXED) else PolicyName.SMART


def timing_from_settings() -> Timing:
    paydays = {
        country.upper(): tuple(int(d) for d in days)
        for country, days in getattr(settings, "DUNNING_PAYDAYS", {"": (-1, 1)}).items()
    }
    paydays.setdefault("", (-1, 1))
    return Timing(
        quiet_start=settings.DUNNING_QUIET_HOURS[0],
        quiet_end=settings.DUNNING_QUIET_HOURS[1],
        retry_hour=settings.DUNNING_RETRY_HOUR,
        paydays=paydays,
        timezones={k.upper(): v for k, v in settings.DUNNING_COUNTRY_TIMEZONES.items()},
        default_timezone=settings.TIME_ZONE,
    )
