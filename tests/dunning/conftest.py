import pytest

# These modules test the category schedule (RetryPolicy days 1, 3, 5, 7), which stays available as
# DUNNING_RETRY_POLICY="fixed". The smart policy (the default) has its own tests in test_recovery_*.
FIXED_SCHEDULE_MODULES = {"test_lifecycle", "test_services", "test_races", "test_pages", "test_real_worker"}


@pytest.fixture(autouse=True)
def _fixed_schedule_for_category_tests(request, settings):
    if request.module.__name__.rsplit(".", 1)[-1] in FIXED_SCHEDULE_MODULES:
        settings.DUNNING_RETRY_POLICY = "fixed"
