"""Postal addresses on a label as structures: role, name, street, postal line, region.

An address is found from its postal line (a code in one of the formats of the
``[postal.<CC>]`` table of ``rulebook.toml``, next to a city word), then grown upwards to
the lines that carry its name and role and downwards to its e-mail or web address. A new
country is a new table row, not a new regex in every rule.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Literal

import msgspec

CityPlace = Literal["after", "before"]
_LETTERS = r"[^\W\d_]"
_CITY_AFTER = rf"(?P<city>{_LETTERS}[^\W\d_'\u2019.-]*(?:[-' ]{_LETTERS}+)?)"
_CITY_BEFORE = rf"(?P<city>{_LETTERS}[^\W\d_'\u2019. -]*(?:[ '\u2019.-]+{_LETTERS}+)*)"
_ONLINE = re.compile(
    r"[\w.+-]+@[\w-]+(\.[\w-]+)+|\b(https?://|www\.)\S+|\b[\w-]+\.(com|de|fr|it|es|eu|nl|be|at"
    r"|pl|pt|ie|se|dk|fi|cz|sk|hu|ro|bg|gr|hr|si|lt|lv|ee|lu|mt|cy|co\.uk|uk|net|org|ca|jp|cn"
    r"|info|shop)\b(/\S*)?",
    re.IGNORECASE,
)
# Words that follow a number on a label without being a city ("12345, E-mail: ...").
_NOT_CITY = frozenset(
    {
        "e-mail",
        "email",
        "mail",
        "tel",
        "tel.",
        "fax",
        "phone",
        "www",
        "web",
        "kcal",
        "kj",
        "contact",
        "kontakt",
        "info",
        "service",
        "hotline",
    }
)
# A line that ends with a postal-code-like token ("L-8327,", "731 64"), not with a date
# ("01 2026", "10.2027", "03/06/2027"): digits after a digit and a separator are a date's.
_CODE_AT_END = re.compile(
    r"(?<![\w./-])(?<!\d[ ./-])(?:[A-Z]{1,3}-?)?\d{3,5}(?:[ -]\d{2,3})?,?\s*$"
)
_BACK = 3  # lines above a postal line that may hold its street, name and role
_AHEAD = 2  # lines below it that may hold its e-mail or web address


class PostalFormat(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How one country writes its postal line."""

    region: str
    code: str
    city: CityPlace = "after"
    names: tuple[str, ...] = ()


class Address(msgspec.Struct, frozen=True, kw_only=True):
    """One address block as read from the label."""

    lines: tuple[int, ...]
    postal_line: int
    country: str  # ISO-like code, or "?" when the format fits several countries
    region: str  # EU, UK, US, CA, JP, OTHER, or "?"
    named: bool  # the country is printed (not only inferred from the code format)
    role: str  # the vocabulary name of the role word, "" when none
    has_name: bool
    has_street: bool
    electronic: str  # the e-mail or web address that belongs to it, "" when none

    @property
    def confidence(self) -> float:
        """How sure the parse is: postal line, plus the name, street and a named country."""
        score = 0.55 + 0.15 * self.has_name + 0.1 * self.has_street + 0.1 * bool(self.role)
        return round(min(1.0, score + 0.1 * (self.named or self.region != "?")), 2)


@functools.cache
def _compiled(
    table: tuple[tuple[str, PostalFormat], ...],
) -> list[tuple[str, PostalFormat, re.Pattern[str], list[re.Pattern[str]]]]:
    out = []
    for code, fmt in table:
        if fmt.city == "after":
            pattern = rf"(?<![\w-])(?P<code>{fmt.code})\s?,?\s*{_CITY_AFTER}"
        else:
            # The city may sit on the line above ("Leeds" / "LS1 4AB"): then only a code
            # with letters in it (UK, CA, IE, MT) is distinctive enough on its own.
            pattern = rf"(?:{_CITY_BEFORE},?\s+)?(?<![\w-])(?P<code>{fmt.code})(?![\w-])"
        names = [re.compile(rf"(?<!\w){re.escape(n)}(?!\w)", re.IGNORECASE) for n in fmt.names]
        out.append((code, fmt, re.compile(pattern), names))
    return out


def _postal(
    line: str, next_line: str, table: Mapping[str, PostalFormat]
) -> tuple[str, str, bool] | None:
    """(country, region, named) of a postal line, or None."""
    candidates: list[tuple[str, PostalFormat, bool, str]] = []
    for code, fmt, pattern, names in _compiled(tuple(sorted(table.items()))):
        for match in pattern.finditer(line):
            if _is_city(match.group("city"), match.group("code")):
                # The country counts when printed on the postal line or alone on the next
                # one; a "Made in China" line below an address says nothing of the address.
                alone = next_line.strip(" .,")
                printed = any(n.search(line) for n in names) or any(
                    n.fullmatch(alone) for n in names
                )
                candidates.append((code, fmt, printed, match.group("code")))
                break
    if not candidates:
        return None
    named = [c for c in candidates if c[2]]
    if named:
        return named[0][0], named[0][1].region, True
    # A code with letters (UK, CA, NL, IE, US state + ZIP) says more than a run of digits.
    lettered = [c for c in candidates if re.search(r"[A-Z]", c[3])]
    if lettered:
        candidates = lettered
    regions = [fmt.region for _, fmt, _, _ in candidates]
    country = candidates[0][0] if len(candidates) == 1 else "?"
    # A format several countries share (5 digits: DE, FR, IT, ES... and TR) without a
    # country name: the region most of them belong to, marked as inferred ("?" country).
    top = max(set(regions), key=regions.count)
    if regions.count(top) * 2 > len(regions):
        return country, top, False
    return "?", "?", False


def _is_city(city: str | None, code: str) -> bool:
    """A city is a name: capitalised, in capitals, or in a script without case; not a unit."""
    if city is None:
        return any(ch.isalpha() for ch in code)
    city = city.strip()
    # The first word is the name ("D Ch" after "43548D Ch.-B." is a code, not "D" city).
    if len(city.split()[0]) < 3 or city.lower() in _NOT_CITY:
        return False
    first = city[0]
    return first.isupper() or unicodedata.category(first) == "Lo"


def find_addresses(
    lines: Sequence[str],
    table: Mapping[str, PostalFormat],
    roles: Mapping[str, re.Pattern[str]],
    legal_form: re.Pattern[str],
) -> list[Address]:
    """Every address block, top to bottom."""
    postal = [
        _postal(line, lines[i + 1] if i + 1 < len(lines) else "", table)
        for i, line in enumerate(lines)
    ]
    for i in range(len(lines) - 1):
        if postal[i] is None and postal[i + 1] is None and _CODE_AT_END.search(lines[i]):
            # A postal line wrapped after its code ("..., L-8327" / "Esch-sur-Alzette,
            # Luxemburg"), as narrow labels and two-column layouts wrap it.
            after = lines[i + 2] if i + 2 < len(lines) else ""
            postal[i] = _postal(f"{lines[i]} {lines[i + 1]}", after, table)
    found: list[Address] = []
    for i, hit in enumerate(postal):
        if hit is None:
            continue
        country, region, named = hit
        block = [i]
        role = _role(lines[i], roles)
        for j in range(i - 1, max(-1, i - 1 - _BACK), -1):
            if postal[j] is not None or _ONLINE.search(lines[j]):
                break
            block.insert(0, j)
            if role:
                break
            role = _role(lines[j], roles)
            if role:
                break
        electronic = _online(lines[i])
        for j in range(i + 1, min(len(lines), i + 1 + _AHEAD)):
            if electronic or postal[j] is not None or _role(lines[j], roles):
                break
            electronic = _online(lines[j])
            if electronic:
                block.append(j)
        text = "\n".join(lines[k] for k in block)
        found.append(
            Address(
                lines=tuple(block),
                postal_line=i,
                country=country,
                region=region,
                named=named,
                role=role,
                # A name line, a street line, a postal line: the shape of an address names
                # its company even when OCR garbles the legal form ("d.o.0.").
                has_name=bool(legal_form.search(text))
                or len(block) >= 3
                or bool(role and len(block) > 1),
                has_street=bool(
                    re.search(rf"\d+\s*{_LETTERS}{{2,}}|{_LETTERS}{{3,}}\.?\s+\d", text)
                ),
                electronic=electronic,
            )
        )
    return found


def _role(line: str, roles: Mapping[str, re.Pattern[str]]) -> str:
    hits = [(m.start(), name) for name, p in roles.items() if (m := p.search(line))]
    return min(hits)[1] if hits else ""


def _online(line: str) -> str:
    match = _ONLINE.search(line)
    return match.group(0) if match else ""


def online_anywhere(lines: Sequence[str]) -> str:
    """The first e-mail or web address on the label, "" when none."""
    return next((hit for line in lines if (hit := _online(line))), "")
