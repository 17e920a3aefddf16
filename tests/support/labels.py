"""Synthetic product labels drawn with Pillow, with the findings a reader would expect.

Shared by the local-backend tests and ``bench/eval_local.py``. Each family is a
compliant label built from named blocks of text; each variant drops or replaces
one block and names the rules that must then fail (or become unclear). Every
other text-checkable rule is expected to pass. The expectations are written by
hand from the label content, not derived from the rulebook's patterns.
"""

from __future__ import annotations

import functools
import io
import random
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from PIL import Image, ImageDraw, ImageFilter, ImageFont

from shared.schemas import Category, Marketplace

Status = Literal["pass", "fail", "unclear"]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"))
LATIN_FONTS = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansCondensed.ttf", "DejaVuSansMono.ttf")
CJK_FONTS = (
    "/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf",
    "/usr/share/fonts/truetype/fonts-japanese-gothic.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
)


@dataclass(frozen=True)
class LabelSpec:
    """One synthetic label: its text, the scan it belongs to, and the expected findings."""

    name: str
    category: Category
    marketplaces: tuple[Marketplace, ...]
    lines: tuple[str, ...]
    expected: Mapping[str, Status] = field(default_factory=dict)
    script: Literal["latin", "ja"] = "latin"
    exif_rotated: bool = False

    def expect(self, rule: str) -> Status:
        """The expected status of ``rule`` (pass unless named)."""
        return self.expected.get(rule, "pass")


_FULL_WIDTH = str.maketrans({":": "\uff1a", "(": "\uff08", ")": "\uff09"})
Blocks = dict[str, list[str]]
Variant = tuple[str, dict[str, list[str] | None], dict[str, Status]]


def _family(
    name: str,
    category: Category,
    marketplaces: Sequence[Marketplace],
    blocks: Blocks,
    variants: Sequence[Variant] = (),
    script: Literal["latin", "ja"] = "latin",
) -> Iterator[LabelSpec]:
    markets = tuple(marketplaces)
    if script == "ja":
        # Japanese labels print full-width colons and brackets; the source keeps ASCII.
        blocks = {k: [line.translate(_FULL_WIDTH) for line in v] for k, v in blocks.items()}
        variants = [
            (name, {k: v and [ln.translate(_FULL_WIDTH) for ln in v] for k, v in ch.items()}, ex)
            for name, ch, ex in variants
        ]
    flat = tuple(line for block in blocks.values() for line in block)
    yield LabelSpec(f"{name}-ok", category, markets, flat, {}, script, exif_rotated=False)
    for suffix, changes, expected in variants:
        changed = {k: changes.get(k, v) for k, v in blocks.items()}
        lines = tuple(line for block in changed.values() if block for line in block)
        yield LabelSpec(f"{name}-{suffix}", category, markets, lines, expected, script)


def _latin() -> Iterator[LabelSpec]:
    yield from _family(
        "us-toy",
        "toys",
        ["US"],
        {
            "title": ["BRIGHT BLOCKS", "Building Set - 48 pieces - Ages 3+"],
            "choking": ["WARNING: CHOKING HAZARD -- Small parts.", "Not for children under 3 yrs."],
            "coo": ["Made in China"],
            "tracking": ["Batch: BB24-118", "Manufactured 03/2024 in Shenzhen"],
            "business": ["Distributed by Acme Toys Inc.", "100 Main St, Springfield, IL 62701"],
        },
        [
            ("no-coo", {"coo": None}, {"US-ALL-COO": "fail"}),
            ("no-choking", {"choking": None}, {"US-TOY-CHOKING": "fail"}),
            ("no-batch", {"tracking": None}, {"US-TOY-TRACKING": "fail"}),
        ],
    )
    yield from _family(
        "us-cosmetics",
        "cosmetics",
        ["US"],
        {
            "title": ["GLOW LABS", "Hydrating Face Cream"],
            "net": ["Net Wt. 1.7 oz (50 g)"],
            "ingredients": [
                "Ingredients: Aqua, Glycerin, Cetearyl Alcohol,",
                "Butyrospermum Parkii Butter, Tocopherol, Parfum.",
            ],
            "business": ["Distributed by Glow Labs LLC", "200 Park Ave, New York, NY 10166"],
            "contact": ["Questions? Call 1-800-555-0199"],
            "coo": ["Made in Korea"],
        },
        [
            ("oz-only", {"net": ["Net Wt. 1.7 oz"]}, {"US-COS-NETQTY": "fail"}),
            ("no-ingredients", {"ingredients": None}, {"US-COS-INGREDIENTS": "fail"}),
            ("no-distributor", {"business": None}, {"US-COS-BUSINESS": "fail"}),
        ],
    )
    yield from _family(
        "us-food",
        "food",
        ["US"],
        {
            "title": ["SUNNY FARMS", "Honey Oat Granola"],
            "net": ["Net Wt 12 oz (340 g)"],
            "ingredients": [
                "Ingredients: Whole grain oats, honey, almonds,",
                "sunflower oil, sea salt.",
            ],
            "contains": ["Contains: Almonds."],
            "nutrition": ["Nutrition Facts", "Serving size 2/3 cup (55g)", "Calories 240"],
            "business": ["Manufactured for Sunny Farms Co.", "Austin, TX 78701"],
            "coo": ["Product of Canada"],
        },
        [
            ("no-nutrition", {"nutrition": None}, {"US-FOOD-NUTRITION": "fail"}),
            ("no-contains", {"contains": None}, {"US-FOOD-ALLERGENS": "unclear"}),
            ("metric-only", {"net": ["Net Wt 340 g"]}, {"US-FOOD-NETQTY": "fail"}),
        ],
    )
    yield from _family(
        "us-supplement",
        "supplements",
        ["US"],
        {
            "title": ["VITALIS", "Vitamin D3 Supplement", "60 Softgels"],
            "claim": ["Supports healthy bones and immune function.*"],
            "facts": ["Supplement Facts", "Serving Size 1 Softgel", "Vitamin D3 50 mcg (2000 IU)"],
            "other": ["Other ingredients: olive oil, gelatin, glycerin."],
            "dshea": [
                "*These statements have not been evaluated by the Food and Drug",
                "Administration. This product is not intended to diagnose, treat,",
                "cure, or prevent any disease.",
            ],
            "business": ["Distributed by Vitalis Inc., Denver, CO 80202", "Call 1-888-555-0123"],
            "coo": ["Made in USA"],
        },
        [
            ("no-disclaimer", {"dshea": None}, {"US-SUPP-DSHEA": "fail"}),
            ("no-facts", {"facts": None}, {"US-SUPP-FACTS": "fail"}),
            (
                "disease-claim",
                {"claim": ["Supports healthy bones.* Cures arthritis."]},
                {"US-SUPP-CLAIMS": "fail"},
            ),
        ],
    )
    yield from _family(
        "us-electronics",
        "electronics",
        ["US"],
        {
            "title": ["SONICWAVE", "Bluetooth Speaker", "Model: SW-200"],
            "part15": [
                "This device complies with part 15 of the FCC Rules.",
                "Operation is subject to the following two conditions.",
            ],
            "fccid": ["FCC ID: 2AB3C-SW200"],
            "power": ["Input: 5V 1A"],
            "coo": ["Made in Vietnam"],
        },
        [
            ("no-fccid", {"fccid": None}, {"US-ELEC-FCCID": "fail"}),
            ("no-part15", {"part15": None}, {"US-ELEC-PART15": "fail"}),
            ("no-coo", {"coo": None}, {"US-ALL-COO": "fail"}),
        ],
    )
    yield from _family(
        "us-general",
        "general",
        ["US"],
        {
            "title": ["CHEFLINE", "Stainless Steel Chef Knife 8 in"],
            "care": ["Hand wash only. Keep out of reach of children."],
            "coo": ["Made in Germany"],
        },
        [
            ("no-coo", {"coo": None}, {"US-ALL-COO": "fail"}),
            (
                "p65-no-url",
                {
                    "care": [
                        "WARNING: This product can expose you to lead,",
                        "which is known to the State of California to cause cancer.",
                    ]
                },
                {"US-ALL-P65": "unclear"},
            ),
        ],
    )
    yield from _family(
        "de-toy",
        "toys",
        ["DE"],
        {
            "title": ["Holz-Eisenbahn", "Holzspielzeug für Kinder ab 3 Jahren"],
            "warning": [
                "Achtung! Nicht für Kinder unter 36 Monaten geeignet.",
                "Enthält verschluckbare Kleinteile. Erstickungsgefahr.",
            ],
            "id": ["Typ: HE-3000  Charge: 2409"],
            "maker": [
                "Hersteller: Spielwerk Meyer GmbH",
                "Lindenweg 12, 90403 Nürnberg",
                "info@spielwerk-meyer.de",
            ],
            "origin": ["Hergestellt in Deutschland"],
        },
        [
            ("no-warning", {"warning": None}, {"EU-TOY-AGE-WARNING": "fail"}),
            ("no-maker", {"maker": None}, {"EU-ALL-GPSR-MANUFACTURER": "fail"}),
            ("no-type", {"id": None}, {"EU-ALL-GPSR-ID": "fail"}),
        ],
    )
    yield from _family(
        "de-toy-import",
        "toys",
        ["DE"],
        {
            "title": ["Bunte Bausteine", "Spielset mit 60 Teilen für Kinder"],
            "warning": [
                "Achtung! Nicht für Kinder unter 36 Monaten geeignet.",
                "Kleine Teile. Erstickungsgefahr.",
            ],
            "id": ["Modell: BS-60  Charge: 24-11"],
            "maker": [
                "Hersteller: Shenzhen Toyful Co., Ltd.",
                "Longgang District, Shenzhen, China",
                "service@toyful.cn",
            ],
            "operator": [
                "EU-Verantwortlicher: Toyful Europe GmbH",
                "Königstraße 8, 70173 Stuttgart",
                "eu@toyful.de",
            ],
        },
        [
            ("no-eu-operator", {"operator": None}, {"EU-ALL-GPSR-OPERATOR": "fail"}),
        ],
    )
    yield from _family(
        "de-cosmetics",
        "cosmetics",
        ["DE"],
        {
            "title": ["Pflegende Handcreme", "mit Sheabutter und Mandelöl - 75 ml"],
            "ingredients": [
                "Inhaltsstoffe: Aqua, Glycerin, Cetyl Alcohol,",
                "Butyrospermum Parkii Butter, Parfum.",
            ],
            "use": [
                "Mehrmals täglich auf die Hände auftragen und einziehen lassen.",
                "Nicht in die Augen bringen.",
            ],
            "maker": ["Hersteller: Naturpflege GmbH", "Gartenstraße 3, 50667 Köln"],
            "pao": ["6M   Charge: NP2410"],
            "origin": ["Hergestellt in Deutschland"],
        },
        [
            (
                "english-only",
                {
                    "title": ["Nourishing Hand Cream", "with shea butter - 75 ml"],
                    "ingredients": ["Ingredients: Aqua, Glycerin, Cetyl Alcohol, Parfum."],
                    "use": ["Apply to hands several times a day.", "Keep away from eyes."],
                    "maker": ["Manufacturer: Naturpflege GmbH", "Gartenstraße 3, 50667 Köln"],
                    "origin": ["Made in Germany"],
                },
                {"DE-ALL-LANG": "fail"},
            ),
            ("no-pao", {"pao": ["Charge: NP2410"]}, {"EU-COS-DURABILITY": "fail"}),
        ],
    )
    yield from _family(
        "de-electronics",
        "electronics",
        ["DE"],
        {
            "title": ["LED-Schreibtischlampe", "Modell: LT-450   230 V~ 50 Hz 8 W"],
            "maker": [
                "Hersteller: Lumetra GmbH",
                "Industriestraße 7, 33602 Bielefeld",
                "www.lumetra.de",
            ],
            "safety": [
                "Nur für den Innenbereich. Nicht in Wasser tauchen.",
                "Vor der Reinigung den Netzstecker ziehen.",
            ],
        },
        [
            (
                "no-web",
                {"maker": ["Hersteller: Lumetra GmbH", "Industriestraße 7, 33602 Bielefeld"]},
                {"EU-ALL-GPSR-MANUFACTURER": "fail"},
            ),
        ],
    )
    yield from _family(
        "fr-cosmetics",
        "cosmetics",
        ["FR"],
        {
            "title": ["CRÈME HYDRATANTE", "Peaux sèches - 50 ml"],
            "ingredients": [
                "Ingrédients : Aqua, Glycerin, Butyrospermum Parkii Butter,",
                "Caprylic/Capric Triglyceride, Parfum.",
            ],
            "use": ["Appliquer matin et soir sur le visage.", "Éviter le contact avec les yeux."],
            "rp": [
                "Personne responsable : Belle Peau SAS",
                "12 rue de la Paix, 75002 Paris, France",
            ],
            "pao": ["12M"],
            "lot": ["Lot : BP2409"],
            "origin": ["Fabriqué en France"],
        },
        [
            ("no-ingredients", {"ingredients": None}, {"EU-COS-INGREDIENTS": "fail"}),
            ("no-pao", {"pao": None}, {"EU-COS-DURABILITY": "fail"}),
            ("no-lot", {"lot": None}, {"EU-COS-BATCH": "fail"}),
            ("no-rp", {"rp": None}, {"EU-COS-RP": "fail"}),
        ],
    )
    yield from _family(
        "fr-supplement",
        "supplements",
        ["FR"],
        {
            "title": ["MAGNÉSIUM B6", "Complément alimentaire", "60 gélules - 36 g"],
            "dose": ["Dose journalière recommandée : 2 gélules par jour."],
            "ingredients": ["Ingrédients : citrate de magnésium, gélule végétale, vitamine B6."],
            "exceed": ["Ne pas dépasser la dose journalière recommandée."],
            "diet": [
                "Les compléments alimentaires ne doivent pas se substituer",
                "à un régime alimentaire varié et équilibré.",
            ],
            "children": ["Tenir hors de portée des jeunes enfants."],
            "date": ["À consommer de préférence avant fin : 12/2026"],
            "fbo": ["Fabriqué par Labo Santé SARL", "8 avenue Jean Jaurès, 69007 Lyon"],
            "storage": ["Conserver dans un endroit sec."],
        },
        [
            ("no-exceed", {"exceed": None}, {"EU-SUPP-NOT-EXCEED": "fail"}),
            ("no-diet", {"diet": None}, {"EU-SUPP-NOT-SUBSTITUTE": "fail"}),
            ("no-children", {"children": None}, {"EU-SUPP-CHILDREN": "fail"}),
            ("no-name", {"title": ["MAGNÉSIUM B6", "60 gélules - 36 g"]}, {"EU-SUPP-NAME": "fail"}),
        ],
    )
    yield from _family(
        "it-general",
        "general",
        ["IT"],
        {
            "title": ["Borraccia in acciaio inox 500 ml", "Modello: BX-500  Lotto: 2410"],
            "maker": [
                "Produttore: Acqua Viva S.r.l.",
                "Via Roma 10, 20121 Milano",
                "info@acquaviva.it",
            ],
            "care": [
                "Lavare a mano. Non adatto alla lavastoviglie.",
                "Conservare in luogo fresco e asciutto.",
            ],
            "origin": ["Prodotto in Italia"],
            "packaging": ["Imballaggio: PAP 20 - Raccolta carta"],
        },
        [
            ("no-packaging", {"packaging": None}, {"IT-ALL-PACKAGING": "unclear"}),
            ("no-id", {"title": ["Borraccia in acciaio inox 500 ml"]}, {"EU-ALL-GPSR-ID": "fail"}),
        ],
    )
    yield from _family(
        "es-toy",
        "toys",
        ["ES"],
        {
            "title": ["Muñeca de trapo", "Para niños a partir de 3 años"],
            "warning": [
                "Advertencia: No conveniente para niños menores de 36 meses.",
                "Contiene piezas pequeñas. Peligro de asfixia.",
            ],
            "id": ["Modelo: MT-12  Lote: 2411"],
            "maker": [
                "Fabricante: Juguetes Sol S.L.",
                "Calle Mayor 5, 28013 Madrid",
                "info@juguetessol.es",
            ],
            "origin": ["Fabricado en España"],
        },
        [
            ("no-warning", {"warning": None}, {"EU-TOY-AGE-WARNING": "fail"}),
        ],
    )
    yield from _family(
        "es-food",
        "food",
        ["ES"],
        {
            "title": ["Galletas de avena", "Peso neto: 250 g"],
            "ingredients": [
                "Ingredientes: harina de avena, azúcar, mantequilla (leche),",
                "huevo, sal.",
            ],
            "date": ["Consumir preferentemente antes del: 31.12.2026"],
            "nutrition": [
                "Información nutricional por 100 g:",
                "Valor energético 1950 kJ / 465 kcal",
            ],
            "fbo": ["Fabricado por: Horno Dulce S.A.", "Avenida del Puerto 20, 46021 Valencia"],
            "storage": ["Conservar en lugar fresco y seco."],
        },
        [
            ("no-date", {"date": None}, {"EU-FOOD-DATE": "fail"}),
            ("no-nutrition", {"nutrition": None}, {"EU-FOOD-NUTRITION": "fail"}),
            ("no-fbo", {"fbo": None}, {"EU-FOOD-FBO": "fail"}),
        ],
    )
    yield from _family(
        "uk-food",
        "food",
        ["UK"],
        {
            "title": ["Scottish Shortbread", "Net weight 200 g"],
            "ingredients": ["Ingredients: Wheat Flour, Butter (Milk), Sugar, Salt."],
            "date": ["Best before: see side of pack"],
            "nutrition": [
                "Nutrition information: typical values per 100 g",
                "Energy 2130 kJ / 510 kcal",
            ],
            "address": ["Produced by Highland Bakery Ltd", "12 Mill Lane, Inverness IV2 3AB"],
            "storage": ["Store in a cool, dry place."],
        },
        [
            (
                "email-only",
                {"address": ["Produced by Highland Bakery Ltd", "hello@highlandbakery.co.uk"]},
                {"UK-FOOD-ADDRESS": "fail"},
            ),
            ("no-ingredients", {"ingredients": None}, {"EU-FOOD-INGREDIENTS": "fail"}),
        ],
    )
    yield from _family(
        "uk-toy",
        "toys",
        ["UK"],
        {
            "title": ["Cuddle Bear", "Soft plush toy for ages 3 and up"],
            "warning": [
                "Warning! Not suitable for children under 36 months.",
                "Small parts. Choking hazard.",
            ],
            "id": ["Model: PB-22  Batch: 2409"],
            "importer": ["Imported by Cuddle Co Ltd", "4 High Street, Leeds LS1 4AB"],
            "origin": ["Made in China"],
        },
        [
            ("no-importer", {"importer": None}, {"UK-ALL-IMPORTER": "unclear"}),
            ("no-warning", {"warning": None}, {"EU-TOY-AGE-WARNING": "fail"}),
        ],
    )
    yield from _family(
        "ca-cosmetics",
        "cosmetics",
        ["CA"],
        {
            "title": ["Shea Body Butter / Beurre corporel au karité", "200 mL"],
            "ingredients": [
                "Ingredients/Ingrédients: Butyrospermum Parkii Butter,",
                "Glycerin, Parfum.",
            ],
            "dealer": ["Distributed by / Distribué par: Maple Skin Inc.", "Toronto, ON M5V 2T6"],
            "use": [
                "For external use only. / Pour usage externe seulement.",
                "Keep out of reach of children. / Garder hors de la portée des enfants.",
            ],
        },
        [
            (
                "english-only",
                {
                    "title": ["Shea Body Butter", "200 mL"],
                    "ingredients": ["Ingredients: Butyrospermum Parkii Butter, Glycerin."],
                    "dealer": ["Distributed by Maple Skin Inc.", "Toronto, ON M5V 2T6"],
                    "use": ["For external use only.", "Keep out of reach of children."],
                },
                {"CA-ALL-BILINGUAL": "fail"},
            ),
            (
                "no-net",
                {"title": ["Shea Body Butter / Beurre corporel au karité"]},
                {"CA-ALL-NETQTY": "fail"},
            ),
        ],
    )
    yield from _family(
        "ca-electronics",
        "electronics",
        ["CA"],
        {
            "title": ["Wireless Earbuds / Écouteurs sans fil", "Model / Modèle: EB-7"],
            "ices": ["CAN ICES-003(B)/NMB-003(B)"],
            "ic": ["IC: 24567-EB7"],
            "dealer": [
                "Distributed by / Distribué par: Northwave Audio Ltd.",
                "Vancouver, BC V6B 1A1",
            ],
            "origin": ["Made in China / Fabriqué en Chine"],
        },
        [
            ("no-ices", {"ices": None}, {"CA-ELEC-ICES": "fail"}),
            ("no-ic", {"ic": None}, {"CA-ELEC-IC": "fail"}),
        ],
    )
    yield from _family(
        "ca-supplement",
        "supplements",
        ["CA"],
        {
            "title": [
                "Vitamin C 500 mg / Vitamine C 500 mg",
                "NPN 80012345",
                "90 tablets / comprimés",
            ],
            "medicinal": [
                "Medicinal ingredients / Ingrédients médicinaux:",
                "Vitamin C (ascorbic acid) 500 mg",
            ],
            "dealer": [
                "Distributed by / Distribué par: True North Health Inc.",
                "Calgary, AB T2P 1J9",
            ],
            "use": ["Keep out of reach of children. / Tenir hors de la portée des enfants."],
        },
        [
            (
                "no-npn",
                {"title": ["Vitamin C 500 mg / Vitamine C 500 mg", "90 tablets / comprimés"]},
                {"CA-SUPP-NPN": "fail"},
            ),
        ],
    )
    yield from _family(
        "eu-general-de-fr",
        "general",
        ["DE", "FR"],
        {
            "title": ["Thermobecher / Mug isotherme 350 ml", "Art.-Nr. TB-350"],
            "de": [
                "Nicht für die Mikrowelle geeignet. Nur mit der Hand spülen.",
                "Vorsicht, heiße Getränke können Verbrühungen verursachen.",
            ],
            "fr": [
                "Ne convient pas au micro-ondes. Laver à la main.",
                "Attention, les boissons chaudes peuvent provoquer des brûlures.",
            ],
            "maker": [
                "Hersteller / Fabricant: Kaffeewelt GmbH",
                "Domplatz 2, 48143 Münster",
                "kontakt@kaffeewelt.de",
            ],
        },
        [
            (
                "german-only",
                {
                    "title": ["Thermobecher 350 ml", "Art.-Nr. TB-350"],
                    "fr": None,
                    "maker": [
                        "Hersteller: Kaffeewelt GmbH",
                        "Domplatz 2, 48143 Münster",
                        "kontakt@kaffeewelt.de",
                    ],
                },
                {"FR-ALL-LANG": "fail"},
            ),
        ],
    )


def _japanese() -> Iterator[LabelSpec]:
    yield from _family(
        "jp-food",
        "food",
        ["JP"],
        {
            "name": ["名称:緑茶(ティーバッグ)"],
            "ingredients": ["原材料名:緑茶(静岡県産)"],
            "content": ["内容量:40g(2g\u00d720袋)"],
            "date": ["賞味期限:2026.12.31"],
            "storage": ["保存方法:直射日光、高温多湿を避けて保存してください"],
            "origin": ["原料原産地名:日本"],
            "maker": ["販売者:株式会社サンプル茶園", "静岡県静岡市葵区1-2-3"],
            "nutrition": [
                "栄養成分表示(1袋あたり)熱量 2kcal",
                "たんぱく質 0.1g 脂質 0g 食塩相当量 0g",
            ],
        },
        [
            ("no-date", {"date": None}, {"JP-FOOD-DATE": "fail"}),
            ("no-ingredients", {"ingredients": None}, {"JP-FOOD-INGREDIENTS": "fail"}),
        ],
        script="ja",
    )
    yield from _family(
        "jp-cosmetics",
        "cosmetics",
        ["JP"],
        {
            "title": ["しっとり保湿クリーム", "内容量:50g"],
            "ingredients": ["全成分:水、グリセリン、シア脂、スクワラン、フェノキシエタノール"],
            "mah": ["製造販売元:株式会社サンプルコスメ", "東京都港区1-2-3"],
            "lot": ["ロット番号:SC2410"],
            "origin": ["原産国:日本"],
        },
        [
            ("no-ingredients", {"ingredients": None}, {"JP-COS-INGREDIENTS": "fail"}),
        ],
        script="ja",
    )


def label_specs(include_japanese: bool | None = None) -> list[LabelSpec]:
    """The synthetic set: Latin-script labels, plus Japanese ones when a CJK font exists."""
    specs = list(_latin())
    # Two labels arrive sideways with an EXIF orientation tag, as phone photos do.
    specs = [
        LabelSpec(s.name, s.category, s.marketplaces, s.lines, s.expected, s.script, True)
        if s.name in {"us-toy-ok", "fr-cosmetics-ok"}
        else s
        for s in specs
    ]
    if include_japanese is None:
        include_japanese = cjk_font_path() is not None
    if include_japanese:
        specs.extend(_japanese())
    return specs


@functools.cache
def cjk_font_path() -> str | None:
    """A font with Japanese glyphs, if one is installed (fonts-ipafont-gothic on Debian)."""
    return next((p for p in CJK_FONTS if Path(p).is_file()), None)


def _latin_fonts() -> list[Callable[[int], Font]]:
    loaders: list[Callable[[int], Font]] = []
    for name in LATIN_FONTS:
        path = next((d / name for d in FONT_DIRS if (d / name).is_file()), None)
        if path is not None:
            loaders.append(functools.partial(ImageFont.truetype, str(path)))
    # Pillow's own scalable font (Pillow >= 10.1) keeps the set working without DejaVu.
    loaders.append(_default_font)
    return loaders


def _default_font(size: int) -> Font:
    return ImageFont.load_default(size=size)


def render(spec: LabelSpec, degraded: bool = False) -> bytes:
    """Draw the label: varied font, size, tint, slight tilt and compression, seeded by name.

    ``degraded`` imitates a poor phone photo: 60% scale, blur, stronger tilt, JPEG q55.
    """
    rng = random.Random(zlib.crc32(spec.name.encode()))
    if spec.script == "ja":
        path = cjk_font_path()
        if path is None:
            raise RuntimeError("no CJK font installed")
        make_font: Callable[[int], Font] = functools.partial(ImageFont.truetype, path)
    else:
        fonts = _latin_fonts()
        make_font = fonts[zlib.crc32(spec.name.split("-ok")[0].encode()) % len(fonts)]
        if not all(line.isascii() for line in spec.lines):
            # Pillow's built-in font has no accented letters; it only draws ASCII labels.
            make_font = fonts[zlib.crc32(spec.name.encode()) % max(1, len(fonts) - 1)]
    size = rng.randint(20, 24)
    title_font, body_font = make_font(size + 8), make_font(size)
    width, margin, gap = 780, 28, size // 2
    background = (rng.randint(238, 255), rng.randint(236, 255), rng.randint(228, 255))
    ink = (rng.randint(0, 40),) * 3
    rows: list[tuple[str, Font]] = []
    for i, line in enumerate(spec.lines):
        font = title_font if i == 0 else body_font
        rows.extend((part, font) for part in _wrap(line, font, width - 2 * margin))
    height = margin * 2 + sum(int(f.getbbox("Ag")[3]) + gap for _, f in rows)
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    draw.rectangle((6, 6, width - 7, height - 7), outline=ink, width=2)
    y = margin
    for line, font in rows:
        draw.text((margin, y), line, font=font, fill=ink)
        y += int(font.getbbox("Ag")[3]) + gap
    tilt = 4.0 if degraded else 1.5
    image = image.rotate(
        rng.uniform(-tilt, tilt),
        expand=True,
        fillcolor=background,
        resample=Image.Resampling.BICUBIC,
    )
    if degraded:
        image = image.resize(
            (image.width * 3 // 5, image.height * 3 // 5), Image.Resampling.BILINEAR
        ).filter(ImageFilter.GaussianBlur(0.7))
    elif rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(0.6))
    out = io.BytesIO()
    if degraded:
        image.save(out, "JPEG", quality=55)
        return out.getvalue()
    if spec.exif_rotated:
        # Pixels stored sideways; EXIF orientation 6 tells viewers to rotate 90° clockwise.
        exif = Image.Exif()
        exif[0x0112] = 6
        image.transpose(Image.Transpose.ROTATE_90).save(out, "JPEG", quality=85, exif=exif)
    elif rng.random() < 0.5:
        image.save(out, "JPEG", quality=rng.randint(70, 90))
    else:
        image.save(out, "PNG")
    return out.getvalue()


def _wrap(line: str, font: Font, width: int) -> list[str]:
    """Break ``line`` at spaces so that each part fits ``width`` pixels."""
    parts: list[str] = []
    current = ""
    for word in line.split(" "):
        candidate = f"{current} {word}".strip()
        if current and font.getlength(candidate) > width:
            parts.append(current)
            current = word
        else:
            current = candidate
    return [*parts, current] if current else parts
