"""Label parts shared by every marketplace: companies with addresses, codes, dates."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from bench.labelset import wording as w
from bench.labelset.world import COUNTRIES, Country, address, company, electronic

Blocks = dict[str, list[str]]


@dataclass
class Draft:
    """A label being composed: named blocks and what a reader expects of the rules."""

    blocks: Blocks = field(default_factory=dict)
    expected: dict[str, str] = field(default_factory=dict)
    # Planted problems: name -> (blocks to replace (None drops), expected statuses).
    variants: dict[str, tuple[dict[str, list[str] | None], dict[str, str]]] = field(
        default_factory=dict
    )

    def add(self, name: str, lines: list[str]) -> None:
        """Append a block."""
        self.blocks[name] = lines

    def variant(
        self, name: str, changes: dict[str, list[str] | None], expected: dict[str, str]
    ) -> None:
        """Register a planted problem."""
        self.variants[name] = (changes, expected)


def pick(rng: random.Random, options: tuple[str, ...], **fields: str) -> str:
    """One template, filled."""
    return rng.choice(options).format(**fields)


def code(rng: random.Random) -> str:
    """A batch or model code as printed: letters, digits, sometimes a dash or slash."""
    letters = "".join(rng.choice("ABCDEFGHKLMNPRSTXZ") for _ in range(rng.randint(1, 3)))
    digits = str(rng.randint(100, 99999))
    return rng.choice(
        (
            f"{letters}{digits}",
            f"{letters}-{digits}",
            digits + letters[:1],
            f"{digits[:2]}/{digits[2:] or '01'}{letters[:1]}",
            f"{letters}{digits}-{rng.randint(1, 9)}",
        )
    )


def date(rng: random.Random) -> tuple[str, str]:
    """A day date and a month date, in one of the formats labels use."""
    y, m, d = rng.randint(2025, 2028), rng.randint(1, 12), rng.randint(1, 28)
    day = rng.choice(
        (
            f"{d:02d}.{m:02d}.{y}",
            f"{d:02d}/{m:02d}/{y}",
            f"{d:02d}.{m:02d}.{y % 100:02d}",
            f"{y}-{m:02d}-{d:02d}",
            f"{d:02d} {m:02d} {y}",
        )
    )
    month = rng.choice((f"{m:02d}/{y}", f"{m:02d}.{y}", f"{m:02d} {y}", f"{m:02d}-{y}"))
    return day, month


@dataclass(frozen=True)
class Party:
    """A company with an address: the lines a label prints for it."""

    name: str
    country: Country
    address_lines: tuple[str, ...]
    contact: str


def party(rng: random.Random, country_code: str, language: str) -> Party:
    """A company of the country, its postal address and an electronic address."""
    country = COUNTRIES[country_code]
    name = company(rng, country)
    lines = address(rng, country, language, with_country=None)
    return Party(name, country, tuple(lines), electronic(rng, name, country))


def party_lines(
    rng: random.Random,
    role: str,
    who: Party,
    *,
    contact: bool = True,
    postal: bool = True,
) -> list[str]:
    """How a label prints a role and a party: on one line, two, or three."""
    addr = list(who.address_lines)
    if not postal:
        # The postal line without its code: "Berlin, Germany" only.
        addr = [addr[0].split(",")[0], who.country.cities[0]]
    extra = [who.contact] if contact else []
    style = rng.random()
    if not role:
        head = [who.name]
    elif style < 0.45:
        head = [f"{role} {who.name}"]
    elif style < 0.7:
        head = [role.rstrip(" :"), who.name]
    else:
        # Everything on one line, as small labels often do.
        return [f"{role} {who.name}, {', '.join(addr)}" + (f", {extra[0]}" if extra else "")]
    return head + addr + extra


def role(rng: random.Random, table: dict[str, tuple[str, ...]], language: str) -> str:
    """A role wording in the language."""
    return rng.choice(table[language])


def coo_line(rng: random.Random, country: Country, language: str) -> str:
    """The country of origin as written in the language."""
    name = country.names.get(language, country.names["en"])
    template = rng.choice(w.COO[language])
    return template.format(country=name, COUNTRY=name.upper())
