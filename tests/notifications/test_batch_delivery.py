"""An account run's notices are delivered together: one transaction, one mail connection, one UPDATE."""

from __future__ import annotations

from unittest import mock

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext

from notifications import services, tasks
from notifications.models import Notice
from notifications.services import notice_send, notices_deliver
from tests.factories import BillingAccountFactory

pytestmark = pytest.mark.django_db


def _receipts(n: int, *, language: str = "en") -> list[Notice]:
    account = BillingAccountFactory(language=language)
    notices = [
        notice_send(
            account=account,
            kind="payment_received",
            dedupe_key=f"payment_received:test:{account.pk}:{i}",
            context={"invoice": f"INV-{i}", "amount": "€ 18.00", "method": "Visa ending in 4242"},
        )
        for i in range(n)
    ]
    assert all(notices)
    return [n for n in notices if n is not None]


def test_every_queued_notice_is_sent_once_and_marked_sent():
    notices = _receipts(3)
    mail.outbox.clear()
    assert notices_deliver(notice_ids=[n.pk for n in notices]) == []
    assert len(mail.outbox) == 3
    assert {m.subject for m in mail.outbox} == {n.subject for n in notices}
    assert set(Notice.objects.values_list("status", flat=True)) == {Notice.Status.SENT}
    assert all(Notice.objects.values_list("sent_at", flat=True))
    # Delivered again (a redelivered task): nothing is sent twice.
    assert notices_deliver(notice_ids=[n.pk for n in notices]) == []
    assert len(mail.outbox) == 3


def test_the_cost_does_not_grow_with_the_notices():
    def statements(n: int) -> int:
        ids = [x.pk for x in _receipts(n)]
        with CaptureQueriesContext(connection) as captured:
            notices_deliver(notice_ids=ids)
        return len(captured.captured_queries)

    one, five = statements(1), statements(5)
    assert one == five
    # The test's own transaction makes the block a savepoint: SAVEPOINT, SELECT … FOR UPDATE, UPDATE, RELEASE.
    assert five <= 4


def test_a_notice_that_fails_is_marked_failed_and_retried_alone_while_the_others_go_out():
    notices = _receipts(3)
    broken = notices[1]
    real = services._notice_message

    def message(*, notice: Notice, context=None):
        if notice.pk == broken.pk:
            raise OSError("mail server said no")
        return real(notice=notice, context=context)

    mail.outbox.clear()
    with (
        mock.patch.object(services, "_notice_message", message),
        mock.patch.object(tasks.deliver_notice, "delay") as retry,
    ):
        tasks.deliver_notices([n.pk for n in notices])
    retry.assert_called_once_with(broken.pk)
    assert len(mail.outbox) == 2
    statuses = dict(Notice.objects.values_list("pk", "status"))
    assert statuses == {
        notices[0].pk: Notice.Status.SENT,
        broken.pk: Notice.Status.FAILED,
        notices[2].pk: Notice.Status.SENT,
    }
    assert "mail server said no" in Notice.objects.get(pk=broken.pk).error


def test_a_batch_that_breaks_as_a_whole_hands_every_notice_to_its_own_retries():
    notices = _receipts(2)
    with (
        mock.patch.object(services, "notices_deliver", side_effect=OSError("connection refused")),
        mock.patch.object(tasks, "notices_deliver", side_effect=OSError("connection refused")),
        mock.patch.object(tasks.deliver_notice, "delay") as retry,
    ):
        tasks.deliver_notices([n.pk for n in notices])
    assert [c.args for c in retry.call_args_list] == [(notices[0].pk,), (notices[1].pk,)]
    assert set(Notice.objects.values_list("status", flat=True)) == {Notice.Status.QUEUED}


def test_a_dutch_account_gets_its_mail_in_dutch():
    (notice,) = _receipts(1, language="nl")
    mail.outbox.clear()
    notices_deliver(notice_ids=[notice.pk])
    (sent,) = mail.outbox
    assert sent.subject == notice.subject
    assert "Betaling" in sent.body or "betaling" in sent.body
