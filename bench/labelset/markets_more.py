# ruff: noqa: E501 - label text reads best on one line
"""Label content for EU/UK cosmetics and food, Japan and Canada (see markets.py)."""

from __future__ import annotations

import random

from bench.labelset import wording as w
from bench.labelset.markets import LANG_RULE, _english_only, _filler, _identity, _langs
from bench.labelset.parts import Draft, code, coo_line, date, party, party_lines, pick, role
from bench.labelset.world import COUNTRIES, EU


def eu_cosmetics(rng: random.Random, markets: tuple[str, ...]) -> Draft:
    """Reg 1223/2009 labels for DE/FR/IT/ES/UK."""
    draft = Draft()
    langs = _langs(markets)
    lead = langs[0]
    _identity(rng, draft, langs, "cosmetics")
    draft.add("content", [rng.choice(("50 ml", "75 ml", "200 mL", "100 g", "250ml", "e 50 ml"))])
    draft.add("ingredients", [pick(rng, w.COS_INGREDIENTS[lead], inci=rng.choice(w.INCI))])
    draft.add("use", [rng.choice(w.FILLER[lang]) for lang in langs])
    uk = markets == ("UK",)
    rp_country = rng.choice(("UK", "UK", *EU)) if uk else rng.choice(EU)
    rp = party(rng, rp_country, lead)
    draft.add(
        "rp", party_lines(rng, role(rng, w.ROLE_COS_RP, lead), rp, contact=rng.random() < 0.5)
    )
    _, month = date(rng)
    draft.add("pao", [rng.choice(("12M", "6 M", "24M", f"Best before end: {month}", "12 M"))])
    draft.add("batch", [pick(rng, w.BATCH[lead], code=code(rng))])
    made = COUNTRIES[rng.choice(("CN", "FR", "IT", "DE", "PL", "TR"))]
    draft.add("coo", [coo_line(rng, made, lead)])
    if uk:
        draft.expected["UK-COS-UKRP-2028"] = "pass" if rp_country == "UK" else "unclear"
    draft.variant("no-ingredients", {"ingredients": None}, {"EU-COS-INGREDIENTS": "fail"})
    draft.variant("no-pao", {"pao": None}, {"EU-COS-DURABILITY": "fail"})
    draft.variant("no-batch", {"batch": None}, {"EU-COS-BATCH": "fail"})
    draft.variant(
        "no-rp",
        {"rp": None},
        {"EU-COS-RP": "fail", **({"UK-COS-UKRP-2028": "unclear"} if uk else {})},
    )
    draft.variant("no-content", {"content": None}, {"EU-COS-CONTENT": "fail"})
    draft.variant("no-coo", {"coo": None}, {"EU-COS-COO": "unclear"})
    _filler(rng, draft, langs)
    if len(markets) == 1 and lead != "en":
        english: dict[str, list[str] | None] = {
            "rp": party_lines(rng, role(rng, w.ROLE_COS_RP, "en"), rp),
            "batch": [pick(rng, w.BATCH["en"], code=code(rng))],
            "coo": [coo_line(rng, made, "en")],
            "ingredients": [pick(rng, w.COS_INGREDIENTS["en"], inci=rng.choice(w.INCI))],
        }
        _english_only(rng, draft, markets[0], "cosmetics", english)
        # English-only keeps the Latin INCI heading "Ingredients", which the regulation accepts.
    return draft


def eu_food(rng: random.Random, markets: tuple[str, ...], category: str) -> Draft:
    """Reg 1169/2011 (food) and Dir 2002/46 (supplements) labels for DE/FR/IT/ES/UK."""
    draft = Draft()
    langs = _langs(markets)
    lead = langs[0]
    uk = markets == ("UK",)
    _identity(rng, draft, langs, category)
    if category == "supplements":
        draft.add("name", [rng.choice(w.SUPP_NAME[lang]) for lang in langs])
    grams = rng.choice(("250", "500", "125", "40", "1000"))
    draft.add("net", [pick(rng, w.NET_EU[lead], n=grams)])
    draft.add(
        "ingredients",
        [pick(rng, w.INGREDIENTS[lang], list=rng.choice(w.FOOD_LIST[lang])) for lang in langs],
    )
    day, month = date(rng)
    draft.add("date", [pick(rng, w.BEST_BEFORE[lead], d=day, m=month)])
    draft.add("storage", [rng.choice(w.STORAGE[lang]) for lang in langs])
    if category == "food":
        draft.add("nutrition", [rng.choice(w.NUTRITION[lang]) for lang in langs])
        draft.variant("no-nutrition", {"nutrition": None}, {"EU-FOOD-NUTRITION": "fail"})
    else:
        draft.add("dose", [rng.choice(w.SUPP_DOSE[lang]) for lang in langs])
        draft.add("exceed", [rng.choice(w.SUPP_EXCEED[lang]) for lang in langs])
        draft.add("diet", [rng.choice(w.SUPP_DIET[lang]) for lang in langs])
        draft.add("children", [rng.choice(w.SUPP_CHILDREN[lang]) for lang in langs])
        draft.variant("no-exceed", {"exceed": None}, {"EU-SUPP-NOT-EXCEED": "fail"})
        draft.variant("no-diet", {"diet": None}, {"EU-SUPP-NOT-SUBSTITUTE": "fail"})
        draft.variant("no-children", {"children": None}, {"EU-SUPP-CHILDREN": "fail"})
        draft.variant("no-name", {"name": None}, {"EU-SUPP-NAME": "fail"})
    fbo = party(rng, "UK" if uk else rng.choice(EU), lead)
    # The law asks for the name and address, not a role word: a third of labels print none.
    fbo_role = (
        "" if rng.random() < 0.33 else rng.choice(w.ROLE_MAKER[lead] + w.ROLE_DISTRIBUTOR[lead])
    )
    draft.add("fbo", party_lines(rng, fbo_role, fbo, contact=rng.random() < 0.5))
    fbo_rule = "UK-FOOD-ADDRESS" if uk else "EU-FOOD-FBO"
    draft.variant("no-fbo", {"fbo": None}, {fbo_rule: "fail"})
    if uk:
        draft.variant(
            "email-only",
            {
                "fbo": [
                    f"{fbo_role or 'Produced by'} {fbo.name}",
                    f"hello@{fbo.name.split()[0].lower()}.co.uk",
                ]
            },
            {fbo_rule: "fail"},
        )
    draft.variant("no-date", {"date": None}, {"EU-FOOD-DATE": "fail"})
    draft.variant("no-net", {"net": None}, {"EU-FOOD-NETQTY": "fail"})
    draft.variant("no-storage", {"storage": None}, {"EU-FOOD-STORAGE": "unclear"})
    draft.variant("no-ingredients", {"ingredients": None}, {"EU-FOOD-INGREDIENTS": "fail"})
    if rng.random() < 0.5:
        draft.add("lot", [pick(rng, w.BATCH[lead], code=code(rng))])
    if len(markets) == 1 and lead != "en":
        draft.variant(
            "english-only",
            {
                "title": [rng.choice(w.TITLES[category]["en"])],
                "ingredients": [f"Ingredients: {w.FOOD_LIST['en'][0]}"],
                "storage": [w.STORAGE["en"][0]],
                "date": [f"Best before: {day}"],
                "net": [f"Net weight {grams} g"],
                "nutrition": [w.NUTRITION["en"][0]] if category == "food" else None,
                "name": ["Food supplement"] if category == "supplements" else None,
                "dose": [w.SUPP_DOSE["en"][0]] if category == "supplements" else None,
                "exceed": [w.SUPP_EXCEED["en"][0]] if category == "supplements" else None,
                "diet": [w.SUPP_DIET["en"][0]] if category == "supplements" else None,
                "children": [w.SUPP_CHILDREN["en"][0]] if category == "supplements" else None,
            },
            {
                LANG_RULE[markets[0]]: "fail",
                "EU-FOOD-INGREDIENTS": "fail",
                **({"EU-SUPP-NAME": "fail"} if category == "supplements" else {}),
            },
        )
    return draft


JP_ADDRESSES = (
    "〒100-0005 東京都千代田区丸の内1-2-3",
    "東京都港区南青山2-4-6",
    "〒530-0001 大阪府大阪市北区梅田2-4-9",
    "神奈川県横浜市西区みなとみらい4-5-6",
    "〒460-0008 愛知県名古屋市中区栄3-1-1",
    "福岡県福岡市博多区博多駅前1-1-1",
)
JP_ROLES = ("販売者", "輸入者", "製造者", "発売元", "販売元", "輸入元")
JP_COMPANIES = (
    "株式会社サンプル商事",
    "株式会社みらい食品",
    "ハーモニー株式会社",
    "株式会社青空コスメ",
    "日之出電機株式会社",
)


def jp_label(rng: random.Random, category: str) -> Draft:
    """Japanese labels: the 一括表示 box, the responsible business, category fields."""
    draft = Draft()
    who = rng.choice(JP_COMPANIES)
    where = rng.choice(JP_ADDRESSES)
    origin = rng.choice(("中国", "日本", "ベトナム", "アメリカ"))
    if category in {"food", "supplements"}:
        draft.add(
            "name",
            [
                f"名称:{rng.choice(('緑茶(ティーバッグ)', '焼菓子', '栄養補助食品', 'ビタミンC含有食品'))}"
            ],
        )
        wheat = rng.random() < 0.5
        draft.add(
            "ingredients",
            [
                f"原材料名:{'小麦粉、砂糖、バター(一部に小麦・乳成分を含む)' if wheat else '緑茶(静岡県産)、ビタミンC'}"
            ],
        )
        draft.add("content", [f"内容量:{rng.choice(('40g', '120g', '60粒', '200ml'))}"])
        d, _ = date(rng)
        draft.add(
            "date",
            [f"{rng.choice(('賞味期限', '消費期限'))}:{d.replace('/', '.').replace('-', '.')}"],
        )
        draft.add("storage", ["保存方法:直射日光、高温多湿を避けて保存してください"])
        draft.add("origin", [rng.choice((f"原産国名:{origin}", "原料原産地名:日本"))])
        draft.add(
            "nutrition",
            [
                "栄養成分表示(100gあたり)熱量 420kcal",
                "たんぱく質 6.1g 脂質 18g 炭水化物 58g 食塩相当量 0.3g",
            ],
        )
        draft.variant("no-date", {"date": None}, {"JP-FOOD-DATE": "fail"})
        draft.variant("no-ingredients", {"ingredients": None}, {"JP-FOOD-INGREDIENTS": "fail"})
        draft.variant("no-nutrition", {"nutrition": None}, {"JP-FOOD-NUTRITION": "fail"})
        draft.variant("no-storage", {"storage": None}, {"JP-FOOD-STORAGE": "fail"})
    elif category == "cosmetics":
        draft.add(
            "title", ["しっとり保湿クリーム", f"内容量:{rng.choice(('50g', '30mL', '150ml'))}"]
        )
        draft.add(
            "ingredients", ["全成分:水、グリセリン、シア脂、スクワラン、フェノキシエタノール"]
        )
        draft.add("lot", [f"{rng.choice(('ロット番号', '製造番号', 'ロットNo.'))}:{code(rng)}"])
        draft.add("origin", [f"原産国:{origin}"])
        draft.variant("no-ingredients", {"ingredients": None}, {"JP-COS-INGREDIENTS": "fail"})
        draft.variant("no-lot", {"lot": None}, {"JP-COS-LOT": "fail"})
    elif category == "electronics":
        draft.add("title", ["LEDデスクライト", f"型番:{code(rng)}"])
        draft.add("rating", [f"定格電圧:AC100V 50/60Hz 定格消費電力:{rng.randint(5, 40)}W"])
        draft.add("origin", [f"原産国:{origin}"])
        draft.variant("no-rating", {"rating": None}, {"JP-ELEC-RATING": "fail"})
    else:
        draft.add(
            "title",
            [
                rng.choice(("木製つみき", "ステンレスボトル 500ml", "ぬいぐるみ くま")),
                rng.choice(("対象年齢:3才以上", "食洗機には使用できません")),
            ],
        )
        draft.add("origin", [f"原産国:{origin}"])
    jp_role = "製造販売元" if category == "cosmetics" else rng.choice(JP_ROLES)
    draft.add(
        "maker", [f"{jp_role}:{who}", where] if rng.random() < 0.6 else [f"{jp_role}:{who} {where}"]
    )
    rules = {
        "JP-ALL-RESPONSIBLE": "fail",
        **({"JP-COS-MAH": "fail"} if category == "cosmetics" else {}),
    }
    draft.variant("no-responsible", {"maker": None}, rules)
    draft.add(
        "note",
        [
            rng.choice(
                (
                    "ご使用の前に説明書をよくお読みください。",
                    "お子様の手の届かないところに保管してください。",
                )
            )
        ],
    )
    return draft


def ca_label(rng: random.Random, category: str) -> Draft:
    """Canadian labels: English and French, the dealer, the category's elements."""
    draft = Draft()
    title_en = rng.choice(w.TITLES[category]["en"])
    title_fr = rng.choice(w.TITLES[category]["fr"])
    draft.add("title", [f"{title_en} / {title_fr}"])
    dealer = party(rng, "CA", "en")
    dealer_role = rng.choice(
        (
            "Distributed by / Distribué par:",
            "Imported by / Importé par :",
            "Manufactured for / Fabriqué pour :",
            "Distributed by / Distribué par",
        )
    )
    if category in {"cosmetics", "food"}:
        draft.add("net", [rng.choice(("200 mL", "250 g", "340 g", "1 L", "75 mL"))])
        draft.variant("no-net", {"net": None}, {"CA-ALL-NETQTY": "fail"})
    if category == "cosmetics":
        draft.add("ingredients", [f"Ingredients/Ingrédients: {rng.choice(w.INCI)}"])
        draft.variant("no-ingredients", {"ingredients": None}, {"CA-COS-INGREDIENTS": "fail"})
    if category == "food":
        draft.add(
            "ingredients",
            [f"Ingredients: {w.FOOD_LIST['en'][0]}", f"Ingrédients : {w.FOOD_LIST['fr'][0]}"],
        )
        draft.add(
            "nutrition", ["Nutrition Facts / Valeur nutritive", "Calories 240 / 2/3 cup (55 g)"]
        )
        draft.add(
            "origin",
            [
                rng.choice(
                    (
                        "Product of USA / Produit des États-Unis",
                        "Product of Italy / Produit d'Italie",
                        "Made in Canada / Fabriqué au Canada",
                    )
                )
            ],
        )
        draft.variant("no-nutrition", {"nutrition": None}, {"CA-FOOD-NUTRITION": "fail"})
    if category == "supplements":
        draft.add("npn", [f"NPN {rng.randint(80000000, 80999999)}"])
        draft.add(
            "medicinal",
            ["Medicinal ingredients / Ingrédients médicinaux:", "Vitamin C (ascorbic acid) 500 mg"],
        )
        draft.variant("no-npn", {"npn": None}, {"CA-SUPP-NPN": "fail"})
        draft.variant("no-medicinal", {"medicinal": None}, {"CA-SUPP-MEDICINAL": "fail"})
    if category == "electronics":
        draft.add(
            "ices",
            [
                rng.choice(
                    (
                        "CAN ICES-003(B)/NMB-003(B)",
                        "CAN ICES-3 (B)/NMB-3(B)",
                        "CAN ICES-003 (B) / NMB-003 (B)",
                    )
                )
            ],
        )
        draft.variant("no-ices", {"ices": None}, {"CA-ELEC-ICES": "fail"})
        if rng.random() < 0.6 or "Bluetooth" in title_en:
            draft.add("radio", ["Bluetooth / sans fil"])
            draft.add("ic", [f"IC: {rng.randint(10000, 29999)}-{code(rng).replace('/', '')}"])
            draft.variant("no-ic", {"ic": None}, {"CA-ELEC-IC": "fail"})
    draft.add("dealer", party_lines(rng, dealer_role, dealer, contact=False))
    draft.variant("no-dealer", {"dealer": None}, {"CA-ALL-DEALER": "fail"})
    draft.add(
        "use",
        [
            "Keep out of reach of children. / Garder hors de la portée des enfants.",
            "Read the instructions before use. / Lire les instructions avant l'utilisation.",
        ],
    )
    if category not in {"food"}:
        made = COUNTRIES[rng.choice(("CN", "US", "VN", "CA"))]
        draft.add("coo", [f"{coo_line(rng, made, 'en')} / Fabriqué en {made.names['fr']}"])
    draft.variant(
        "english-only",
        {
            "title": [title_en],
            "use": ["Keep out of reach of children.", "Read the instructions before use."],
            "ingredients": [f"Ingredients: {w.FOOD_LIST['en'][0]}"]
            if category == "food"
            else draft.blocks.get("ingredients"),
            "dealer": party_lines(rng, "Distributed by", dealer, contact=False),
            "coo": [coo_line(rng, COUNTRIES["CN"], "en")] if "coo" in draft.blocks else None,
            "nutrition": ["Nutrition Facts", "Calories 240 per 2/3 cup (55 g)"]
            if category == "food"
            else None,
            "origin": ["Product of USA"] if category == "food" else None,
            "medicinal": ["Medicinal ingredients:", "Vitamin C (ascorbic acid) 500 mg"]
            if category == "supplements"
            else None,
            "radio": ["Bluetooth"] if "radio" in draft.blocks else None,
        },
        {"CA-ALL-BILINGUAL": "fail"},
    )
    return draft
