from __future__ import annotations

from typing import Any

from .models import AuditEvent


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
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    return AuditEvent.objects.create(
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
