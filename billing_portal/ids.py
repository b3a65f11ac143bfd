"""Ids from people and URLs: ASCII digits only, and small enough for a bigint column.

`str.isdigit()` accepts "²" and "٣" (and `int("٣")` is 3), so a hostile `?attempt=٣` would name attempt 3,
and `int("²")` raises. A 20-digit value overflows PostgreSQL's bigint and SQLite's INTEGER. Every id read
from a query string, a form or a path goes through `parse_id` or the `id` path converter.
"""

from __future__ import annotations

import re

# bigint holds 19 digits; 18 keeps every value below 2**63 without a second comparison.
MAX_ID_DIGITS = 18
_ID_RE = re.compile(rf"[0-9]{{1,{MAX_ID_DIGITS}}}")
# A page number far past any list's end is still a number: clamp instead of refusing.
MAX_PAGE = 1_000_000


def parse_id(raw: object) -> int | None:
    """The positive id `raw` names, or None when it is anything else (Unicode digits, signs, too long)."""
    if not isinstance(raw, str):
        return None
    value = raw.strip()
    if not _ID_RE.fullmatch(value):
        return None
    number = int(value)
    return number if number > 0 else None


def parse_page(raw: object) -> int:
    """A 1-based page number from `?page=`: anything that is not a plain ASCII number means page 1."""
    if isinstance(raw, str) and re.fullmatch(r"[0-9]{1,30}", raw.strip()):
        return max(1, min(int(raw.strip()), MAX_PAGE))
    return 1


class IdConverter:
    """`<id:name>` in URL patterns: like `<int:>`, but never a value the database cannot hold."""

    regex = rf"[0-9]{{1,{MAX_ID_DIGITS}}}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


class KeyConverter:
    """`<key:name>` for invoice numbers and bank references: printable ASCII without '/', at most 64."""

    regex = r"[A-Za-z0-9._~-]{1,64}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value
