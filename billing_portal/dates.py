"""Dates for people: '24 Nov 2026' in English, '24 nov 2026' in Dutch (Dutch writes months in lower case)."""

from __future__ import annotations

import datetime as dt
import functools

from django.utils import formats, timezone, translation


def format_date(value: dt.date | dt.datetime, language: str | None = None) -> str:
    """In `language`, or the active language when None. Used by the |longdate filter and in mails."""
    language = (language or translation.get_language() or "en").split("-")[0]
    if type(value) is dt.date:  # a plain date is the same text every time: remember it
        return _format_day(value, language)
    with translation.override(language):
        return formats.date_format(value, "j b Y" if language == "nl" else "j M Y")


@functools.lru_cache(maxsize=4096)
def _format_day(value: dt.date, language: str) -> str:
    with translation.override(language):
        return formats.date_format(value, "j b Y" if language == "nl" else "j M Y")


def format_datetime(value: dt.datetime, language: str | None = None, *, seconds: bool = False) -> str:
    """'24 Nov 2026 14:05' / '24 nov 2026 14:05', in the portal's time zone (support console, timelines)."""
    language = (language or translation.get_language() or "en").split("-")[0]
    local = timezone.localtime(value) if timezone.is_aware(value) else value
    return (
        f"{format_date(local, language)} {local:%H:%M:%S}"
        if seconds
        else f"{format_date(local, language)} {local:%H:%M}"
    )


def format_day_month(value: dt.date, language: str | None = None) -> str:
    """'24 Nov' / '24 nov': chart axes and other places where the year is plain from the context."""
    language = (language or translation.get_language() or "en").split("-")[0]
    with translation.override(language):
        return formats.date_format(value, "j b" if language == "nl" else "j M")
