"""Countries for addresses: ISO 3166-1 alpha-2 codes stored, names shown in the reader's language.

Names come from the CLDR data Babel ships (`Locale("nl").territories`), so an address reads
"Nederland" on a Dutch page and "Netherlands" on an English one, never "NL".
"""

from __future__ import annotations

from functools import lru_cache

from babel import Locale, UnknownLocaleError
from django.utils import translation

# CLDR territories that are not countries with an ISO 3166-1 code of their own.
_NOT_COUNTRIES = {"AC", "CP", "CQ", "DG", "EA", "EU", "EZ", "IC", "QO", "TA", "UN", "XA", "XB", "XK", "ZZ"}


@lru_cache(maxsize=8)
def _names(language: str) -> dict[str, str]:
    try:
        territories = Locale.parse(language.replace("-", "_")).territories
    except (UnknownLocaleError, ValueError, TypeError):
        territories = Locale("en").territories
    return {
        code: name
        for code, name in territories.items()
        if len(code) == 2 and code.isalpha() and code.isupper() and code not in _NOT_COUNTRIES
    }


def country_codes() -> frozenset[str]:
    return frozenset(_names("en"))


def is_country_code(code: str) -> bool:
    return code in _names("en")


def country_name(code: str, language: str | None = None) -> str:
    """The country's name in `language` (default: the active one); the code itself if unknown."""
    code = (code or "").strip().upper()
    if not code:
        return ""
    return _names(language or translation.get_language() or "en").get(code, code)


def country_choices(language: str | None = None) -> list[tuple[str, str]]:
    """(code, name) pairs sorted by name in that language, for a <select>."""
    names = _names(language or translation.get_language() or "en")
    return sorted(names.items(), key=lambda item: item[1].casefold())
