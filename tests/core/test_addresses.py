"""The one address formatter (billing_portal.addresses): each country's locality order, country names in the
reader's language, no empty lines or stray separators, and the same lines on the page, the PDF and the model."""

from __future__ import annotations

import pytest
from django.utils import translation

from billing_portal.addresses import PostalAddress, format_address


@pytest.mark.parametrize(
    ("country", "postal_code", "city", "region", "english", "dutch"),
    [
        (
            "NL",
            "1012 AB",
            "Amsterdam",
            "",
            ["1012 AB Amsterdam", "Netherlands"],
            ["1012 AB Amsterdam", "Nederland"],
        ),
        ("DE", "10115", "Berlin", "", ["10115 Berlin", "Germany"], ["10115 Berlin", "Duitsland"]),
        ("BE", "1000", "Brussel", "", ["1000 Brussel", "Belgium"], ["1000 Brussel", "België"]),
        ("FR", "75008", "Paris", "", ["75008 Paris", "France"], ["75008 Paris", "Frankrijk"]),
        (
            "US",
            "97403",
            "Eugene",
            "OR",
            ["Eugene, OR 97403", "United States"],
            ["Eugene, OR 97403", "Verenigde Staten"],
        ),
        (
            "GB",
            "SW1A 2AA",
            "London",
            "",
            ["London", "SW1A 2AA", "United Kingdom"],
            ["London", "SW1A 2AA", "Verenigd Koninkrijk"],
        ),
        (
            "IE",
            "D02 X285",
            "Dublin",
            "",
            ["Dublin", "D02 X285", "Ireland"],
            ["Dublin", "D02 X285", "Ierland"],
        ),
        (
            "CA",
            "M5H 2N2",
            "Toronto",
            "ON",
            ["Toronto ON M5H 2N2", "Canada"],
            ["Toronto ON M5H 2N2", "Canada"],
        ),
        ("IT", "00144", "Roma", "RM", ["00144 Roma RM", "Italy"], ["00144 Roma RM", "Italië"]),
    ],
)
def test_each_country_writes_its_locality_line_its_own_way(
    country, postal_code, city, region, english, dutch
):
    address = PostalAddress(
        line1="Street 1", line2="", postal_code=postal_code, city=city, region=region, country=country
    )
    assert format_address(address, "en") == ["Street 1", *english]
    assert format_address(address, "nl") == ["Street 1", *dutch]


def test_the_active_language_names_the_country_when_none_is_given():
    address = PostalAddress(line1="Keizersgracht 1", postal_code="1015 CJ", city="Amsterdam", country="nl")
    with translation.override("nl"):
        assert format_address(address)[-1] == "Nederland"
    with translation.override("en"):
        assert format_address(address)[-1] == "Netherlands"


def test_missing_fields_leave_no_empty_lines_or_stray_separators():
    assert format_address(PostalAddress(line1="2732 Baker Blvd.", city="Eugene", country="US"), "en") == [
        "2732 Baker Blvd.",
        "Eugene",
        "United States",
    ]
    assert format_address(PostalAddress(postal_code="97403", region="OR", country="US"), "en") == [
        "OR 97403",
        "United States",
    ]
    assert format_address(PostalAddress(city="London", country="GB"), "en") == ["London", "United Kingdom"]
    assert format_address(PostalAddress(), "en") == []


def test_a_region_the_country_does_not_print_in_its_locality_line_gets_a_line_of_its_own():
    address = PostalAddress(
        line1="Stationsplein 1", postal_code="3511 ED", city="Utrecht", region="Utrecht", country="NL"
    )
    assert format_address(address, "en") == ["Stationsplein 1", "3511 ED Utrecht", "Utrecht", "Netherlands"]


def test_an_unknown_country_code_is_shown_as_it_is_and_the_country_can_be_left_out():
    assert format_address(PostalAddress(city="Somewhere", postal_code="1", country="QQ"), "en") == [
        "1 Somewhere",
        "QQ",
    ]
    address = PostalAddress(line1="Herengracht 100", postal_code="1015 BS", city="Amsterdam", country="NL")
    assert format_address(address, "en", with_country=False) == ["Herengracht 100", "1015 BS Amsterdam"]


@pytest.mark.django_db
def test_accounts_cards_and_the_invoice_document_use_the_same_lines():
    from accounts.models import BillingAccount
    from billing.documents import bill_to_lines, seller_lines

    account = BillingAccount(
        name="Northwind",
        address_line1="2732 Baker Blvd.",
        postal_code="97403",
        city="Eugene",
        region="OR",
        country="US",
    )
    with translation.override("nl"):
        assert account.address_lines == ["2732 Baker Blvd.", "Eugene, OR 97403", "Verenigde Staten"]
        assert account.sold_to_lines == account.address_lines
    assert bill_to_lines(account, "nl") == ["2732 Baker Blvd.", "Eugene, OR 97403", "Verenigde Staten"]
    assert seller_lines("nl")[-1] == "Nederland"
    assert seller_lines("en")[-1] == "Netherlands"
