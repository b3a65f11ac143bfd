import pytest

from tests.payments.scenario import build_contoso


@pytest.fixture
def contoso(db):
    return build_contoso()


@pytest.fixture
def fake_stripe(settings):
    from tests.payments.stripe_server import FakeStripe, serve

    fake = FakeStripe()
    server = serve(fake)
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{server.server_address[1]}"
    settings.STRIPE_SECRET_KEY = "sk_test_fake"
    settings.STRIPE_WEBHOOK_SECRET = "whsec_test_secret"
    yield fake
    server.shutdown()
    server.server_close()
    # The contract check: every request the adapter sent in this test must be one the pinned API accepts.
    assert not fake.violations, "sent what the pinned Stripe API refuses: " + "; ".join(
        f"{where}: {v.code} {v.param}" for where, v in fake.violations
    )
