# ruff: noqa: E501 - label text reads best on one line
"""Label content per marketplace and category: the compliant label and its planted problems.

Expectations are written from what each label says, by a reader who knows the regulation
(shared/LABEL_RULES.md); a planted problem names the rules that must flag it (``fail``, or
``unclear`` where the rule only asks for a review). Every other text rule is expected to pass.
"""

from __future__ import annotations

import random

from bench.labelset import wording as w
from bench.labelset.parts import Draft, code, coo_line, date, party, party_lines, pick, role
from bench.labelset.world import COUNTRIES, EU, NON_EU_MAKERS

LANG = {"US": "en", "UK": "en", "DE": "de", "FR": "fr", "IT": "it", "ES": "es", "CA": "en"}
LANG_RULE = {"DE": "DE-ALL-LANG", "FR": "FR-ALL-LANG", "IT": "IT-ALL-LANG", "ES": "ES-ALL-LANG"}
EU_MARKETS = frozenset({"DE", "FR", "IT", "ES"})


def _langs(markets: tuple[str, ...]) -> list[str]:
    return list(dict.fromkeys(LANG[m] for m in markets))


def _per_lang(rng: random.Random, table: dict[str, tuple[str, ...]], langs: list[str]) -> list[str]:
    return [rng.choice(table[lang]) for lang in langs]


def _identity(rng: random.Random, draft: Draft, langs: list[str], category: str) -> None:
    draft.add("title", [rng.choice(w.TITLES[category][lang]) for lang in langs])


def _filler(rng: random.Random, draft: Draft, langs: list[str]) -> None:
    draft.add("filler", [line for lang in langs for line in rng.sample(w.FILLER[lang], 2)])


def eu_nonfood(rng: random.Random, markets: tuple[str, ...], category: str) -> Draft:
    """GPSR labels for DE/FR/IT/ES (toys, electronics, general)."""
    draft = Draft()
    langs = _langs(markets)
    lead = langs[0]
    _identity(rng, draft, langs, category)
    if category == "toys":
        draft.add("warning", [ln for lang in langs for ln in rng.choice(w.TOY_WARNING[lang])])
    if category == "electronics":
        draft.add(
            "rating",
            [
                f"{rng.choice(('230 V~', '220-240V~', '5V ⎓ 2A', '100-240 V'))} 50 Hz {rng.randint(5, 60)} W"
            ],
        )
    ids = [pick(rng, w.MODEL[lead], code=code(rng))]
    if rng.random() < 0.6:
        ids.append(pick(rng, w.BATCH[lead], code=code(rng)))
    draft.add("id", [" ".join(ids)] if rng.random() < 0.4 else ids)
    non_eu = rng.random() < 0.45
    maker = party(rng, rng.choice(NON_EU_MAKERS) if non_eu else rng.choice(EU), lead)
    maker_role = (
        rng.choice((*w.ROLE_MAKER[lead], "")) if not non_eu else rng.choice(w.ROLE_MAKER[lead])
    )
    draft.add("maker", party_lines(rng, maker_role, maker))
    if non_eu:
        operator = party(rng, rng.choice(EU), lead)
        draft.add("operator", party_lines(rng, role(rng, w.ROLE_EU_OPERATOR, lead), operator))
        draft.variant("no-operator", {"operator": None}, {"EU-ALL-GPSR-OPERATOR": "fail"})
    if rng.random() < 0.6 or non_eu:
        origin = COUNTRIES[rng.choice(("CN", "VN"))] if non_eu else maker.country
        draft.add("coo", [coo_line(rng, origin, lead)])
    if (category == "electronics" and rng.random() < 0.4) or (
        category == "toys" and rng.random() < 0.3
    ):
        draft.add("battery", _per_lang(rng, w.BATTERY, langs))
    _filler(rng, draft, langs)
    draft.variant("no-id", {"id": None}, {"EU-ALL-GPSR-ID": "fail"})
    draft.variant(
        "no-contact",
        {"maker": party_lines(rng, maker_role or w.ROLE_MAKER[lead][0], maker, contact=False)},
        {"EU-ALL-GPSR-MANUFACTURER": "fail"},
    )
    draft.variant(
        "no-postcode",
        {"maker": party_lines(rng, maker_role or w.ROLE_MAKER[lead][0], maker, postal=False)},
        {"EU-ALL-GPSR-MANUFACTURER": "fail"},
    )
    if category == "toys":
        draft.variant("no-warning", {"warning": None}, {"EU-TOY-AGE-WARNING": "fail"})
    if len(markets) == 1 and lead != "en":
        english: dict[str, list[str] | None] = {
            "id": [pick(rng, w.MODEL["en"], code=code(rng))],
            "maker": party_lines(rng, rng.choice(w.ROLE_MAKER["en"]), maker),
        }
        if "coo" in draft.blocks:
            english["coo"] = [coo_line(rng, COUNTRIES["CN"] if non_eu else maker.country, "en")]
        if non_eu:
            english["operator"] = party_lines(rng, role(rng, w.ROLE_EU_OPERATOR, "en"), operator)
        _english_only(rng, draft, markets[0], category, english)
    return draft


def _english_only(
    rng: random.Random,
    draft: Draft,
    market: str,
    category: str,
    english: dict[str, list[str] | None] | None = None,
) -> None:
    """The same label written in English only: the marketplace's language rule fails."""
    changes: dict[str, list[str] | None] = {
        "title": [rng.choice(w.TITLES[category]["en"])],
        "filler": list(w.FILLER["en"][:2]),
        **(english or {}),
    }
    expected = {LANG_RULE[market]: "fail"}
    if "warning" in draft.blocks:
        changes["warning"] = list(w.TOY_WARNING["en"][0])
        expected["EU-TOY-AGE-WARNING"] = "fail"
    if "use" in draft.blocks:
        changes["use"] = ["Apply twice a day. Avoid contact with eyes."]
    for name in ("storage", "battery"):
        changes[name] = None
    draft.variant("english-only", changes, expected)


def uk_nonfood(rng: random.Random, category: str) -> Draft:
    """UK toys, electronics, general: English, UK importer or maker, toy warnings."""
    draft = Draft()
    _identity(rng, draft, ["en"], category)
    if category == "toys":
        draft.add("warning", list(rng.choice(w.TOY_WARNING["en"])))
        draft.variant("no-warning", {"warning": None}, {"EU-TOY-AGE-WARNING": "fail"})
    draft.add(
        "id", [pick(rng, w.MODEL["en"], code=code(rng)), pick(rng, w.BATCH["en"], code=code(rng))]
    )
    if rng.random() < 0.5:
        maker = party(rng, "UK", "en")
        if rng.random() < 0.5:
            # "Made in the UK by <company>, <address>" names the maker and the origin at once.
            draft.add(
                "maker", [f"Made in the UK by {maker.name}, {', '.join(maker.address_lines)}"]
            )
        else:
            draft.add("maker", party_lines(rng, role(rng, w.ROLE_MAKER, "en"), maker))
    else:
        maker = party(rng, rng.choice((*NON_EU_MAKERS, "DE", "FR", "IT")), "en")
        draft.add("maker", party_lines(rng, role(rng, w.ROLE_MAKER, "en"), maker))
        draft.add("coo", [coo_line(rng, maker.country, "en")])
        importer = party(rng, "UK", "en")
        draft.add("importer", party_lines(rng, rng.choice(w.ROLE_UK_IMPORTER), importer))
        draft.variant("no-importer", {"importer": None}, {"UK-ALL-IMPORTER": "unclear"})
    _filler(rng, draft, ["en"])
    return draft


def us_label(rng: random.Random, category: str) -> Draft:  # noqa: PLR0915 - one block per element
    """US labels: origin, business, and the category's FDA/CPSC/FCC elements."""
    draft = Draft()
    _identity(rng, draft, ["en"], category)
    made = COUNTRIES[rng.choice(("CN", "VN", "US", "DE", "CA", "JP"))]
    business = party(rng, "US", "en")
    biz_role = rng.choice(w.ROLE_DISTRIBUTOR["en"] + w.ROLE_MAKER["en"])
    oz = rng.choice(("1.7", "3.4", "8", "12", "16"))
    grams = str(round(float(oz) * 28.35))
    if category == "toys":
        draft.add("choking", list(rng.choice(w.US_CHOKING)))
        draft.add(
            "tracking",
            [
                pick(rng, w.BATCH["en"], code=code(rng)),
                rng.choice(
                    (
                        "Date of manufacture: {m}",
                        "Mfg. date: {m}",
                        "Manufactured {m}",
                        "Production date {m}",
                    )
                ).format(m=date(rng)[1]),
            ],
        )
        draft.variant("no-choking", {"choking": None}, {"US-TOY-CHOKING": "fail"})
        draft.variant("no-batch", {"tracking": None}, {"US-TOY-TRACKING": "fail"})
    if category in {"cosmetics", "food"}:
        draft.add("net", [pick(rng, w.NET_US, oz=oz, OZ=oz, g=grams)])
        draft.variant(
            "oz-only",
            {"net": [pick(rng, w.NET_US_OZ_ONLY, oz=oz, OZ=oz)]},
            {f"US-{'COS' if category == 'cosmetics' else 'FOOD'}-NETQTY": "fail"},
        )
        draft.variant(
            "metric-only",
            {"net": [pick(rng, w.NET_US_METRIC_ONLY, g=grams)]},
            {f"US-{'COS' if category == 'cosmetics' else 'FOOD'}-NETQTY": "fail"},
        )
    if category == "cosmetics":
        draft.add("ingredients", [pick(rng, w.COS_INGREDIENTS["en"], inci=rng.choice(w.INCI))])
        draft.add(
            "contact",
            [
                rng.choice(
                    (
                        "Questions? Call 1-800-555-{n}",
                        "Questions or comments: (888) 555-{n}",
                        "www.{s}.com/contact",
                        "Tel. +1 212 555 {n}",
                    )
                ).format(n=rng.randint(1000, 9999), s=business.name.split()[0].lower())
            ],
        )
        draft.variant("no-ingredients", {"ingredients": None}, {"US-COS-INGREDIENTS": "fail"})
    if category == "food":
        nuts = rng.random() < 0.5
        draft.add(
            "ingredients",
            [
                f"Ingredients: {'oats, honey, almonds, sunflower oil, sea salt' if nuts else 'oats, sugar, sunflower oil, sea salt'}"
            ],
        )
        if nuts:
            draft.add(
                "contains", [rng.choice(("Contains: Almonds.", "CONTAINS: TREE NUTS (ALMONDS)."))]
            )
            draft.variant("no-contains", {"contains": None}, {"US-FOOD-ALLERGENS": "unclear"})
        draft.add(
            "nutrition",
            [
                "Nutrition Facts",
                f"Serving size 2/3 cup ({rng.randint(30, 60)}g)",
                f"Calories {rng.randint(120, 260)}",
            ],
        )
        draft.variant("no-nutrition", {"nutrition": None}, {"US-FOOD-NUTRITION": "fail"})
        draft.variant(
            "no-ingredients",
            {"ingredients": None, "contains": None},
            {"US-FOOD-INGREDIENTS": "fail"},
        )
    if category == "supplements":
        draft.add(
            "identity",
            [
                rng.choice(("Dietary Supplement", "Vitamin D3 Supplement", "DIETARY SUPPLEMENT")),
                f"{rng.choice((60, 90, 120))} {rng.choice(('Capsules', 'Softgels', 'Tablets', 'Gummies'))}",
            ],
        )
        draft.add(
            "claim",
            [
                rng.choice(
                    (
                        "Supports healthy bones and immune function.*",
                        "Helps maintain normal energy levels.*",
                    )
                )
            ],
        )
        draft.add(
            "facts",
            ["Supplement Facts", "Serving Size 1 Softgel", "Vitamin D3 25 mcg (1000 IU) 125%"],
        )
        draft.add("other", ["Other ingredients: olive oil, gelatin, glycerin."])
        draft.add(
            "dshea",
            [
                "*These statements have not been evaluated by the Food and Drug Administration.",
                "This product is not intended to diagnose, treat, cure, or prevent any disease.",
            ],
        )
        draft.add("contact", [f"Call 1-888-555-{rng.randint(1000, 9999)}"])
        draft.variant("no-disclaimer", {"dshea": None}, {"US-SUPP-DSHEA": "fail"})
        draft.variant("no-facts", {"facts": None}, {"US-SUPP-FACTS": "fail"})
        draft.variant(
            "disease-claim",
            {"claim": ["Supports healthy joints.* Cures arthritis."]},
            {"US-SUPP-CLAIMS": "fail"},
        )
    if category == "electronics":
        radio = rng.random() < 0.6 or "Bluetooth" in draft.blocks["title"][0]
        draft.add("model", [pick(rng, w.MODEL["en"][:4], code=code(rng))])
        draft.add(
            "part15",
            [
                "This device complies with part 15 of the FCC Rules.",
                "Operation is subject to the following two conditions.",
            ],
        )
        if radio:
            draft.add("fccid", [f"FCC ID: 2A{rng.randint(100, 999)}-{code(rng)}"])
            draft.add(
                "radio", [rng.choice(("Bluetooth 5.3", "Wi-Fi 2.4 GHz", "Wireless charging"))]
            )
            draft.variant("no-fccid", {"fccid": None}, {"US-ELEC-FCCID": "fail"})
        draft.variant("no-part15", {"part15": None}, {"US-ELEC-PART15": "fail"})
        draft.variant("no-model", {"model": None}, {"US-ELEC-MODEL": "fail"})
    if category in {"toys", "cosmetics", "food", "supplements"}:
        draft.add("business", party_lines(rng, biz_role, business, contact=False))
        rules = {
            "toys": ["US-TOY-TRACKING"],
            "cosmetics": ["US-COS-BUSINESS"],
            "food": ["US-FOOD-BUSINESS"],
            "supplements": ["US-SUPP-BUSINESS"],
        }[category]
        draft.variant("no-business", {"business": None}, dict.fromkeys(rules, "fail"))
    if category == "general" and rng.random() < 0.4:
        draft.add(
            "p65",
            [
                "WARNING: This product can expose you to lead, which is known to the State of California to cause cancer.",
                "For more information go to www.P65Warnings.ca.gov.",
            ],
        )
        draft.variant(
            "p65-no-url",
            {
                "p65": [
                    "WARNING: This product can expose you to lead, which is known to the State of California to cause cancer."
                ]
            },
            {"US-ALL-P65": "unclear"},
        )
    draft.add("coo", [coo_line(rng, made, "en")])
    draft.variant("no-coo", {"coo": None}, {"US-ALL-COO": "fail"})
    _filler(rng, draft, ["en"])
    return draft
