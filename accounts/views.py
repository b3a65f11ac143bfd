from __future__ import annotations

from typing import Any, cast

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import trigger_client_event

from .decorators import account_member_required, is_htmx, member_may
from .forms import (
    ROLE_HINTS,
    AcceptInvitationForm,
    BillingProfileForm,
    InviteForm,
    NotificationSettingsForm,
    RecipientsForm,
    RoleForm,
    SignInForm,
)
from .models import Invitation, Membership, User
from .selectors import account_members, invitations_pending, membership_for_user, memberships_of_user
from .services import (
    MAX_ADDITIONAL_RECIPIENTS,
    InvitationError,
    RoleChangeError,
    SettingsInvalid,
    billing_account_update_notifications,
    billing_account_update_profile,
    billing_account_update_recipients,
    invitation_accept,
    invitation_create,
    invitation_from_token,
    invitation_revoke,
    membership_remove,
    membership_role_change,
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


@member_may("can_view_subscriptions")
def notifications(request: HttpRequest, membership: Membership) -> HttpResponse:
    """Billing notifications: where billing mail goes and in which language. Everyone in the account sees it."""
    return render(
        request, "accounts/notifications.html", {"membership": membership, "account": membership.account}
    )


@require_http_methods(["GET", "POST"])
@member_may("can_edit_notifications")
def notifications_edit(request: HttpRequest, membership: Membership) -> HttpResponse:
    """The "Edit notification settings" pane (a page without JavaScript). Owners and admins only."""
    account = membership.account
    if request.method == "POST":
        form = NotificationSettingsForm(request.POST)
        if form.is_valid():
            account = billing_account_update_notifications(
                account=account,
                actor=membership.user,
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


# -- Billing accounts, roles and invitations ---------------------------------------------------------


@account_member_required
def billing_accounts(request: HttpRequest, membership: Membership) -> HttpResponse:
    """Billing accounts: every account the person belongs to, with their role in each (one query)."""
    return render(
        request,
        "accounts/billing_accounts.html",
        {
            "membership": membership,
            "account": membership.account,
            "memberships": list(memberships_of_user(user=membership.user)),
        },
    )


def _roles_context(membership: Membership) -> dict[str, Any]:
    return {
        "membership": membership,
        "account": membership.account,
        "members": list(account_members(account_id=membership.account_id)),
        "invitations": list(invitations_pending(account_id=membership.account_id))
        if membership.can_manage_roles
        else [],
        "role_hints": ROLE_HINTS,
        "invitation_days": settings.INVITATION_MAX_AGE_DAYS,
    }


@member_may("can_view_roles")
def roles(request: HttpRequest, membership: Membership) -> HttpResponse:
    """Billing account roles: who is a member with which role. The owner assigns, invites and removes."""
    template = "accounts/roles.html#member-list" if is_htmx(request) else "accounts/roles.html"
    return render(request, template, _roles_context(membership))


def _roles_url(membership: Membership) -> str:
    return reverse("accounts:roles", kwargs={"account_id": membership.account_id})


def _roles_changed(request: HttpRequest, membership: Membership, text: str) -> HttpResponse:
    """After a change: without JavaScript back to the list; with htmx the pane closes, the list and the
    message bars are swapped out of band."""
    messages.success(request, text)
    if not is_htmx(request):
        return redirect("accounts:roles", account_id=membership.account_id)
    # The actor may have handed ownership over: then the whole page changes (no commands, no actions),
    # so htmx reloads it; the message waits in the session.
    membership = membership_for_user(user=membership.user, account_id=membership.account_id)
    if not membership.can_manage_roles:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = _roles_url(membership)
        return response
    response = render(request, "accounts/roles_saved.html", _roles_context(membership))
    return trigger_client_event(response, "closePane")


def _member_or_404(membership: Membership, member_id: int) -> Membership:
    return get_object_or_404(
        Membership.objects.select_related("user"), account_id=membership.account_id, pk=member_id
    )


@require_http_methods(["GET", "POST"])
@member_may("can_manage_roles")
def role_change(request: HttpRequest, membership: Membership, member_id: int) -> HttpResponse:
    """The "Assign role" pane for one member. Choosing Billing account owner hands ownership over."""
    member = _member_or_404(membership, member_id)
    form = RoleForm(request.POST if request.method == "POST" else None, initial={"role": member.role})
    error = ""
    if request.method == "POST" and form.is_valid():
        try:
            member = membership_role_change(
                account_id=membership.account_id,
                actor=membership.user,
                membership_id=member.pk,
                role=form.cleaned_data["role"],
            )
        except RoleChangeError as exc:
            error = str(exc)
        except Membership.DoesNotExist:
            raise Http404 from None
        else:
            return _roles_changed(
                request,
                membership,
                _("%(email)s is now %(role)s.")
                % {"email": member.user.email, "role": member.get_role_display()},
            )
    elif request.method == "POST":
        error = _("Nothing was changed. Choose a role and save again.")
    if error:
        messages.error(request, error)
    return render(
        request,
        "accounts/role_change.html",
        {
            "membership": membership,
            "account": membership.account,
            "member": member,
            "form": form,
            "role_hints": ROLE_HINTS,
            "pane_close_url": _roles_url(membership),
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


@require_http_methods(["GET", "POST"])
@member_may("can_manage_roles")
def member_remove(request: HttpRequest, membership: Membership, member_id: int) -> HttpResponse:
    """The "Remove" pane: confirm, then the person loses access to this billing account."""
    member = _member_or_404(membership, member_id)
    if request.method == "POST":
        try:
            membership_remove(
                account_id=membership.account_id, actor=membership.user, membership_id=member.pk
            )
        except RoleChangeError as exc:
            messages.error(request, str(exc))
        except Membership.DoesNotExist:
            raise Http404 from None
        else:
            return _roles_changed(
                request,
                membership,
                _("%(email)s no longer has access to this billing account.") % {"email": member.user.email},
            )
    return render(
        request,
        "accounts/member_remove.html",
        {
            "membership": membership,
            "account": membership.account,
            "member": member,
            "pane_close_url": _roles_url(membership),
        },
    )


@require_http_methods(["GET", "POST"])
@member_may("can_manage_roles")
def invite(request: HttpRequest, membership: Membership) -> HttpResponse:
    """The "Invite a person" pane: an e-mail address and a role; the person gets a signed link by mail."""
    form = InviteForm(request.POST if request.method == "POST" else None)
    if request.method == "POST":
        if form.is_valid():
            try:
                invitation = invitation_create(
                    account_id=membership.account_id,
                    actor=membership.user,
                    email=form.cleaned_data["email"],
                    role=form.cleaned_data["role"],
                )
            except InvitationError as exc:
                form.add_error("email", str(exc))
            else:
                return _roles_changed(
                    request,
                    membership,
                    _("An invitation was sent to %(email)s. The link works for %(days)d days.")
                    % {"email": invitation.email, "days": settings.INVITATION_MAX_AGE_DAYS},
                )
        messages.error(request, _("Nobody was invited. Correct the highlighted field and send again."))
    return render(
        request,
        "accounts/invite.html",
        {
            "membership": membership,
            "account": membership.account,
            "form": form,
            "role_hints": ROLE_HINTS,
            "invitation_days": settings.INVITATION_MAX_AGE_DAYS,
            "pane_close_url": _roles_url(membership),
        },
    )


@require_http_methods(["GET", "POST"])
@member_may("can_edit_billing_profile")
def billing_profile_edit(request: HttpRequest, membership: Membership) -> HttpResponse:
    account = membership.account
    if request.method == "POST":
        form = BillingProfileForm(request.POST)
        if form.is_valid():
            try:
                billing_account_update_profile(
                    account=account,
                    actor=membership.user,
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
                    "region",
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


@require_POST
@member_may("can_manage_roles")
def invitation_withdraw(request: HttpRequest, membership: Membership, invitation_id: int) -> HttpResponse:
    try:
        invitation = invitation_revoke(
            account_id=membership.account_id, actor=membership.user, invitation_id=invitation_id
        )
    except Invitation.DoesNotExist:
        raise Http404 from None
    return _roles_changed(
        request, membership, _("The invitation of %(email)s was withdrawn.") % {"email": invitation.email}
    )


@require_http_methods(["GET", "POST"])
def invitation_open(request: HttpRequest, token: str) -> HttpResponse:
    """The link in an invitation mail. A new person sets a password; someone with a user signs in with
    the invited address and accepts. Either way they land on the account's Home."""
    try:
        invitation = invitation_from_token(token=token)
    except InvitationError as exc:
        return render(request, "accounts/invitation.html", {"error": str(exc)}, status=410)
    translation.activate(invitation.account.language)
    request.LANGUAGE_CODE = translation.get_language()
    user = request.user if request.user.is_authenticated else None
    has_user = User.objects.filter(email=invitation.email).exists()
    form = AcceptInvitationForm(request.POST if request.method == "POST" and not has_user else None)
    error = ""
    if request.method == "POST":
        try:
            if has_user:
                if user is None:
                    return redirect_to_login(request.get_full_path())
                membership = invitation_accept(invitation_id=invitation.pk, user=cast(User, user))
            elif form.is_valid():
                membership = invitation_accept(
                    invitation_id=invitation.pk,
                    user=None,
                    full_name=form.cleaned_data["full_name"],
                    password=form.cleaned_data["password"],
                )
                login(request, membership.user, backend="accounts.backends.PermissionsInOneQueryBackend")
            else:
                membership = None
                error = _("Correct the highlighted fields and try again.")
        except ValidationError as exc:  # the password validators
            form.add_error("password", exc)
            membership = None
            error = _("Correct the highlighted fields and try again.")
        except InvitationError as exc:
            membership = None
            error = str(exc)
        if membership is not None:
            messages.success(
                request,
                _("Welcome to %(account)s. Your role: %(role)s.")
                % {"account": membership.account.name, "role": membership.get_role_display()},
            )
            return redirect("accounts:home", account_id=membership.account_id)
    return render(
        request,
        "accounts/invitation.html",
        {
            "invitation": invitation,
            "form": form,
            "has_user": has_user,
            "signed_in_as": user,
            "error": error,
        },
    )


@require_http_methods(["GET", "POST"])
@member_may("can_edit_notifications")
def recipients_edit(request: HttpRequest, membership: Membership) -> HttpResponse:
    """Billing notifications → "Edit recipients": additional addresses that receive billing mail."""
    account = membership.account
    if request.method == "POST":
        form = RecipientsForm(request.POST)
        if form.is_valid():
            try:
                account = billing_account_update_recipients(
                    account=account,
                    actor=membership.user,
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
