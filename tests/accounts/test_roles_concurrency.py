"""Concurrent role changes on PostgreSQL: the account row lock keeps exactly one owner, one invitation."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from accounts.models import Invitation, Membership, Role
from accounts.services import RoleChangeError, invitation_create, membership_role_change
from tests.factories import MembershipFactory
from tests.pages_helpers import account_with_subscriptions

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _run_at_once(funcs) -> list[str]:
    barrier = threading.Barrier(len(funcs))
    outcomes: list[str] = []
    lock = threading.Lock()

    def run(func) -> None:
        try:
            barrier.wait()
            func()
            result = "ok"
        except Exception as exc:  # each outcome is recorded and asserted below
            result = type(exc).__name__
        finally:
            connections.close_all()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=run, args=(f,)) for f in funcs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(outcomes)


def _skip_without_row_locks() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL row locks (SELECT … FOR UPDATE); SQLite serialises writers instead")


def test_two_hand_overs_at_once_leave_exactly_one_owner():
    _skip_without_row_locks()
    account, users = account_with_subscriptions(1)
    admin = Membership.objects.get(account=account, role=Role.ADMIN)
    reader = Membership.objects.get(account=account, role=Role.READER)
    owner = users["owner"]
    outcomes = _run_at_once(
        [
            lambda: membership_role_change(
                account_id=account.pk, actor=owner, membership_id=admin.pk, role=Role.OWNER
            ),
            lambda: membership_role_change(
                account_id=account.pk, actor=owner, membership_id=reader.pk, role=Role.OWNER
            ),
        ]
    )
    # The first hand-over wins; the second finds its actor is no longer the owner.
    assert outcomes == ["PermissionDenied", "ok"]
    assert Membership.objects.filter(account=account, role=Role.OWNER).count() == 1
    assert Membership.objects.get(account=account, user=owner).role == Role.ADMIN


def test_ten_identical_invites_at_once_make_one_invitation():
    _skip_without_row_locks()
    account, users = account_with_subscriptions(1)
    outcomes = _run_at_once(
        [
            lambda: invitation_create(
                account_id=account.pk, actor=users["owner"], email="new@example.test", role=Role.READER
            )
            for _ in range(10)
        ]
    )
    assert outcomes == ["ok"] * 10
    assert Invitation.objects.filter(account=account).count() == 1


def test_owner_swap_between_two_members_keeps_the_constraint():
    """Demote-then-promote in one transaction: the partial unique index never sees two owners."""
    _skip_without_row_locks()
    account, users = account_with_subscriptions(1)
    extra = MembershipFactory(account=account, role=Role.INVOICE_MANAGER)
    membership_role_change(
        account_id=account.pk, actor=users["owner"], membership_id=extra.pk, role=Role.OWNER
    )
    with pytest.raises(RoleChangeError):
        membership_role_change(
            account_id=account.pk,
            actor=extra.user,
            membership_id=Membership.objects.get(account=account, user=extra.user).pk,
            role=Role.READER,
        )
    assert list(
        Membership.objects.filter(account=account, role=Role.OWNER).values_list("user", flat=True)
    ) == [extra.user_id]
