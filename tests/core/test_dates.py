import datetime as dt

import pytest
from django.utils import translation

from billing_portal.dates import format_date


@pytest.mark.parametrize(("language", "expected"), [("en", "24 Nov 2026"), ("nl", "24 nov 2026")])
def test_dates_are_written_out_in_the_language_asked_for(language, expected):
    assert format_date(dt.date(2026, 11, 24), language) == expected


def test_without_a_language_the_active_one_is_used():
    with translation.override("nl"):
        assert format_date(dt.date(2026, 3, 5)) == "5 mrt 2026"
    with translation.override("en"):
        assert format_date(dt.date(2026, 3, 5)) == "5 Mar 2026"
