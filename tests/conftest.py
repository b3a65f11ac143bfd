import os
import shutil

import pytest

# live_server with sync Playwright runs Django's ORM from the test thread's event loop.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def pytest_collection_modifyitems(config, items):
    """Browser tests need Chromium; where there is none they are skipped and say why (CI installs it)."""
    if os.path.exists(CHROMIUM):
        return
    reason = f"no Chromium at {CHROMIUM}: apt-get install chromium (or set CHROMIUM=/path/to/chromium)"
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(autouse=True)
def _english_between_tests():
    """Account pages switch to the account's language for the rest of the thread; start each test in English."""
    from django.utils import translation

    translation.activate("en")
    yield
    translation.activate("en")


@pytest.fixture(autouse=True)
def _no_axes_lockouts(settings):
    # Sign-in rate limiting has its own tests; elsewhere it would only make tests order-dependent.
    settings.AXES_ENABLED = False


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """Debian's Chromium, offline: Playwright's own browser download is not available here."""
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    }


@pytest.fixture(autouse=True)
def _fresh_decline_table():
    """The decline-code table is cached per process; a test's rolled-back edits must not leak."""
    from dunning.policy import decline_table_clear

    decline_table_clear()
    yield
    decline_table_clear()
