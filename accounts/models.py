from __future__ import annotations

from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from billing_portal.countries import country_name
from billing_portal.money import CURRENCY_CHOICES


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra) -> User:
        if not email:
            raise ValueError("An e-mail address is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra) -> User:
        extra["is_staff"] = True
        extra["is_superuser"] = True
        return self._create_user(email, password, **extra)


class User(AbstractUser):
    """A person who signs in with an e-mail address.

    Customers reach billing accounts through Membership; operator staff (is_staff) reach the
    support area through permissions and never hold memberships.
    """

    username = None  # type: ignore[assignment]
    email = models.EmailField(_("e-mail address"), unique=True)
    full_name = models.CharField(_("name"), max_length=150, blank=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS = []  # e-mail (USERNAME_FIELD) is the only required field

    objects = UserManager()  # type: ignore[assignment,misc]

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email

    @property
    def display_name(self) -> str:
        return self.full_name or self.email


class BillingAccount(models.Model):
    class PaymentMode(models.TextChoices):
        CARD = "card", _("Card")
        BANK_TRANSFER = "bank_transfer", _("Bank transfer (pay by invoice)")

    class Language(models.TextChoices):
        ENGLISH = "en", _("English")
        DUTCH = "nl", _("Dutch")

    name = models.CharField(_("name"), max_length=200)
    domain = models.CharField(_("domain"), max_length=253, unique=True)
    currency = models.CharField(_("currency"), max_length=3, choices=CURRENCY_CHOICES)
    language = models.CharField(_("preferred language"), max_length=8, choices=Language.choices, default="en")
    address_line1 = models.CharField(_("address"), max_length=200, blank=True)
    address_line2 = models.CharField(_("address line 2"), max_length=200, blank=True)
    postal_code = models.CharField(_("postal code"), max_length=20, blank=True)
    city = models.CharField(_("city"), max_length=100, blank=True)
    # State, province or county, where the country writes one in its addresses ("Eugene, OR 97403").
    region = models.CharField(_("state, province or county"), max_length=100, blank=True, default="")
    country = models.CharField(_("country"), max_length=2, blank=True, help_text="ISO 3166-1 alpha-2")
    tax_id = models.CharField(_("tax ID"), max_length=40, blank=True)
    notification_email = models.EmailField(_("billing notification address"))
    payment_mode = models.CharField(
        _("pays by"), max_length=20, choices=PaymentMode.choices, default=PaymentMode.CARD
    )
    # Where a bank-transfer customer sends money; the invoice number is the payment reference.
    remittance_bank_name = models.CharField(_("bank"), max_length=120, blank=True)
    remittance_account_holder = models.CharField(_("account holder"), max_length=120, blank=True)
    remittance_iban = models.CharField(_("IBAN"), max_length=34, blank=True)
    remittance_bic = models.CharField(_("BIC"), max_length=11, blank=True)
    # Billing profile: printed on invoices (the customer's purchase order) and whether invoice mails carry the PDF.
    po_number = models.CharField(_("PO number"), max_length=40, blank=True, default="")
    invoice_email_attachments = models.BooleanField(_("Get invoices in e-mail attachments"), default=False)
    # "Edit recipients": who else receives billing mail besides notification_email (lower-case, unique,
    # at most MAX_ADDITIONAL_RECIPIENTS; billing_account_update_recipients keeps it so).
    additional_recipients = models.JSONField(_("additional recipients"), default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(currency__in=[c for c, _ in CURRENCY_CHOICES]),
                name="billingaccount_currency_valid",
            ),
            models.CheckConstraint(
                condition=Q(payment_mode__in=["card", "bank_transfer"]),
                name="billingaccount_payment_mode_valid",
            ),
            models.CheckConstraint(
                condition=~Q(payment_mode="bank_transfer") | ~Q(remittance_iban=""),
                name="billingaccount_bank_transfer_has_iban",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def billing_mail_recipients(self) -> list[str]:
        """Every address billing mail goes to: the notification address first, then the additional ones."""
        seen = {self.notification_email.lower()}
        extra = [a for a in self.additional_recipients or [] if a.lower() not in seen]
        return [self.notification_email, *extra]

    @property
    def pays_by_bank_transfer(self) -> bool:
        return self.payment_mode == self.PaymentMode.BANK_TRANSFER

    @property
    def address_lines(self) -> list[str]:
        """The sold-to / bill-to address as the country writes it, the country's name in the active language
        (billing_portal.addresses: the one address formatter)."""
        from billing_portal.addresses import PostalAddress, format_address

        return format_address(PostalAddress.of(self))

    @property
    def country_name(self) -> str:
        """The sold-to country in the active language ("Ireland", "Ierland"), never the ISO code."""
        return country_name(self.country)

    @property
    def sold_to_lines(self) -> list[str]:
        """The sold-to address as people read it (the same lines as the bill-to address)."""
        return self.address_lines


class Role(models.TextChoices):
    OWNER = "owner", _("Billing account owner")
    ADMIN = "admin", _("Billing admin")
    READER = "reader", _("Billing reader")
    # Microsoft's billing-profile role "can view and pay bills": invoices and payment methods only.
    INVOICE_MANAGER = "invoice_manager", _("Invoice manager")


# What each role may do; views ask through Membership.can_*, never by comparing strings.
_PAYING_ROLES = {Role.OWNER, Role.ADMIN, Role.INVOICE_MANAGER}
# Managing cards (active, replace, edit, delete), notification settings and the billing profile: owners and
# admins only, whatever other roles may pay (an invoice manager picks or adds a card in a payment pane only).
_ADMIN_ROLES = {Role.OWNER, Role.ADMIN}


class Membership(models.Model):
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    account = models.ForeignKey(BillingAccount, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["account__name"]
        constraints = [
            models.UniqueConstraint(fields=["user", "account"], name="membership_user_account_unique"),
            # At most one owner per account; services keep it at exactly one.
            models.UniqueConstraint(
                fields=["account"], condition=Q(role="owner"), name="membership_one_owner_per_account"
            ),
            models.CheckConstraint(
                condition=Q(role__in=["owner", "admin", "reader", "invoice_manager"]),
                name="membership_role_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} · {self.account} · {self.role}"

    @property
    def can_pay(self) -> bool:
        """Pay now, Settle balance (choosing or adding the card to pay with)."""
        return self.role in _PAYING_ROLES

    @property
    def can_manage_payment_methods(self) -> bool:
        """Add a card outside a payment, edit, make active, replace, delete: owners and admins."""
        return self.role in _ADMIN_ROLES

    @property
    def can_edit_notifications(self) -> bool:
        return self.role in _ADMIN_ROLES

    @property
    def can_edit_billing_profile(self) -> bool:
        return self.role in _ADMIN_ROLES

    @property
    def can_manage_roles(self) -> bool:
        return self.role == Role.OWNER

    @property
    def can_view_subscriptions(self) -> bool:
        """Your products, subscription pages, billing notifications: not for invoice managers, who see
        invoices and payment methods only."""
        return self.role != Role.INVOICE_MANAGER

    @property
    def can_view_roles(self) -> bool:
        """The member list (read-only except for the owner); invoice managers see invoices and cards only."""
        return self.role != Role.INVOICE_MANAGER

    @property
    def can_open_support_requests(self) -> bool:
        """Owners, admins and invoice managers (about invoices and payments) ask support; readers only read."""
        return self.role in _PAYING_ROLES


class Invitation(models.Model):
    """An e-mail invitation to join a billing account with a role.

    The link carries a signed token (django.core.signing, expiring after INVITATION_MAX_AGE_DAYS);
    the row says what it grants and whether it was used. At most one pending invitation per address
    and account, so a double-submitted invite form makes one.
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        ACCEPTED = "accepted", _("Accepted")
        REVOKED = "revoked", _("Revoked")

    account = models.ForeignKey(BillingAccount, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField(_("e-mail address"))
    role = models.CharField(_("role"), max_length=20, choices=Role.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    invited_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, related_name="+")
    accepted_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    accepted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "email"],
                condition=Q(status="pending"),
                name="invitation_one_pending_per_address",
            ),
            # Ownership is handed to a member, never sent by mail.
            models.CheckConstraint(
                condition=Q(role__in=["admin", "reader", "invoice_manager"]), name="invitation_role_valid"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "accepted", "revoked"]), name="invitation_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email} → {self.account} ({self.role}, {self.status})"
