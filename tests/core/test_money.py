from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_portal.money import CurrencyMismatch, Money, format_money


@pytest.mark.parametrize(
    ("minor", "currency", "language", "expected"),
    [
        (37650, "EUR", "en", "€376.50"),
        (37650, "EUR", "nl", "€\xa0376,50"),  # a no-break space keeps the symbol with the number
        (125000, "USD", "en", "$1,250.00"),
        (125000, "EUR", "nl", "€\xa01.250,00"),
        (0, "EUR", "en", "€0.00"),
    ],
)
def test_format_money_follows_the_locale(minor, currency, language, expected):
    assert format_money(minor, currency, language) == expected


def test_money_refuses_floats_and_bad_currencies():
    with pytest.raises(TypeError):
        Money(1.5, "EUR")
    with pytest.raises(ValueError, match="ISO 4217"):
        Money(100, "eur")


def test_adding_different_currencies_is_an_error():
    with pytest.raises(CurrencyMismatch):
        Money(100, "EUR") + Money(100, "USD")


def test_from_decimal_refuses_fractions_of_a_cent():
    assert Money.from_decimal("376.50", "EUR") == Money(37650, "EUR")
    with pytest.raises(ValueError, match="more decimals"):
        Money.from_decimal("1.005", "EUR")


@given(st.lists(st.integers(min_value=0, max_value=10**9), max_size=20))
def test_sums_are_exact(amounts):
    total = Money.zero("EUR")
    for amount in amounts:
        total = total + Money(amount, "EUR")
    assert total.amount_minor == sum(amounts)
    assert total.decimal == Decimal(sum(amounts)) / 100
