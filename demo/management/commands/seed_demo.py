"""Create the demo data of PRODUCT.md. Running it again changes nothing that is already there."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from accounts.models import BillingAccount, Membership, Role, User
from billing_portal.dates import format_date
from payments.models import PaymentAllocation, PaymentAttempt, PaymentMethod
from subscriptions.models import Invoice, InvoiceLine, Product, Subscription

PASSWORD = "demo-pass-2026"

PRODUCTS = {
    "m365-business-standard": "Microsoft 365 Business Standard",
    "m365-business-basic": "Microsoft 365 Business Basic",
    "exchange-online-plan-1": "Exchange Online (Plan 1)",
    "power-bi-pro": "Power BI Pro",
    "visio-plan-2": "Visio Plan 2",
    "teams-essentials": "Microsoft Teams Essentials",
    "azure-plan": "Azure subscription",
}


@dataclass(frozen=True)
class DemoSub:
    product: str
    quantity: int
    unit_price_minor: int
    invoice_number: str
    # Days since the invoice fell due (negative: due in the future).
    days_past_due: int
    decline_code: str = ""


def _month_after(day: dt.date) -> dt.date:
    month = day.month % 12 + 1
    year = day.year + (day.month == 12)
    return dt.date(year, month, min(day.day, 28)) - dt.timedelta(days=1)


class Command(BaseCommand):
    help = "Create the demo billing accounts, users, cards, subscriptions and invoices (idempotent)."

    def handle(self, *args, **options) -> None:
        with transaction.atomic():
            created = self._seed()
        self.stdout.write(self.style.SUCCESS("Demo data ready." if created else "Demo data already present."))
        self.stdout.write(f"Sign in with any demo address and the password {PASSWORD}:")
        for email in (
            "admin@contoso.example",
            "finance@contoso.example",
            "reader@contoso.example",
            "admin@fabrikam.example",
            "admin@northwind.example",
            "support@billing.example",
            "root@billing.example",
        ):
            self.stdout.write(f"  {email}")

    # -- building blocks -------------------------------------------------------------------------

    def _user(self, email: str, name: str, **extra) -> User:
        user = User.objects.filter(email=email).first()
        if user is None:
            user = User.objects.create_user(email=email, password=PASSWORD, full_name=name, **extra)
        return user

    def _account(self, domain: str, **fields) -> BillingAccount:
        account, _ = BillingAccount.objects.get_or_create(domain=domain, defaults=fields)
        return account

    def _member(self, account: BillingAccount, user: User, role: Role) -> None:
        Membership.objects.get_or_create(account=account, user=user, defaults={"role": role})

    def _card(
        self, account: BillingAccount, *, number: str, brand: str, exp: tuple[int, int], owner: User, **fields
    ) -> PaymentMethod:
        existing = PaymentMethod.objects.filter(account=account, brand=brand, last4=number[-4:]).first()
        if existing:
            return existing
        token = register_demo_card(
            number=number, exp_month=exp[0], exp_year=exp[1], holder=owner.display_name
        )
        return PaymentMethod.objects.create(
            account=account,
            brand=brand,
            last4=number[-4:],
            exp_month=exp[0],
            exp_year=exp[1],
            holder_name=owner.display_name,
            owner=owner,
            gateway="simulated",
            gateway_token=token,
            fingerprint=demo_card_fingerprint(brand=brand, number=number, exp=exp),
            **fields,
        )

    def _subscription(
        self, account: BillingAccount, method: PaymentMethod | None, spec: DemoSub, now: dt.datetime
    ) -> tuple[Subscription, bool]:
        product = Product.objects.get(code=spec.product)
        existing = Subscription.objects.filter(account=account, product=product).first()
        if existing:
            return existing, False
        today = timezone.localdate(now)
        due = today - dt.timedelta(days=spec.days_past_due)
        bank_transfer = account.pays_by_bank_transfer
        # Card renewals are invoiced and charged on the first day of the period; invoices of
        # bank-transfer accounts are due 30 days after they are issued.
        issued = due - dt.timedelta(days=30) if bank_transfer else min(due, today)
        period_start = issued
        period_end = _month_after(period_start)
        past_due = spec.days_past_due > 0
        failed_at = timezone.make_aware(dt.datetime.combine(due, dt.time(3, 0)))
        sub = Subscription(
            account=account,
            product=product,
            quantity=spec.quantity,
            unit_price_minor=spec.unit_price_minor,
            currency=account.currency,
            payment_method=method,
            current_period_start=period_start,
            current_period_end=period_end,
        )
        if past_due:
            sub.status = Subscription.Status.PAST_DUE
            sub.past_due_since = failed_at
            sub.grace_ends_at = failed_at + dt.timedelta(days=30)
            sub.next_lifecycle_at = sub.grace_ends_at
            if sub.grace_ends_at <= now:
                sub.status = Subscription.Status.DISABLED
                sub.disabled_at = sub.grace_ends_at
                sub.next_lifecycle_at = sub.disabled_at + dt.timedelta(days=90)
        sub.save()
        total = spec.quantity * spec.unit_price_minor
        invoice = Invoice.objects.create(
            account=account,
            subscription=sub,
            number=spec.invoice_number,
            status=Invoice.Status.PAST_DUE if past_due else Invoice.Status.OPEN,
            transaction_type=Invoice.TransactionType.RENEW,
            currency=account.currency,
            total_minor=total,
            amount_due_minor=total,
            issued_on=issued,
            due_on=due,
            period_start=period_start,
            period_end=period_end,
            first_failed_at=failed_at if (past_due and method) else None,
            attempt_count=1 if (past_due and method) else 0,
        )
        InvoiceLine.objects.create(
            invoice=invoice,
            description=product.name,
            quantity=spec.quantity,
            unit_price_minor=spec.unit_price_minor,
            amount_minor=total,
            period_start=period_start,
            period_end=period_end,
        )
        if spec.decline_code and method:
            self._declines(account, method, invoice, spec, failed_at, now)
        return sub, True

    def _declines(
        self,
        account: BillingAccount,
        method: PaymentMethod,
        invoice: Invoice,
        spec: DemoSub,
        failed_at: dt.datetime,
        now: dt.datetime,
    ) -> None:
        """The attempts the real engine would have made: the renewal charge, then every retry its policy had
        scheduled up to now (same idempotency keys as dunning), and the next retry still to come."""
        from dunning.services import KEY_PREFIX, decline_category, next_retry_at, retry_policies

        policy = retry_policies()[decline_category(spec.decline_code)]
        runs = [failed_at] + [
            failed_at + dt.timedelta(days=d) for d in policy.days if failed_at + dt.timedelta(days=d) <= now
        ]
        total = invoice.total_minor
        for number, at in enumerate(runs, start=1):
            attempt = PaymentAttempt.objects.create(
                account=account,
                payment_method=method,
                amount_minor=total,
                currency=account.currency,
                status=PaymentAttempt.Status.FAILED,
                source=PaymentAttempt.Source.RENEWAL if number == 1 else PaymentAttempt.Source.RETRY,
                decline_code=spec.decline_code,
                idempotency_key=f"{KEY_PREFIX}{invoice.pk}:{number}",
                gateway="simulated",
                gateway_reference=f"sim_demo_{spec.invoice_number}_{number}",
                initiated_by_label="job: dunning",
                completed_at=at,
            )
            PaymentAttempt.objects.filter(pk=attempt.pk).update(created_at=at)
            PaymentAllocation.objects.create(attempt=attempt, invoice=invoice, amount_minor=total)
            self._runs.setdefault((account.pk, at), []).append((invoice.pk, attempt.pk, spec.decline_code))
        invoice.attempt_count = len(runs)
        invoice.next_attempt_at = next_retry_at(first_failed_at=failed_at, days=policy.days, now=now)
        invoice.save(update_fields=["attempt_count", "next_attempt_at"])

    def _history_mails(self, now: dt.datetime) -> None:
        """The mails the demo accounts' history would have sent: one per card and dunning run (listing its
        subscriptions), the final warnings and the disable notices, dated when they would have gone out."""
        from django.conf import settings

        from dunning.services import Failure, _notify, decline_category, failures_notify
        from notifications.models import Notice

        for (account_id, at), rows in sorted(self._runs.items(), key=lambda kv: kv[0][1]):
            before = set(Notice.objects.filter(account_id=account_id).values_list("pk", flat=True))
            failures_notify(
                account_id=account_id,
                failures=[
                    Failure(invoice_id=i, attempt_id=a, category=decline_category(c)) for i, a, c in rows
                ],
                now=at,
            )
            Notice.objects.filter(account_id=account_id).exclude(pk__in=before).update(created_at=at)
        warn = dt.timedelta(days=settings.DUNNING_FINAL_WARNING_DAYS)
        for sub in Subscription.objects.filter(
            status__in=[Subscription.Status.PAST_DUE, Subscription.Status.DISABLED],
            grace_ends_at__isnull=False,
        ).select_related("account", "product", "payment_method"):
            assert sub.grace_ends_at is not None
            events = [("final_warning", sub.grace_ends_at - warn)]
            if sub.status == Subscription.Status.DISABLED:
                events.append(("disabled", sub.grace_ends_at))
            for kind, at in events:
                if at > now:
                    continue
                key = (
                    f"final_warning:{sub.pk}:{sub.grace_ends_at:%Y%m%d}"
                    if kind == "final_warning"
                    else f"disabled:{sub.pk}:{sub.grace_ends_at:%Y%m%d}"
                )
                extra = {
                    "disable_on": format_date(timezone.localtime(sub.grace_ends_at), sub.account.language)
                }
                if kind == "disabled" and sub.next_lifecycle_at:
                    extra = {
                        "cancel_on": format_date(
                            timezone.localtime(sub.next_lifecycle_at), sub.account.language
                        )
                    }
                _notify(account=sub.account, kind=kind, dedupe_key=key, sub=sub, context=extra)
                Notice.objects.filter(dedupe_key=key).update(created_at=at)

    # -- the demo --------------------------------------------------------------------------------

    def _seed(self) -> bool:
        now = timezone.now()
        self._runs: dict[tuple[int, dt.datetime], list[tuple[int, int, str]]] = {}
        created_any = not BillingAccount.objects.filter(domain="contoso.example").exists()
        for code, name in PRODUCTS.items():
            Product.objects.get_or_create(code=code, defaults={"name": name})

        # Contoso Ltd: a Visa that the bank declines on three renewals, a Mastercard that works.
        contoso = self._account(
            "contoso.example",
            name="Contoso Ltd",
            currency="EUR",
            language="en",
            notification_email="billing@contoso.example",
            address_line1="1 Microsoft Way",
            postal_code="D02 X285",
            city="Dublin",
            country="IE",
            tax_id="IE9825613N",
        )
        admin = self._user("admin@contoso.example", "Megan Bowen")
        finance = self._user("finance@contoso.example", "Adele Vance")
        reader = self._user("reader@contoso.example", "Alex Wilber")
        self._member(contoso, admin, Role.OWNER)
        self._member(contoso, finance, Role.ADMIN)
        self._member(contoso, reader, Role.READER)
        declined_at = now - dt.timedelta(days=5)
        visa = self._card(
            contoso,
            number="4000000000000341",
            brand=PaymentMethod.Brand.VISA,
            exp=(8, 2028),
            owner=admin,
            status=PaymentMethod.Status.DECLINED,
            last_decline_code="card_declined",
            last_declined_at=declined_at,
        )
        mastercard = self._card(
            contoso,
            number="5555555555554444",
            brand=PaymentMethod.Brand.MASTERCARD,
            exp=(3, 2029),
            owner=finance,
            is_default=True,
        )
        for spec in (
            DemoSub("m365-business-standard", 25, 1170, "INV-2026-100001", 5, "card_declined"),
            DemoSub("exchange-online-plan-1", 10, 370, "INV-2026-100002", 5, "card_declined"),
            DemoSub("power-bi-pro", 5, 940, "INV-2026-100003", 5, "card_declined"),
        ):
            self._subscription(contoso, visa, spec, now)
        self._subscription(
            contoso,
            mastercard,
            DemoSub("visio-plan-2", 1, 1400, "INV-2026-100004", 3, "processing_error"),
            now,
        )
        self._subscription(
            contoso, mastercard, DemoSub("teams-essentials", 9, 400, "INV-2026-100005", -10), now
        )

        # Fabrikam BV: the owner's Visa expired in 10/2026, so its renewal was declined (expired_card).
        fabrikam = self._account(
            "fabrikam.example",
            name="Fabrikam BV",
            currency="EUR",
            language="nl",
            notification_email="facturen@fabrikam.example",
            address_line1="Keizersgracht 100",
            postal_code="1015 AA",
            city="Amsterdam",
            country="NL",
            tax_id="NL123456789B01",
        )
        fab_admin = self._user("admin@fabrikam.example", "Daan de Vries")
        self._member(fabrikam, fab_admin, Role.OWNER)
        fab_visa = self._card(
            fabrikam,
            number="4012888888881881",
            brand=PaymentMethod.Brand.VISA,
            exp=(10, 2026),
            owner=fab_admin,
            status=PaymentMethod.Status.DECLINED,
            last_decline_code="expired_card",
            last_declined_at=now - dt.timedelta(days=20),
            is_default=True,
        )
        self._subscription(
            fabrikam,
            fab_visa,
            DemoSub("m365-business-basic", 12, 600, "INV-2026-200001", 20, "expired_card"),
            now,
        )

        # Northwind Traders pays by bank transfer: its Azure invoice is 45 days overdue, so it is disabled.
        northwind = self._account(
            "northwind.example",
            name="Northwind Traders",
            currency="USD",
            language="en",
            notification_email="ap@northwind.example",
            address_line1="2732 Baker Blvd.",
            postal_code="97403",
            city="Eugene",
            region="OR",
            country="US",
            payment_mode=BillingAccount.PaymentMode.BANK_TRANSFER,
            remittance_bank_name="Contoso Bank N.A.",
            remittance_account_holder="Billing Portal Inc.",
            remittance_iban="US64SVBKUS6S3300958879",
            remittance_bic="SVBKUS6S",
        )
        nw_admin = self._user("admin@northwind.example", "Nancy Davolio")
        self._member(northwind, nw_admin, Role.OWNER)
        self._subscription(northwind, None, DemoSub("azure-plan", 1, 125000, "INV-2026-300001", 45), now)

        # Operator side.
        support = self._user("support@billing.example", "Support Agent", is_staff=True)
        group, _ = Group.objects.get_or_create(name="Support staff")
        support.groups.add(group)
        if not User.objects.filter(email="root@billing.example").exists():
            User.objects.create_superuser(email="root@billing.example", password=PASSWORD, full_name="Root")
        if created_any:
            self._history_mails(now)
        return created_any


def demo_card_fingerprint(*, brand: str, number: str, exp: tuple[int, int]) -> str:
    """The simulated gateway's fingerprint, so a demo card typed into the Add form again is the same card."""
    from payments.gateways.simulated import simulated_fingerprint

    return simulated_fingerprint(brand=brand, last4=number[-4:], exp_month=exp[0], exp_year=exp[1])


def register_demo_card(*, number: str, exp_month: int, exp_year: int, holder: str) -> str:
    """Register a test card at the simulated bank and return its token (our records keep only the token)."""
    from gateway_sim.services import sim_card_register

    return sim_card_register(number=number, exp_month=exp_month, exp_year=exp_year, holder_name=holder)
