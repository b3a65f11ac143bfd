"""The retention step after a cancellation, payments' side: deleting a cancelled subscription's data also
forgets the card that only it still used (PRODUCT.md flow 7). It lives here, not in subscriptions, because
payment methods are payments' rows and subscriptions sits below payments."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import transaction

from audit.services import audit_record
from subscriptions.models import Subscription
from subscriptions.services import subscription_delete, subscription_method_in_use

from .models import PaymentMethod


@transaction.atomic
def subscription_delete_data(
    *, subscription_id: int, at: dt.datetime
) -> tuple[Subscription, list[tuple[str, str]]]:
    """cancelled → deleted (`subscriptions.services.subscription_delete`). Invoices are kept (they are the
    account's books). The payment methods that only this subscription still used are detached: marked
    removed and their gateway token forgotten here. Returns the subscription and the (gateway, token) pairs
    the caller should detach at the gateway after commit. Idempotent for a subscription that is already
    deleted.
    """
    sub, method_id, deleted = subscription_delete(subscription_id=subscription_id, at=at)
    if not deleted:
        return sub, []
    detached: list[tuple[str, str]] = []
    if method_id is not None:
        still_used = subscription_method_in_use(method_id=method_id)
        method = PaymentMethod.objects.select_for_update().get(pk=method_id)
        if not still_used and method.status != PaymentMethod.Status.DETACHED:
            detached.append((method.gateway, method.gateway_token))
            method.status = PaymentMethod.Status.DETACHED
            method.is_default = False
            # Forget the token; the unique (gateway, token) pair stays unique per row.
            method.gateway_token = f"detached:{method.pk}"
            method.save(update_fields=["status", "is_default", "gateway_token"])
    audit_record(
        account=sub.account,
        actor_label="billing",
        action="subscription.data_deleted",
        message=f"{sub.product.name}: data deleted {settings.BILLING_DATA_RETENTION_AFTER_CANCEL.days} days "
        f"after cancellation; {len(detached)} payment method(s) removed, invoices kept",
        target=sub,
    )
    return sub, detached
