"""Postal addresses as people of the address's country write them: the one address formatter.

Pages (Billing profile, Billing accounts, invoice detail), the invoice PDF and mails print an address through
`format_address()`, so the sold-to, bill-to, seller and card billing addresses all read alike. Only the order
and punctuation of the locality line depend on the country; the country's *name* is in the reader's language
(`billing_portal.countries`, CLDR through Babel), never its ISO code.

The locality patterns follow Google's libaddressinput address metadata (the data behind Chrome's and
Android's address forms, https://chromium-i18n.appspot.com/ssl-address/data/<CC>, field `fmt`:
%C city, %S state/province/county, %Z postal code, %n new line), reduced to the lines after the street:
  US  "%C, %S %Z"       Eugene, OR 97403
  CA  "%C %S %Z"        Toronto ON M5H 2N2
  AU  "%C %S %Z"        Sydney NSW 2000
  GB  "%C%n%Z"          London / SW1A 1AA (post town, then the postcode on its own line)
  IE  "%C%n%S%n%Z"      Dublin / D02 X285
  IT  "%Z %C %S"        00144 Roma RM
  NL, BE, DE, FR, AT, CH, DK, ES, LU, NO, SE, FI, PL, PT and any country not listed: "%Z %C" (1012 AB Amsterdam)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .countries import country_name

# Locality lines after the street lines, per ISO 3166-1 country code (see the module docstring for the source).
_LOCALITY_FORMATS: dict[str, str] = {
    "US": "%C, %S %Z",
    "CA": "%C %S %Z",
    "AU": "%C %S %Z",
    "GB": "%C%n%Z",
    "IE": "%C%n%S%n%Z",
    "IT": "%Z %C %S",
}
_DEFAULT_LOCALITY = "%Z %C"


@dataclass(frozen=True)
class PostalAddress:
    line1: str = ""
    line2: str = ""
    postal_code: str = ""
    city: str = ""
    region: str = ""  # state, province or county: printed where the country writes one
    country: str = ""  # ISO 3166-1 alpha-2

    @classmethod
    def of(cls, obj: Any) -> PostalAddress:
        """The address fields of a model that uses the portal's names (address_line1, address_line2,
        postal_code, city, region, country): a billing account, a payment method."""
        return cls(
            line1=getattr(obj, "address_line1", "") or "",
            line2=getattr(obj, "address_line2", "") or "",
            postal_code=getattr(obj, "postal_code", "") or "",
            city=getattr(obj, "city", "") or "",
            region=getattr(obj, "region", "") or "",
            country=getattr(obj, "country", "") or "",
        )


def _locality_lines(address: PostalAddress, pattern: str) -> list[str]:
    values = {"C": address.city.strip(), "S": address.region.strip(), "Z": address.postal_code.strip()}
    lines = []
    for template in pattern.split("%n"):
        # "%C, %S %Z" → [("C", ", "), ("S", " "), ("Z", "")]: each field with the separator that follows it.
        fields = re.findall(r"%([CSZ])([^%]*)", template)
        present = [(values[key], separator) for key, separator in fields if values[key]]
        # Empty fields leave no stray separators: a present field is followed by its own separator only when
        # another present field comes after it.
        line = "".join(
            value + (separator if i < len(present) - 1 else "")
            for i, (value, separator) in enumerate(present)
        )
        if line:
            lines.append(line)
    return lines


def format_address(
    address: PostalAddress, language: str | None = None, *, with_country: bool = True
) -> list[str]:
    """The address as lines in the country's order, the country's name last in `language` (default: the
    active language). Empty fields leave no empty lines or stray commas."""
    country = address.country.strip().upper()
    pattern = _LOCALITY_FORMATS.get(country, _DEFAULT_LOCALITY)
    lines = [address.line1.strip(), address.line2.strip(), *_locality_lines(address, pattern)]
    if address.region.strip() and "%S" not in pattern:
        lines.append(address.region.strip())
    if with_country and country:
        lines.append(country_name(country, language))
    return [line for line in lines if line]
