"""Structured detectors: addresses of a role and region, the EU operator, identifier codes.

Each returns a :class:`Decision`: a status, the evidence and a confidence. A detector says
``fail`` only when what it looks for is plainly absent; when text is there but does not
parse (a role word without a postal line, a batch word without a code), it says
``unclear`` and quotes what it saw.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

import msgspec

from analyzer.addresses import Address, online_anywhere

Status = Literal["pass", "fail", "unclear"]

# What a code looks like after its keyword: letters, digits and separators, with a digit.
_CODE = re.compile(
    r"\s*(?:[:#№°.]|n[°ºo.]|nr\.?|no\.?|number|nummer|numéro|numero|número)*"
    r"\s*[:#.]?\s*(?P<code>[A-Z0-9][A-Z0-9./-]{1,}[A-Z0-9]|\d{2,})",
    re.IGNORECASE,
)


class Decision(msgspec.Struct, frozen=True):
    """A detector's verdict on one rule."""

    status: Status
    evidence: str
    confidence: float
    absent: bool = False
    """The element was not seen at all (rather than seen and found wanting)."""
    wanted: tuple[str, ...] = ()
    """The patterns looked for and not found: on OCR'd text, a misread form of one of them
    turns a ``fail`` into ``unclear`` (analyzer/misread.py)."""
    seen: tuple[int, ...] = ()
    """Lines holding the part of the element that was found: the rest is expected nearby."""


def _describe(address: Address, lines: Sequence[str]) -> str:
    text = " / ".join(lines[i] for i in address.lines)
    where = address.country if address.country != "?" else f"region {address.region}"
    return f'"{text}" ({where}, address confidence {address.confidence:.2f})'


def address_rule(
    addresses: Sequence[Address],
    lines: Sequence[str],
    *,
    regions: Sequence[str],
    electronic: bool,
    excluded_roles: Sequence[str],
    role_lines: Sequence[int] = (),
) -> Decision:
    """An address of the wanted region (any when empty), and its e-mail/web when asked."""
    usable = [a for a in addresses if a.role not in excluded_roles]
    if regions:
        # "?" is a format several regions share: it may be the wanted one, so it is a doubt.
        fitting = [a for a in usable if a.region in regions]
        doubtful = [a for a in usable if a.region == "?"]
    else:
        fitting, doubtful = usable, []
    named = [a for a in fitting if a.has_name or a.role]
    if named:
        best = max(named, key=lambda a: (bool(a.electronic), a.confidence))
        if electronic and not best.electronic:
            elsewhere = online_anywhere(lines)
            if elsewhere:
                return Decision(
                    "unclear",
                    f"Address {_describe(best, lines)}; an e-mail/web address is on the label "
                    f'("{elsewhere}") but not next to it.',
                    0.6,
                )
            return Decision(
                "fail",
                f"Postal address {_describe(best, lines)} but no e-mail or web address.",
                0.9,
                seen=best.lines,
            )
        return Decision("pass", _describe(best, lines), best.confidence)
    if fitting or doubtful:
        seen = (fitting or doubtful)[0]
        return Decision(
            "unclear",
            f"An address that may not qualify (no company name, or its country is unclear): "
            f"{_describe(seen, lines)}.",
            0.5,
        )
    if usable:
        return Decision(
            "fail",
            f"Only addresses outside {'/'.join(regions)}: "
            + "; ".join(_describe(a, lines) for a in usable[:2]),
            0.85,
            seen=tuple(i for a in usable[:2] for i in a.lines),
        )
    if role_lines:
        # A role word with text after it but no postal line we know: an address in a format
        # missing from the postal table, or one without its code. A doubt, not a failure.
        first = role_lines[0]
        text = " / ".join(lines[first : first + 3])
        return Decision(
            "unclear", f'A company is named but no postal line could be parsed: "{text}".', 0.55
        )
    return Decision(
        "fail", "No postal address (name, street, postal code and city) found.", 0.9, absent=True
    )


def operator_rule(
    addresses: Sequence[Address], lines: Sequence[str], non_eu: str, operator_role: str
) -> Decision:
    """GPSR: a maker outside the EU needs an economic operator with an EU address."""
    makers = [a for a in addresses if a.role != operator_role]
    maker = makers[0] if makers else None
    if maker is not None and maker.region == "EU" and not maker.named and non_eu:
        # An EU-looking postal code without a country, and a non-EU origin on the label:
        # probably an EU maker producing abroad, but a shared format could be Türkiye's.
        return Decision(
            "unclear",
            f"The manufacturer's address looks European ({_describe(maker, lines)}) but its "
            f'country is not printed and the label names a non-EU origin ("{non_eu}").',
            0.5,
        )
    if maker is not None and maker.region == "EU":
        return Decision(
            "pass", f"The manufacturer is in the EU: {_describe(maker, lines)}.", maker.confidence
        )
    in_eu = [a for a in addresses if a.region == "EU" and a is not maker]
    with_role = [a for a in in_eu if a.role == operator_role]
    if with_role or in_eu:
        best = (with_role or in_eu)[0]
        return Decision("pass", f"EU operator: {_describe(best, lines)}.", best.confidence)
    if maker is not None and maker.region not in {"EU", "?"}:
        return Decision(
            "fail",
            f"The manufacturer is outside the EU ({_describe(maker, lines)}) and no EU "
            "importer, authorised representative or responsible person is named.",
            0.9,
        )
    if not non_eu:
        return Decision("pass", "No non-EU manufacturer or origin on the label.", 0.7)
    return Decision(
        "unclear",
        f'A non-EU origin ("{non_eu}") and no EU address; whether the manufacturer is in the '
        "EU could not be read.",
        0.5,
    )


def code_rule(text: str, keywords: re.Pattern[str]) -> Decision:
    """A keyword (batch, lot, model...) followed by a code with at least one digit."""
    seen: list[str] = []
    for match in keywords.finditer(text):
        tail = _CODE.match(text, match.end())
        if tail and any(ch.isdigit() for ch in tail.group("code")):
            line = text[match.start() : tail.end()].replace("\n", " ")
            return Decision("pass", f'"{line.strip()}"', 0.95)
        seen.append(text[match.start() : match.end() + 16].replace("\n", " "))
    if seen:
        return Decision("unclear", f"An identifier word without a readable code: {seen[0]!r}.", 0.5)
    # No misread check here: a code is any letters and digits, so an edit or two turns
    # almost any short word and number into "keyword + code".
    return Decision("fail", "No batch, lot, type, model or serial number found.", 0.9, absent=True)
