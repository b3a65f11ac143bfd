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


@pytest.fixture(scope="session", autouse=True)
def _decline_table_cached(django_db_setup, django_db_blocker):
    """The decline-code table is read once per process and kept (60 s in production): load it once
    for the session, so no test's query count depends on being the first to read it."""
    from dunning import policy

    policy.CACHE_SECONDS = 10.0**9
    with django_db_blocker.unblock():
        policy.decline_table_clear()
        policy.decline_table()


@pytest.fixture(autouse=True)
def _fresh_decline_table(django_db_blocker):
    """A test that edited the table (the edit is rolled back) leaves the cache as it found it."""
    from dunning import policy

    before = policy.decline_table_generation()
    yield
    if policy.decline_table_generation() != before:
        with django_db_blocker.unblock():
            policy.decline_table_clear()
            policy.decline_table()


@pytest.fixture
def demo_page(live_server, page):
    """The browser tests' start: the demo data, a desktop viewport, and every console error collected on
    `page.errors` (a CSP violation or a missing asset fails the test that asserts it empty)."""
    from tests.pages_helpers import seed_demo

    seed_demo()
    page.set_viewport_size({"width": 1440, "height": 900})
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.errors = errors
    return page
