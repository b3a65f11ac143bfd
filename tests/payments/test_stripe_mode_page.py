import io

import pytest
from django.core.management import call_command
from django.urls import reverse

from accounts.models import User

pytestmark = pytest.mark.django_db


@pytest.fixture
def contoso_admin(client):
    call_command("seed_demo", stdout=io.StringIO())
    client.force_login(User.objects.get(email="admin@contoso.example"))
    return client


def _payment_methods_page(client):
    account_id = User.objects.get(email="admin@contoso.example").memberships.get().account_id
    return client.get(reverse("payments:methods", args=[account_id]))


def test_stripe_mode_loads_stripe_js_and_the_elements_script(contoso_admin, settings):
    settings.PAYMENT_GATEWAY = "stripe"
    html = _payment_methods_page(contoso_admin).content.decode()
    assert '<script src="https://js.stripe.com/v3/"></script>' in html
    assert "payments/stripe-card.js" in html


def test_simulated_mode_loads_nothing_from_stripe(contoso_admin, settings):
    settings.PAYMENT_GATEWAY = "simulated"
    html = _payment_methods_page(contoso_admin).content.decode()
    assert "stripe" not in html.lower()
