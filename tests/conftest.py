import os

import pytest

# live_server with sync Playwright runs Django's ORM from the test thread's event loop.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(autouse=True)
def _no_axes_lockouts(settings):
    # Sign-in rate limiting has its own tests; elsewhere it would only make tests order-dependent.
    settings.AXES_ENABLED = False
