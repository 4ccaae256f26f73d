"""The normalised text that `list --search` matches patients against (pure; no I/O).

Stored on the patient (`patient.search_text`) whenever a patient is imported: lower case, accents
stripped (`José` -> `jose`, `Łukasz` -> `lukasz`), apostrophes dropped (`O'Brien` -> `obrien`),
"first last", "last first", the email, and the phone's digits, separated by ` | `. A search is
split into words (spaces, commas) and every word must appear (AND), so `Garcia, Sofia`,
`sofia  garcia` and `sofia.garcia` all find Sofia Garcia. One plain text column, so a later
FTS5 / pg_trgm index can serve it as it is.
"""

from __future__ import annotations

import re
import unicodedata

# Letters that are not "a base letter plus an accent" in Unicode, so NFKD leaves them alone.
_FOLD = str.maketrans(
    {
        "ł": "l",
        "ø": "o",
        "đ": "d",
        "ð": "d",
        "ħ": "h",
        "ı": "i",
        "ŀ": "l",
        "þ": "th",
        "ß": "ss",
        "æ": "ae",
        "œ": "oe",
        "'": None,
        "’": None,
        "‘": None,
        "`": None,
    }
)
_SPACES = re.compile(r"\s+")
_WORD_SPLIT = re.compile(r"[\s,;]+")


def fold(text: str) -> str:
    """Lower case without accents, spaces collapsed."""
    t = unicodedata.normalize("NFKD", text.casefold())
    t = "".join(ch for ch in t if not unicodedata.combining(ch)).translate(_FOLD)
    return _SPACES.sub(" ", unicodedata.normalize("NFC", t)).strip()


def search_text(first_name: str | None, last_name: str | None, email: str | None, phone: str | None) -> str:
    first, last = fold(first_name or ""), fold(last_name or "")
    parts = [f"{first} {last}".strip(), f"{last} {first}".strip()]
    if any(unicodedata.east_asian_width(ch) == "W" for ch in first + last):
        parts.append(f"{last}{first}")  # CJK names are written family name first, without a space
    parts += [fold(email or ""), re.sub(r"\D", "", phone or "")]
    return " | ".join(parts)


def search_words(query: str) -> list[str]:
    """The words of a search, folded the same way; every one must match."""
    return [w for w in _WORD_SPLIT.split(fold(query)) if w and w != "|"]
