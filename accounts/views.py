from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods
from django_htmx.http import trigger_client_event

from billing_portal.countries import country_name
from subscriptions.selectors import account_overview, invoice_frequencies, past_due_summary

from .decorators import account_member_required, is_htmx
from .forms import BillingProfileForm, NotificationSettingsForm, RecipientsForm, SignInForm
from .models import Membership
from .selectors import memberships_of_user
from .services import (
    MAX_ADDITIONAL_RECIPIENTS,
    SettingsInvalid,
    billing_account_update_notifications,
    billing_account_update_profile,
    billing_account_update_recipients,
)


class SignInView(auth_views.LoginView):
    template_name = "accounts/signin.html"
    authentication_form = SignInForm
    redirect_authenticated_user = True


class SignOutView(auth_views.LogoutView):
    """POST only (Django's LogoutView refuses GET), so a link or an image can't sign anyone out."""


# Where operator staff land; the support console names its start page one of these.
SUPPORT_START_PAGES = ("support:home", "support:search")


def support_url() -> str:
    """The support console's start page, or "" when this build has none."""
    for name in SUPPORT_START_PAGES:
        try:
            return reverse(name)
        except NoReverseMatch:
            continue
    return ""


@login_required
def root(request: HttpRequest) -> HttpResponse:
    """`/`: the first billing account's Home; support staff go to the console; others learn why there is nothing."""
    first = memberships_of_user(user=request.user).first()  # type: ignore[arg-type]
    if first is not None:
        return redirect("accounts:home", account_id=first.account_id)
    if request.user.is_staff:
        support = support_url()
        if support:
            return redirect(support)
    return render(request, "accounts/no_account.html", status=200)


@account_member_required
def home(request: HttpRequest, membership: Membership) -> HttpResponse:
    """Home; for htmx (after a `balanceChanged` event) just its banner and summary cards."""
    account = membership.account
    template = "accounts/home.html#home-body" if is_htmx(request) else "accounts/home.html"
    return render(
        request,
        template,
        {
            "membership": membership,
            "account": account,
            "past_due": past_due_summary(account=account),
            "overview": account_overview(account=account),
        },
    )


@account_member_required
def notifications(request: HttpRequest, membership: Membership) -> HttpResponse:
    """Billing notifications: where billing mail goes and in which language. Everyone in the account sees it."""
    return render(
        request, "accounts/notifications.html", {"membership": membership, "account": membership.account}
    )


@require_http_methods(["GET", "POST"])
@account_member_required
def notifications_edit(request: HttpRequest, membership: Membership) -> HttpResponse:
    """The "Edit notification settings" pane (a page without JavaScript). Owners and admins only."""
    if not membership.can_edit_notifications:
        raise PermissionDenied
    account = membership.account
    if request.method == "POST":
        form = NotificationSettingsForm(request.POST)
        if form.is_valid():
            account = billing_account_update_notifications(
                account=account,
                actor=request.user,  # type: ignore[arg-type]
                email=form.cleaned_data["email"],
                language=form.cleaned_data["language"],
            )
            messages.success(
                request,
                _("Billing notifications will go to %(email)s.") % {"email": account.notification_email},
            )
            if not is_htmx(request):
                return redirect("accounts:notifications", account_id=account.pk)
            # The pane closes (empty body); the settings card and the message bars are swapped out of band.
            membership.account = account
            response = render(
                request, "accounts/notifications_saved.html", {"membership": membership, "account": account}
            )
            return trigger_client_event(response, "closePane")
        messages.error(request, _("Nothing was changed. Correct the highlighted field and save again."))
    else:
        form = NotificationSettingsForm(
            initial={"email": account.notification_email, "language": account.language}
        )
    return render(
        request,
        "accounts/notifications_edit.html",
        {
            "membership": membership,
            "account": account,
            "form": form,
            "nav_current": "notifications",
            "pane_close_url": reverse("accounts:notifications", kwargs={"account_id": account.pk}),
        },
    )


def _saved(request: HttpRequest, *, redirect_to: str, text: str, refresh: str) -> HttpResponse:
    """After a settings pane saved: a redirect without JavaScript; for htmx the pane closes, the page's
    region reloads itself (`refresh` event) and the message bar lands on the page."""
    messages.success(request, text)
    if not is_htmx(request):
        return redirect(redirect_to)
    response = render(request, "includes/oob_messages.html", {})
    trigger_client_event(response, refresh)
    return trigger_client_event(response, "closePane")


@account_member_required
def billing_profile(request: HttpRequest, membership: Membership) -> HttpResponse:
    """Bills & payments → Billing profile: currency, invoice frequency, bill-to address, PO number and
    invoice attachments. Everyone in the account reads it; owners and admins edit it in a pane."""
    account = membership.account
    return render(
        request,
        "accounts/billing_profile.html#profile-card" if is_htmx(request) else "accounts/billing_profile.html",
        {
            "membership": membership,
            "account": account,
            "country": country_name(account.country),
            "frequencies": invoice_frequencies(account=account),
            "nav_current": "bills",
        },
    )


@require_http_methods(["GET", "POST"])
@account_member_required
def billing_profile_edit(request: HttpRequest, membership: Membership) -> HttpResponse:
    if not membership.can_edit_billing_profile:
        raise PermissionDenied
    account = membership.account
    if request.method == "POST":
        form = BillingProfileForm(request.POST)
        if form.is_valid():
            try:
                billing_account_update_profile(
                    account=account,
                    actor=request.user,  # type: ignore[arg-type]
                    **form.cleaned_data,
                )
            except SettingsInvalid as exc:
                for field, message in exc.errors.items():
                    form.add_error(field, message)
            else:
                return _saved(
                    request,
                    redirect_to=reverse("accounts:billing_profile", kwargs={"account_id": account.pk}),
                    text=_("The billing profile was saved."),
                    refresh="profileChanged",
                )
        messages.error(request, _("Nothing was changed. Correct the highlighted fields and save again."))
    else:
        form = BillingProfileForm(
            initial={
                name: getattr(account, name)
                for name in (
                    "address_line1",
                    "address_line2",
                    "postal_code",
                    "city",
                    "country",
                    "po_number",
                    "invoice_email_attachments",
                )
            }
        )
    return render(
        request,
        "accounts/billing_profile_edit.html",
        {
            "membership": membership,
            "account": account,
            "form": form,
            "nav_current": "bills",
            "pane_close_url": reverse("accounts:billing_profile", kwargs={"account_id": account.pk}),
        },
    )


@require_http_methods(["GET", "POST"])
@account_member_required
def recipients_edit(request: HttpRequest, membership: Membership) -> HttpResponse:
    """Billing notifications → "Edit recipients": additional addresses that receive billing mail."""
    if not membership.can_edit_notifications:
        raise PermissionDenied
    account = membership.account
    if request.method == "POST":
        form = RecipientsForm(request.POST)
        if form.is_valid():
            try:
                account = billing_account_update_recipients(
                    account=account,
                    actor=request.user,  # type: ignore[arg-type]
                    raw=form.cleaned_data["recipients"],
                )
            except SettingsInvalid as exc:
                for field, message in exc.errors.items():
                    form.add_error(field, message)
            else:
                return _saved(
                    request,
                    redirect_to=reverse("accounts:notifications", kwargs={"account_id": account.pk}),
                    text=_("Billing mail goes to %(list)s.")
                    % {"list": ", ".join(account.billing_mail_recipients)},
                    refresh="recipientsChanged",
                )
        messages.error(request, _("Nothing was changed. Correct the highlighted field and save again."))
    else:
        form = RecipientsForm(initial={"recipients": "\n".join(account.additional_recipients or [])})
    return render(
        request,
        "accounts/recipients_edit.html",
        {
            "membership": membership,
            "account": account,
            "form": form,
            "max_recipients": MAX_ADDITIONAL_RECIPIENTS,
            "nav_current": "notifications",
            "pane_close_url": reverse("accounts:notifications", kwargs={"account_id": account.pk}),
        },
    )
