"""Moving money. Every entry point takes the billing account's lock first (see docs/ARCHITECTURE.md)."""

from __future__ import annotations

from django.db import transaction

from accounts.models import BillingAccount


def account_lock(*, account_id: int) -> BillingAccount:
    """Lock the billing account row until the surrounding transaction ends.

    Every payment entry point (Settle balance, Pay now, renewals, retries, support actions, webhooks)
    takes this lock before it reads what is unpaid, so two of them can never pay the same invoice.
    On SQLite, which has no row locks, IMMEDIATE transactions serialise writers instead.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("account_lock() must be called inside transaction.atomic()")
    return BillingAccount.objects.select_for_update().get(pk=account_id)
