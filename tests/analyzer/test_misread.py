"""A rule that would fail on OCR'd text first asks whether the element is there, misread."""

from __future__ import annotations

from analyzer.evaluator import evaluate
from analyzer.misread import find_misread

SUPPLEMENT = [
    "Vitamina D3",
    "Dose giornaliera raccomandata: 1 compressa al giorno.",
    "Non superare la dose giornaliera raccomandata.",
    "Gli integratori non vanno intesi come sostituti di una dieta variata.",
    "Tenere fuori dalla portata dei bambini al di sotto dei tre anni.",
    "Ingredienti: fiocchi d'avena 60%, zucchero, sale",
    "INTEGNATORE ALIMENTARE",
    "Peso netto 500g",
]


def _status(
    lines: list[str], category: str, market: str, rule: str, confidences: list[float] | None = None
) -> tuple[str, str]:
    (report,) = evaluate(lines, category, [market], confidences=confidences or ())  # type: ignore[arg-type]
    finding = next(f for f in report.findings if f.rule == rule)
    return finding.status, finding.evidence


def test_a_misread_name_is_unclear_with_the_line_and_its_ocr_confidence() -> None:
    confidences = [0.99] * len(SUPPLEMENT)
    confidences[6] = 0.93
    status, evidence = _status(SUPPLEMENT, "supplements", "IT", "EU-SUPP-NAME", confidences)
    assert status == "unclear"
    assert '"INTEGNATORE ALIMENTARE"' in evidence and "OCR confidence 0.93" in evidence
    assert "1 character(s) misread" in evidence


def test_text_known_to_be_right_is_not_second_guessed() -> None:
    # The same words as the label's own text (no OCR): a misspelt name is a real problem.
    status, _ = _status(SUPPLEMENT, "supplements", "IT", "EU-SUPP-NAME")
    assert status == "fail"


def test_an_absent_element_still_fails_on_ocr_text() -> None:
    lines = [x for x in SUPPLEMENT if "ALIMENTARE" not in x]
    status, _ = _status(lines, "supplements", "IT", "EU-SUPP-NAME", [0.97] * len(lines))
    assert status == "fail"


def test_another_word_is_not_a_misread() -> None:
    # "Food supplements" (the plural of the mandatory sentence) is not the legal name, and an
    # edit that only adds letters at a word's end does not make it one.
    lines = [
        "Vitamin D3",
        "Take one tablet a day.",
        "Do not exceed the recommended daily dose.",
        "Food supplements should not be used as a substitute for a varied diet.",
        "Keep out of the reach of young children.",
        "Best before end: 03.2028",
    ]
    status, _ = _status(lines, "supplements", "UK", "EU-SUPP-NAME", [0.99] * len(lines))
    assert status == "fail"


def test_weak_lines_allow_more_edits_and_kanji_count_more_than_letters() -> None:
    lines = ["名称:緑茶", "黄味期限:03.09.2027", "内容量:200ml"]
    found = find_misread(["賞味期限|消費期限"], lines, [0.96, 0.96, 0.99], [False] * 3)
    assert found is not None and found.edits == 1 and found.line == "黄味期限:03.09.2027"
    # Two letters of ten misread: too many for a confident line, enough for a weak one.
    confident = find_misread([r"mindestens\s+haltbar"], ["Mindeslens haltbur"], [0.97], [False])
    weak = find_misread([r"mindestens\s+haltbar"], ["Mindeslens haltbur"], [0.7], [True])
    assert confident is None
    assert weak is not None and weak.reread and "re-read" in weak.describe()


def test_digits_prove_nothing() -> None:
    # A barcode is one edit away from "524901258175 g": numbers are what patterns leave open.
    assert find_misread([r"\b\d+\s?(g|kg|ml|l)\b"], ["5249012581758"], [0.9], [False]) is None


def test_an_illegible_line_next_to_part_of_a_warning_makes_it_unclear() -> None:
    lines = [
        "Trenino in legno",
        "Attenzione! Non adatto a bambini di età inferiore a 36 mesi.",
        "Piccole parti.",
        "Adn   m mm m   mes.",
        "Fabbricato da Danubenordic S.L., Calle Mayor 133a, 81410 Sevilla, Spagna",
    ]
    confidences = [1.0, 0.99, 0.97, 0.66, 0.99]
    status, evidence = _status(lines, "toys", "ES", "EU-TOY-AGE-WARNING", confidences)
    assert status == "unclear" and "OCR confidence 0.66" in evidence


def test_a_warning_wrapped_onto_the_next_line_is_found() -> None:
    lines = [
        "Ours en peluche",
        "Attention. Ne convient pas à un enfant",
        "de moins de 36 mois. Petites pièces.",
    ]
    status, _ = _status(lines, "toys", "FR", "EU-TOY-AGE-WARNING")
    assert status == "pass"


def test_an_address_with_a_garbled_line_is_unclear_about_its_email() -> None:
    lines = [
        "Holzeisenbahn",
        "Hersteller: Spielwerk GmbH",
        "Lindenweg 12, 90403 Nürnberg, Deutschland",
        "hpsaibrig",
        "Nur für den Innenbereich.",
    ]
    rule = "EU-ALL-GPSR-MANUFACTURER"
    weak, evidence = _status(lines, "toys", "DE", rule, [0.99, 0.99, 0.98, 0.63, 0.99])
    read_well, _ = _status(lines, "toys", "DE", rule, [0.99, 0.99, 0.98, 0.97, 0.99])
    assert weak == "unclear" and '"hpsaibrig"' in evidence and "0.63" in evidence
    assert read_well == "fail"
