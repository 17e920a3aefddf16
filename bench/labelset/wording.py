"""How real labels word each element, per language: several variants of every phrase.

Collected from label conventions (regulation model texts, common retail packaging), not from
the rulebook's patterns. Each entry is a template; ``{x}`` fields are filled by the generator.
"""

from __future__ import annotations

ROLE_MAKER: dict[str, tuple[str, ...]] = {
    "en": ("Manufacturer:", "Manufactured by", "Made by", "Mfd. by", "Producer:", "Manufacturer"),
    "de": ("Hersteller:", "Hergestellt von", "Herstellerin:", "Produziert von", "Hersteller"),
    "fr": ("Fabricant :", "Fabriqué par", "Fabriqué par :", "Producteur :", "Fabricant"),
    "it": ("Produttore:", "Prodotto da", "Fabbricante:", "Fabbricato da"),
    "es": ("Fabricante:", "Fabricado por", "Producido por", "Elaborado por"),
}
ROLE_DISTRIBUTOR: dict[str, tuple[str, ...]] = {
    "en": (
        "Distributed by",
        "Distributor:",
        "Manufactured for",
        "Mfd. for",
        "Packed for",
        "Marketed by",
        "Dist. by",
    ),
    "de": ("Vertrieb:", "Vertrieben von", "Vertrieben durch", "Inverkehrbringer:"),
    "fr": ("Distribué par", "Distributeur :", "Distribué par :"),
    "it": ("Distribuito da", "Distributore:"),
    "es": ("Distribuido por", "Distribuidor:"),
}
ROLE_EU_OPERATOR: dict[str, tuple[str, ...]] = {
    "en": (
        "Importer:",
        "Imported by",
        "EU importer:",
        "EU Responsible Person:",
        "EU representative:",
        "Authorised representative:",
        "EU contact:",
        "Responsible economic operator:",
        "EU Authorized Representative:",
    ),
    "de": (
        "Importeur:",
        "Importiert von",
        "Importiert durch",
        "EU-Verantwortlicher:",
        "Verantwortliche Person (EU):",
        "Bevollmächtigter:",
        "EU-Bevollmächtigter:",
        "Verantwortlicher Wirtschaftsakteur:",
        "Ansprechpartner in der EU:",
        "Kontakt in der EU:",
        "EU-Importeur:",
    ),
    "fr": (
        "Importateur :",
        "Importé par",
        "Personne responsable (UE) :",
        "Représentant UE :",
        "Mandataire :",
        "Opérateur économique responsable :",
        "Contact UE :",
        "Importé dans l'UE par",
    ),
    "it": (
        "Importatore:",
        "Importato da",
        "Persona responsabile UE:",
        "Rappresentante autorizzato:",
        "Operatore economico responsabile:",
        "Importato nell'UE da",
    ),
    "es": (
        "Importador:",
        "Importado por",
        "Persona responsable UE:",
        "Representante autorizado:",
        "Operador económico responsable:",
        "Importado en la UE por",
    ),
}
ROLE_UK_IMPORTER: tuple[str, ...] = (
    "Imported by",
    "UK Importer:",
    "Importer:",
    "Imported into the UK by",
    "UK importer",
)
ROLE_COS_RP: dict[str, tuple[str, ...]] = {
    "en": ("Responsible Person:", "RP:", "EU RP:", "UK RP:", "Responsible person"),
    "de": ("Verantwortliche Person:", "Verantwortliche Person (EU):", "Hersteller:"),
    "fr": ("Personne responsable :", "Personne responsable", "Fabricant :"),
    "it": ("Persona responsabile:", "Produttore:"),
    "es": ("Persona responsable:", "Fabricante:"),
}
COO: dict[str, tuple[str, ...]] = {
    "en": (
        "Made in {country}",
        "Product of {country}",
        "MADE IN {COUNTRY}",
        "Manufactured in {country}",
        "Assembled in {country}",
    ),
    "de": (
        "Hergestellt in {country}",
        "Made in {country}",
        "Herkunftsland: {country}",
        "Ursprungsland: {country}",
    ),
    "fr": (
        "Fabriqué en {country}",
        "Made in {country}",
        "Pays d'origine : {country}",
        "Produit en {country}",
    ),
    "it": (
        "Prodotto in {country}",
        "Made in {country}",
        "Paese di origine: {country}",
        "Fabbricato in {country}",
    ),
    "es": (
        "Fabricado en {country}",
        "Hecho en {country}",
        "País de origen: {country}",
        "Made in {country}",
    ),
}
BATCH: dict[str, tuple[str, ...]] = {
    "en": (
        "Batch: {code}",
        "Lot: {code}",
        "LOT {code}",
        "Batch No. {code}",
        "Lot #{code}",
        "BATCH {code}",
        "L: {code}",
    ),
    "de": (
        "Charge: {code}",
        "Ch.-B.: {code}",
        "Ch.-B. {code}",
        "Chargen-Nr. {code}",
        "Los: {code}",
        "Charge {code}",
        "Ch.B.: {code}",
        "L {code}",
    ),
    "fr": ("Lot : {code}", "N° de lot : {code}", "Lot n° {code}", "LOT {code}", "Lot: {code}"),
    "it": ("Lotto: {code}", "Lotto n. {code}", "L. {code}", "LOTTO {code}"),
    "es": ("Lote: {code}", "Lote n.º {code}", "LOTE {code}", "L: {code}"),
}
MODEL: dict[str, tuple[str, ...]] = {
    "en": ("Model: {code}", "Model No. {code}", "Item No.: {code}", "Model {code}", "Type: {code}"),
    "de": (
        "Modell: {code}",
        "Typ: {code}",
        "Art.-Nr. {code}",
        "Artikelnummer: {code}",
        "Modell-Nr.: {code}",
        "Typ {code}",
    ),
    "fr": ("Modèle : {code}", "Réf. : {code}", "Référence : {code}", "Type : {code}"),
    "it": ("Modello: {code}", "Art. {code}", "Codice articolo: {code}", "Mod. {code}"),
    "es": ("Modelo: {code}", "Ref.: {code}", "Referencia: {code}", "Mod. {code}"),
}
NET_EU: dict[str, tuple[str, ...]] = {
    "en": ("Net weight {n} g", "{n}g", "Net wt. {n} g", "{n} g \u212e", "Net contents: {n} g"),
    "de": ("Nettogewicht: {n} g", "{n} g", "Inhalt: {n} g", "Füllmenge {n} g", "{n}g \u212e"),
    "fr": ("Poids net : {n} g", "{n} g", "Contenance : {n} g", "Poids net: {n}g"),
    "it": ("Peso netto: {n} g", "{n} g", "Contenuto netto: {n} g", "Peso netto {n}g"),
    "es": ("Peso neto: {n} g", "{n} g", "Contenido neto: {n} g", "Peso neto {n}g"),
}
NET_US: tuple[str, ...] = (
    "Net Wt. {oz} oz ({g} g)",
    "NET WT {OZ} OZ ({g}g)",
    "{oz} oz / {g} g",
    "Net Wt {oz} oz. ({g} g)",
    "NET WT. {oz}OZ ({g}G)",
)
NET_US_METRIC_ONLY: tuple[str, ...] = ("Net Wt. {g} g", "NET WT {g}g", "{g} g")
NET_US_OZ_ONLY: tuple[str, ...] = ("Net Wt. {oz} oz", "NET WT {OZ} OZ", "{oz} oz")
INGREDIENTS: dict[str, tuple[str, ...]] = {
    "en": ("Ingredients: {list}", "INGREDIENTS: {list}", "Ingredients {list}"),
    "de": ("Zutaten: {list}", "ZUTATEN: {list}", "Zutaten {list}"),
    "fr": ("Ingrédients : {list}", "INGRÉDIENTS : {list}", "Ingrédients: {list}"),
    "it": ("Ingredienti: {list}", "INGREDIENTI: {list}"),
    "es": ("Ingredientes: {list}", "INGREDIENTES: {list}"),
}
COS_INGREDIENTS: dict[str, tuple[str, ...]] = {
    "en": ("Ingredients: {inci}", "INGREDIENTS: {inci}"),
    "de": ("Inhaltsstoffe: {inci}", "Ingredients: {inci}", "INCI: {inci}"),
    "fr": ("Ingrédients : {inci}", "Ingredients: {inci}", "INGRÉDIENTS : {inci}"),
    "it": ("Ingredienti: {inci}", "Ingredients: {inci}"),
    "es": ("Ingredientes: {inci}", "Ingredients: {inci}"),
}
INCI = (
    "Aqua, Glycerin, Cetearyl Alcohol, Butyrospermum Parkii Butter, Parfum",
    "Aqua, Sodium Laureth Sulfate, Cocamidopropyl Betaine, Sodium Chloride, Citric Acid",
    "Aqua, Caprylic/Capric Triglyceride, Glycerin, Tocopherol, Phenoxyethanol",
    "Prunus Amygdalus Dulcis Oil, Cera Alba, Simmondsia Chinensis Seed Oil",
)
FOOD_LIST: dict[str, tuple[str, ...]] = {
    "en": ("oat flakes 60%, sugar, sunflower oil, sea salt", "WHEAT flour, sugar, palm oil, salt"),
    "de": (
        "Haferflocken 60%, Zucker, Sonnenblumenöl, Meersalz",
        "WEIZENmehl, Zucker, Palmöl, Salz",
    ),
    "fr": (
        "flocons d'avoine 60 %, sucre, huile de tournesol, sel",
        "farine de BLÉ, sucre, huile de palme, sel",
    ),
    "it": (
        "fiocchi d'avena 60%, zucchero, olio di girasole, sale",
        "farina di FRUMENTO, zucchero, olio di palma, sale",
    ),
    "es": (
        "copos de avena 60 %, azúcar, aceite de girasol, sal",
        "harina de TRIGO, azúcar, aceite de palma, sal",
    ),
}
BEST_BEFORE: dict[str, tuple[str, ...]] = {
    "en": ("Best before: {d}", "Best before end: {m}", "BBE {d}", "Best Before {m}", "Use by: {d}"),
    "de": (
        "Mindestens haltbar bis: {d}",
        "Mindestens haltbar bis Ende: {m}",
        "MHD: {d}",
        "Mind. haltbar bis {d}",
        "Zu verbrauchen bis: {d}",
    ),
    "fr": (
        "À consommer de préférence avant le : {d}",
        "À consommer de préférence avant fin : {m}",
        "DDM : {d}",
        "A consommer de préférence avant le {d}",
        "À consommer jusqu'au : {d}",
    ),
    "it": (
        "Da consumarsi preferibilmente entro il: {d}",
        "Da consumarsi preferibilmente entro fine: {m}",
        "TMC: {d}",
        "Da consumare entro: {d}",
    ),
    "es": (
        "Consumir preferentemente antes del: {d}",
        "Consumir preferentemente antes del fin de: {m}",
        "Fecha de caducidad: {d}",
        "Consumir antes del: {d}",
    ),
}
STORAGE: dict[str, tuple[str, ...]] = {
    "en": ("Store in a cool, dry place.", "Keep refrigerated.", "Store below 25°C."),
    "de": ("Kühl und trocken lagern.", "Trocken aufbewahren.", "Vor Wärme geschützt lagern."),
    "fr": ("À conserver dans un endroit frais et sec.", "Conserver à l'abri de l'humidité."),
    "it": ("Conservare in luogo fresco e asciutto.", "Conservare al riparo dalla luce."),
    "es": ("Conservar en lugar fresco y seco.", "Conservar protegido de la luz."),
}
NUTRITION: dict[str, tuple[str, ...]] = {
    "en": (
        "Nutrition information per 100 g: Energy 1850 kJ / 440 kcal",
        "Typical values per 100 g: Energy 1620 kJ / 385 kcal",
    ),
    "de": (
        "Nährwerte pro 100 g: Energie 1850 kJ / 440 kcal",
        "Nährwertangaben je 100 g: Brennwert 1620 kJ / 385 kcal",
    ),
    "fr": (
        "Valeurs nutritionnelles pour 100 g : Énergie 1850 kJ / 440 kcal",
        "Déclaration nutritionnelle pour 100 g : Énergie 1620 kJ / 385 kcal",
    ),
    "it": (
        "Valori nutrizionali per 100 g: Energia 1850 kJ / 440 kcal",
        "Dichiarazione nutrizionale per 100 g: Energia 1620 kJ / 385 kcal",
    ),
    "es": (
        "Información nutricional por 100 g: Valor energético 1850 kJ / 440 kcal",
        "Valores nutricionales por 100 g: Energía 1620 kJ / 385 kcal",
    ),
}
TOY_WARNING: dict[str, tuple[tuple[str, ...], ...]] = {
    "en": (
        ("Warning! Not suitable for children under 36 months.", "Small parts. Choking hazard."),
        ("WARNING: Not suitable for children under 3 years.", "Contains small parts."),
        ("Warning. Not suitable for children under 36 months due to small parts.",),
    ),
    "de": (
        ("Achtung! Nicht für Kinder unter 36 Monaten geeignet.", "Verschluckbare Kleinteile."),
        ("Warnhinweis: Nicht für Kinder unter 3 Jahren geeignet.", "Erstickungsgefahr."),
        ("ACHTUNG: Für Kinder unter 36 Monaten nicht geeignet. Kleine Teile.",),
    ),
    "fr": (
        ("Attention ! Ne convient pas aux enfants de moins de 36 mois.", "Petits éléments."),
        ("AVERTISSEMENT : Ne convient pas aux enfants de moins de 3 ans.", "Risque d'étouffement."),
        ("Attention. Ne convient pas à un enfant de moins de 36 mois. Petites pièces.",),
    ),
    "it": (
        ("Attenzione! Non adatto a bambini di età inferiore a 36 mesi.", "Piccole parti."),
        (
            "AVVERTENZA: Non adatto ai bambini di età inferiore ai 3 anni.",
            "Pericolo di soffocamento.",
        ),
    ),
    "es": (
        ("Advertencia: No conveniente para niños menores de 36 meses.", "Piezas pequeñas."),
        ("¡Atención! No apto para niños menores de 3 años.", "Peligro de asfixia."),
    ),
}
US_CHOKING: tuple[tuple[str, ...], ...] = (
    ("WARNING: CHOKING HAZARD -- Small parts.", "Not for children under 3 yrs."),
    ("⚠ WARNING:", "CHOKING HAZARD - Small parts.", "Not for children under 3 years."),
    ("WARNING: CHOKING HAZARD - Toy contains a small ball.", "Not for children under 3 yrs."),
)
SUPP_NAME: dict[str, tuple[str, ...]] = {
    "en": ("Food supplement", "FOOD SUPPLEMENT with vitamins"),
    "de": ("Nahrungsergänzungsmittel", "Nahrungsergänzungsmittel mit Vitamin D3"),
    "fr": ("Complément alimentaire", "COMPLÉMENT ALIMENTAIRE"),
    "it": ("Integratore alimentare", "INTEGRATORE ALIMENTARE"),
    "es": ("Complemento alimenticio", "COMPLEMENTO ALIMENTICIO"),
}
SUPP_DOSE: dict[str, tuple[str, ...]] = {
    "en": ("Recommended daily dose: 1 capsule per day.", "Take 2 tablets daily with water."),
    "de": ("Verzehrempfehlung: täglich 1 Kapsel mit Wasser.", "Tagesdosis: 2 Tabletten."),
    "fr": ("Dose journalière recommandée : 2 gélules par jour.", "Prendre 1 comprimé par jour."),
    "it": ("Dose giornaliera raccomandata: 1 compressa al giorno.",),
    "es": ("Dosis diaria recomendada: 1 cápsula al día.",),
}
SUPP_EXCEED: dict[str, tuple[str, ...]] = {
    "en": ("Do not exceed the recommended daily dose.",),
    "de": (
        "Die angegebene empfohlene tägliche Verzehrmenge darf nicht überschritten werden.",
        "Empfohlene Tagesdosis nicht überschreiten.",
    ),
    "fr": ("Ne pas dépasser la dose journalière recommandée.",),
    "it": ("Non superare la dose giornaliera raccomandata.",),
    "es": ("No superar la dosis diaria expresamente recomendada.",),
}
SUPP_DIET: dict[str, tuple[str, ...]] = {
    "en": ("Food supplements should not be used as a substitute for a varied diet.",),
    "de": (
        "Nahrungsergänzungsmittel sind kein Ersatz für eine ausgewogene und abwechslungsreiche"
        " Ernährung.",
    ),
    "fr": (
        "Les compléments alimentaires ne doivent pas se substituer à un régime alimentaire varié.",
    ),
    "it": ("Gli integratori non vanno intesi come sostituti di una dieta variata.",),
    "es": (
        "Los complementos alimenticios no deben utilizarse como sustitutos de una dieta"
        " equilibrada.",
    ),
}
SUPP_CHILDREN: dict[str, tuple[str, ...]] = {
    "en": ("Keep out of reach of young children.", "Keep out of the reach of children."),
    "de": ("Außerhalb der Reichweite von kleinen Kindern aufbewahren.",),
    "fr": ("Tenir hors de portée des jeunes enfants.", "Tenir hors de la portée des enfants."),
    "it": ("Tenere fuori dalla portata dei bambini al di sotto dei tre anni.",),
    "es": ("Mantener fuera del alcance de los niños más pequeños.",),
}
FILLER: dict[str, tuple[str, ...]] = {
    "en": (
        "Keep this information for future reference.",
        "Read the instructions before use.",
        "Use only as directed and keep away from heat.",
    ),
    "de": (
        "Bitte die Gebrauchsanweisung vor der Verwendung lesen und aufbewahren.",
        "Nur für den Innenbereich. Vor Nässe schützen und nicht in der Nähe von Hitze verwenden.",
    ),
    "fr": (
        "Lire attentivement la notice avant utilisation et la conserver.",
        "Utiliser uniquement à l'intérieur. Ne pas exposer à la chaleur ni à l'humidité.",
    ),
    "it": (
        "Leggere attentamente le istruzioni prima dell'uso e conservarle.",
        "Solo per uso interno. Tenere lontano da fonti di calore e umidità.",
    ),
    "es": (
        "Lea atentamente las instrucciones antes del uso y consérvelas.",
        "Solo para uso en interiores. Mantener alejado del calor y de la humedad.",
    ),
}
TITLES: dict[str, dict[str, tuple[str, ...]]] = {
    "toys": {
        "en": ("Wooden Train Set", "Stacking Rings", "Plush Bear"),
        "de": ("Holzeisenbahn", "Stapelturm aus Holz", "Plüschbär"),
        "fr": ("Train en bois", "Anneaux à empiler", "Ours en peluche"),
        "it": ("Trenino in legno", "Anelli impilabili"),
        "es": ("Tren de madera", "Aros apilables"),
    },
    "cosmetics": {
        "en": ("Hydrating Face Cream", "Gentle Shampoo"),
        "de": ("Pflegende Handcreme", "Mildes Shampoo"),
        "fr": ("Crème hydratante", "Shampooing doux"),
        "it": ("Crema idratante", "Shampoo delicato"),
        "es": ("Crema hidratante", "Champú suave"),
    },
    "electronics": {
        "en": ("LED Desk Lamp", "USB Charger", "Bluetooth Speaker"),
        "de": ("LED-Schreibtischleuchte", "USB-Ladegerät", "Bluetooth-Lautsprecher"),
        "fr": ("Lampe de bureau LED", "Chargeur USB", "Enceinte Bluetooth"),
        "it": ("Lampada da scrivania LED", "Caricatore USB", "Altoparlante Bluetooth"),
        "es": ("Lámpara de escritorio LED", "Cargador USB", "Altavoz Bluetooth"),
    },
    "food": {
        "en": ("Honey Oat Granola", "Butter Shortbread"),
        "de": ("Knusper-Müsli", "Butterkekse"),
        "fr": ("Granola au miel", "Sablés au beurre"),
        "it": ("Granola al miele", "Biscotti al burro"),
        "es": ("Granola con miel", "Galletas de mantequilla"),
    },
    "supplements": {
        "en": ("Vitamin D3 1000 IU", "Magnesium 300 mg"),
        "de": ("Vitamin D3 1000 I.E.", "Magnesium 300 mg"),
        "fr": ("Vitamine D3", "Magnésium B6"),
        "it": ("Vitamina D3", "Magnesio"),
        "es": ("Vitamina D3", "Magnesio"),
    },
    "general": {
        "en": ("Stainless Steel Bottle 500 ml", "Ceramic Mug"),
        "de": ("Edelstahl-Trinkflasche 500 ml", "Keramikbecher"),
        "fr": ("Gourde en inox 500 ml", "Mug en céramique"),
        "it": ("Borraccia in acciaio 500 ml", "Tazza in ceramica"),
        "es": ("Botella de acero 500 ml", "Taza de cerámica"),
    },
}
BATTERY: dict[str, tuple[str, ...]] = {
    "en": ("Batteries included: 2 x AA.", "Requires 3 x AAA batteries (not included)."),
    "de": ("Batterien enthalten: 2 x AA.", "Benötigt 3 x AAA Batterien (nicht enthalten)."),
    "fr": ("Piles incluses : 2 x AA.", "Fonctionne avec 3 piles AAA (non incluses)."),
    "it": ("Batterie incluse: 2 x AA.", "Richiede 3 batterie AAA (non incluse)."),
    "es": ("Pilas incluidas: 2 x AA.", "Funciona con 3 pilas AAA (no incluidas)."),
}
