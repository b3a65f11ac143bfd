"""Country names for people: "Ireland" / "Ierland", never the ISO code we store.

Babel (already our money formatter) carries CLDR's territory names in every language, so no list
of our own has to be kept up to date.
"""

from __future__ import annotations

from babel import Locale, UnknownLocaleError
from django.utils import translation


def country_name(code: str, *, language: str | None = None) -> str:
    """The name of an ISO 3166-1 alpha-2 code in `language` (default: the active one); the code if unknown."""
    code = (code or "").strip().upper()
    if not code:
        return ""
    lang = (language or translation.get_language() or "en").replace("-", "_")
    try:
        locale = Locale.parse(lang)
    except (UnknownLocaleError, ValueError):
        locale = Locale.parse("en")
    return str(locale.territories.get(code, code))
