from __future__ import annotations

from typing import Any

from billing_portal.batch import WriteBatch

from .models import AuditEvent


def audit_event(
    *,
    action: str,
    message: str,
    account: Any = None,
    actor: Any = None,
    actor_label: str = "",
    target: Any = None,
    data: dict[str, Any] | None = None,
    ip_address: str | None = None,
) -> AuditEvent:
    """One entry of the audit trail, not saved yet: audit_record() saves it at once, audits_record() saves
    several in one INSERT."""
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    return AuditEvent(
        account=account,
        actor=actor,
        actor_label=actor_label or (actor.email if actor else ""),
        action=action,
        message=message[:500],
        target_type=type(target).__name__ if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        data=data or {},
        ip_address=ip_address,
    )


def audit_record(
    *,
    action: str,
    message: str,
    account: Any = None,
    actor: Any = None,
    actor_label: str = "",
    target: Any = None,
    data: dict[str, Any] | None = None,
    ip_address: str | None = None,
) -> AuditEvent:
    """Append one entry to the audit trail. Call it inside the transaction that made the change."""
    event = audit_event(
        action=action,
        message=message,
        account=account,
        actor=actor,
        actor_label=actor_label,
        target=target,
        data=data,
        ip_address=ip_address,
    )
    event.save(force_insert=True)
    return event


def audits_record(events: list[AuditEvent], *, writes: WriteBatch | None = None) -> list[AuditEvent]:
    """Append several entries (built with audit_event) in ONE statement, in their order. Same rule as
    audit_record: inside the transaction that made the changes they describe. With `writes`, the INSERT
    joins the caller's batch (billing_portal.batch) and is sent when the caller executes it."""
    if not events:
        return []
    if writes is not None:
        writes.insert(events, returning=True)  # their ids, as bulk_create sets them
        return events
    return AuditEvent.objects.bulk_create(events)
