# ruff: noqa: E501, RUF001 - one country per line, with its own letters (Turkish dotless i)
"""Real-world facts the label generator draws from: countries, postal formats, companies.

Written from postal conventions (UPU address formats) and company law forms, not from the
rulebook: the evaluation must not know the detector's tables. ``#`` in a postal format is a
digit, ``@`` an upper-case letter; everything else is literal.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

Region = str  # "EU", "UK", "US", "CA", "JP", "OTHER"


@dataclass(frozen=True)
class Country:
    """How one country writes an address."""

    code: str
    region: Region
    names: dict[str, str]  # label language -> country name as printed
    postal: str  # format of the postal code
    cities: tuple[str, ...]
    streets: tuple[str, ...]
    number_first: bool  # "12 rue de la Paix" rather than "Lindenweg 12"
    postal_after_city: bool = False  # "Leeds LS1 4AB", "Dublin D02 X285"
    forms: tuple[str, ...] = ("Ltd",)
    tld: str = "com"


def _c(  # noqa: PLR0917 - table rows read best positionally
    code: str,
    region: Region,
    en: str,
    postal: str,
    cities: str,
    streets: str,
    *,
    number_first: bool = False,
    after: bool = False,
    forms: str = "Ltd",
    tld: str = "",
    de: str = "",
    fr: str = "",
    it: str = "",
    es: str = "",
) -> Country:
    names = {"en": en, "de": de or en, "fr": fr or en, "it": it or en, "es": es or en}
    return Country(
        code=code,
        region=region,
        names=names,
        postal=postal,
        cities=tuple(cities.split("|")),
        streets=tuple(streets.split("|")),
        number_first=number_first,
        postal_after_city=after,
        forms=tuple(forms.split("|")),
        tld=tld or code.lower(),
    )


# fmt: off
COUNTRIES: dict[str, Country] = {
    c.code: c
    for c in (
        _c("AT", "EU", "Austria", "####", "Wien|Graz|Linz", "Mariahilfer Straße|Hauptplatz|Bahnhofstraße", forms="GmbH|KG", de="Österreich", fr="Autriche", it="Austria", es="Austria"),
        _c("BE", "EU", "Belgium", "####", "Bruxelles|Antwerpen|Gent", "Rue Neuve|Meir|Avenue Louise", number_first=False, forms="NV|SRL|BV", de="Belgien", fr="Belgique", it="Belgio", es="Bélgica"),
        _c("BG", "EU", "Bulgaria", "####", "Sofia|Plovdiv|Varna", "bul. Vitosha|ul. Graf Ignatiev|bul. Maria Luiza", forms="EOOD|OOD", de="Bulgarien", fr="Bulgarie", it="Bulgaria", es="Bulgaria"),
        _c("HR", "EU", "Croatia", "#####", "Zagreb|Split|Rijeka", "Ilica|Vukovarska ulica|Marmontova", forms="d.o.o.", de="Kroatien", fr="Croatie", it="Croazia", es="Croacia"),
        _c("CY", "EU", "Cyprus", "####", "Nicosia|Limassol|Larnaca", "Makariou Avenue|Ledras Street|Anexartisias", forms="Ltd", de="Zypern", fr="Chypre", it="Cipro", es="Chipre"),
        _c("CZ", "EU", "Czech Republic", "### ##", "Praha 1|Brno|Ostrava", "Václavské náměstí|Národní|Masarykova", forms="s.r.o.|a.s.", tld="cz", de="Tschechien", fr="République tchèque", it="Repubblica Ceca", es="República Checa"),
        _c("DK", "EU", "Denmark", "####", "København K|Aarhus C|Odense C", "Strøget|Vesterbrogade|Nørregade", forms="ApS|A/S", de="Dänemark", fr="Danemark", it="Danimarca", es="Dinamarca"),
        _c("EE", "EU", "Estonia", "#####", "Tallinn|Tartu|Pärnu", "Narva mnt|Viru tänav|Pärnu mnt", forms="OÜ|AS", de="Estland", fr="Estonie", it="Estonia", es="Estonia"),
        _c("FI", "EU", "Finland", "#####", "Helsinki|Espoo|Tampere", "Mannerheimintie|Aleksanterinkatu|Hämeenkatu", forms="Oy|Oyj", de="Finnland", fr="Finlande", it="Finlandia", es="Finlandia"),
        _c("FR", "EU", "France", "#####", "Paris|Lyon|Marseille|Nantes|Lille", "rue de la Paix|avenue Jean Jaurès|boulevard Haussmann|rue Nationale", number_first=True, forms="SAS|SARL|SA", de="Frankreich", fr="France", it="Francia", es="Francia"),
        _c("DE", "EU", "Germany", "#####", "Berlin|München|Köln|Hamburg|Nürnberg|Stuttgart", "Lindenweg|Hauptstraße|Industriestraße|Am Markt|Königsallee", forms="GmbH|AG|GmbH & Co. KG|e.K.", de="Deutschland", fr="Allemagne", it="Germania", es="Alemania"),
        _c("GR", "EU", "Greece", "### ##", "Athens|Thessaloniki|Patras", "Ermou|Stadiou|Tsimiski", forms="S.A.|IKE", tld="gr", de="Griechenland", fr="Grèce", it="Grecia", es="Grecia"),
        _c("HU", "EU", "Hungary", "####", "Budapest|Debrecen|Szeged", "Andrássy út|Váci utca|Kossuth Lajos utca", forms="Kft.|Zrt.", de="Ungarn", fr="Hongrie", it="Ungheria", es="Hungría"),
        _c("IE", "EU", "Ireland", "@## @#@#", "Dublin 2|Cork|Galway", "Grafton Street|Patrick Street|Shop Street", number_first=True, after=True, forms="Ltd|DAC", tld="ie", de="Irland", fr="Irlande", it="Irlanda", es="Irlanda"),
        _c("IT", "EU", "Italy", "#####", "Milano|Roma|Torino|Bologna", "Via Roma|Corso Italia|Via Garibaldi|Viale Europa", forms="S.r.l.|S.p.A.", de="Italien", fr="Italie", it="Italia", es="Italia"),
        _c("LV", "EU", "Latvia", "LV-####", "Rīga|Jelgava|Liepāja", "Brīvības iela|Elizabetes iela|Krišjāņa Barona iela", forms="SIA", de="Lettland", fr="Lettonie", it="Lettonia", es="Letonia"),
        _c("LT", "EU", "Lithuania", "LT-#####", "Vilnius|Kaunas|Klaipėda", "Gedimino pr.|Laisvės al.|Vilniaus g.", forms="UAB", de="Litauen", fr="Lituanie", it="Lituania", es="Lituania"),
        _c("LU", "EU", "Luxembourg", "L-####", "Luxembourg|Esch-sur-Alzette", "rue du Fossé|avenue de la Gare|Grand-Rue", number_first=True, forms="S.à r.l.|S.A.", de="Luxemburg", fr="Luxembourg", it="Lussemburgo", es="Luxemburgo"),
        _c("MT", "EU", "Malta", "@@@ ####", "Valletta|Sliema|Birkirkara", "Republic Street|Tower Road|Triq il-Kbira", number_first=True, after=True, forms="Ltd", de="Malta", fr="Malte", it="Malta", es="Malta"),
        _c("NL", "EU", "Netherlands", "#### @@", "Amsterdam|Rotterdam|Utrecht|Eindhoven", "Kalverstraat|Coolsingel|Stationsplein|Keizersgracht", forms="B.V.|N.V.", de="Niederlande", fr="Pays-Bas", it="Paesi Bassi", es="Países Bajos"),
        _c("PL", "EU", "Poland", "##-###", "Warszawa|Kraków|Poznań|Gdańsk", "ul. Marszałkowska|ul. Floriańska|ul. Półwiejska|al. Grunwaldzka", forms="Sp. z o.o.|S.A.", de="Polen", fr="Pologne", it="Polonia", es="Polonia"),
        _c("PT", "EU", "Portugal", "####-###", "Lisboa|Porto|Braga", "Rua Augusta|Avenida da Liberdade|Rua de Santa Catarina", forms="Lda.|S.A.", de="Portugal", fr="Portugal", it="Portogallo", es="Portugal"),
        _c("RO", "EU", "Romania", "######", "București|Cluj-Napoca|Timișoara", "Calea Victoriei|Strada Lipscani|Bulevardul Eroilor", forms="SRL|S.A.", de="Rumänien", fr="Roumanie", it="Romania", es="Rumanía"),
        _c("SK", "EU", "Slovakia", "### ##", "Bratislava|Košice|Žilina", "Obchodná|Hlavná|Námestie SNP", forms="s.r.o.|a.s.", de="Slowakei", fr="Slovaquie", it="Slovacchia", es="Eslovaquia"),
        _c("SI", "EU", "Slovenia", "####", "Ljubljana|Maribor|Celje", "Slovenska cesta|Čopova ulica|Glavni trg", forms="d.o.o.", de="Slowenien", fr="Slovénie", it="Slovenia", es="Eslovenia"),
        _c("ES", "EU", "Spain", "#####", "Madrid|Barcelona|Valencia|Sevilla", "Calle Mayor|Avenida Diagonal|Calle de Alcalá|Paseo de Gracia", forms="S.L.|S.A.", de="Spanien", fr="Espagne", it="Spagna", es="España"),
        _c("SE", "EU", "Sweden", "### ##", "Stockholm|Göteborg|Malmö", "Drottninggatan|Kungsgatan|Storgatan", forms="AB", de="Schweden", fr="Suède", it="Svezia", es="Suecia"),
        _c("UK", "UK", "United Kingdom", "UK", "Leeds|Manchester|Bristol|Inverness|London", "High Street|Mill Lane|Station Road|Church Street", number_first=True, after=True, forms="Ltd|PLC|LLP", tld="co.uk", de="Vereinigtes Königreich", fr="Royaume-Uni", it="Regno Unito", es="Reino Unido"),
        _c("US", "US", "USA", "US", "Springfield, IL|Austin, TX|Denver, CO|Portland, OR|New York, NY", "Main St|Park Ave|Market Street|Industrial Blvd", number_first=True, after=True, forms="Inc.|LLC|Corp.", tld="com", de="USA", fr="États-Unis", it="Stati Uniti", es="Estados Unidos"),
        _c("CA", "CA", "Canada", "CA", "Toronto, ON|Vancouver, BC|Montréal, QC|Calgary, AB", "King Street West|Rue Sainte-Catherine|Granville Street|Bay Street", number_first=True, after=True, forms="Inc.|Ltd.", tld="ca", de="Kanada", fr="Canada", it="Canada", es="Canadá"),
        _c("JP", "JP", "Japan", "###-####", "Chiyoda-ku, Tokyo|Naka-ku, Yokohama|Kita-ku, Osaka", "1-2-3 Marunouchi|4-5-6 Minatomirai|2-8-1 Umeda", number_first=True, after=True, forms="Co., Ltd.|K.K.", tld="co.jp", de="Japan", fr="Japon", it="Giappone", es="Japón"),
        _c("CN", "OTHER", "China", "######", "Shenzhen, Guangdong|Ningbo, Zhejiang|Yiwu, Zhejiang|Dongguan, Guangdong", "Longgang District|Bao'an District|Jiangbei District|Nancheng Street", number_first=True, after=True, forms="Co., Ltd.|Trading Co., Ltd.", tld="cn", de="China", fr="Chine", it="Cina", es="China"),
        _c("VN", "OTHER", "Vietnam", "######", "Hanoi|Ho Chi Minh City|Da Nang", "Le Loi Street|Nguyen Hue Boulevard|Tran Phu Street", number_first=True, after=True, forms="Co., Ltd.|JSC", tld="vn", de="Vietnam", fr="Viêt Nam", it="Vietnam", es="Vietnam"),
        _c("TR", "OTHER", "Türkiye", "#####", "İstanbul|İzmir|Bursa", "İstiklal Caddesi|Atatürk Bulvarı|Cumhuriyet Caddesi", forms="A.Ş.|Ltd. Şti.", tld="com.tr", de="Türkei", fr="Turquie", it="Turchia", es="Turquía"),
    )
}
# fmt: on
EU = tuple(c for c, v in COUNTRIES.items() if v.region == "EU")
NON_EU_MAKERS = ("CN", "VN", "TR", "US", "JP")

_WORDS = [
    "Acme",
    "Alpen",
    "Aurora",
    "Bergmann",
    "Blue",
    "Brightwell",
    "Cedar",
    "Copper",
    "Crystal",
    "Delta",
    "Elm",
    "Evergreen",
    "Falcon",
    "Fjord",
    "Golden",
    "Granite",
    "Harbor",
    "Helios",
    "Hollow",
    "Iris",
    "Juniper",
    "Kestrel",
    "Linden",
    "Lotus",
    "Lumen",
    "Maple",
    "Meridian",
    "Nordic",
    "Oak",
    "Orbit",
    "Pebble",
    "Pine",
    "Polar",
    "Quill",
    "Raven",
    "River",
    "Saffron",
    "Sol",
    "Summit",
    "Terra",
    "Tidal",
    "Vela",
    "Verde",
    "Willow",
    "Zenith",
    "Kiri",
    "Sakura",
    "Baltic",
    "Danube",
    "Rhine",
    "Adria",
    "Iberia",
    "Tatra",
]
_TRADES = ("Toys", "Trading", "Home", "Labs", "Foods", "Naturals", "Electronics", "Goods", "Care")


def postal_code(rng: random.Random, country: Country) -> str:
    """A plausible postal code in the country's format."""
    if country.postal == "UK":
        area = rng.choice(("LS", "M", "BS", "IV", "SW", "EC", "G", "CF", "B"))
        return f"{area}{rng.randint(1, 19)} {rng.randint(1, 9)}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}"
    if country.postal == "US":
        return f"{rng.randint(10000, 99950):05d}" + (
            f"-{rng.randint(1000, 9999)}" if rng.random() < 0.2 else ""
        )
    if country.postal == "CA":
        letters = "ABCEGHJKLMNPRSTVXY"
        return (
            f"{rng.choice(letters)}{rng.randint(0, 9)}{rng.choice(letters)} "
            f"{rng.randint(0, 9)}{rng.choice(letters)}{rng.randint(0, 9)}"
        )
    out = []
    for ch in country.postal:
        if ch == "#":
            out.append(str(rng.randint(0, 9)) if out else str(rng.randint(1, 9)))
        elif ch == "@":
            out.append(rng.choice("ACDEFHKNPRTVWXY"))
        else:
            out.append(ch)
    return "".join(out)


def company(rng: random.Random, country: Country) -> str:
    """A company name with the country's legal form."""
    a, b = rng.sample(_WORDS, 2)
    style = rng.random()
    base = (
        f"{a} {rng.choice(_TRADES)}" if style < 0.5 else (a if style < 0.8 else f"{a}{b.lower()}")
    )
    return f"{base} {rng.choice(country.forms)}"


def slug(name: str) -> str:
    """The web-name of a company: its first word, lower-case, ASCII letters only."""
    first = name.split(maxsplit=1)[0].lower()
    return "".join(ch for ch in first if ch.isascii() and ch.isalnum()) or "brand"


def electronic(rng: random.Random, name: str, country: Country) -> str:
    """An e-mail or web address for the company."""
    domain = f"{slug(name)}.{country.tld}"
    return rng.choice(
        (
            f"info@{domain}",
            f"www.{domain}",
            f"service@{domain}",
            f"https://{domain}/contact",
            f"hello@{domain}",
            f"E-mail: support@{domain}",
        )
    )


def address(
    rng: random.Random, country: Country, language: str, *, with_country: bool | None = None
) -> list[str]:
    """Street line and postal line (sometimes one line), in the country's own order."""
    number = f"{rng.randint(1, 180)}{rng.choice(('', '', '', 'a', 'B'))}"
    street = rng.choice(country.streets)
    street_line = f"{number} {street}" if country.number_first else f"{street} {number}"
    if country.code == "JP":
        street_line = street
    if country.code == "IT" and rng.random() < 0.5:
        street_line = f"{street}, {number}"
    code = postal_code(rng, country)
    city = rng.choice(country.cities)
    if country.code in {"CA", "US"} or country.postal_after_city:
        postal_line = f"{city} {code}"
    elif country.code == "IT" and rng.random() < 0.5:
        postal_line = f"{code} {city} ({city[:2].upper()})"
    else:
        postal_line = f"{code} {city}"
    show_country = with_country if with_country is not None else rng.random() < 0.55
    if show_country:
        postal_line += f", {country.names.get(language, country.names['en'])}"
    if rng.random() < 0.3:
        return [f"{street_line}, {postal_line}"]
    return [street_line, postal_line]
