"""The catalogue of cephalometric landmarks, as data.

It is the union of the ISBI 2015 challenge set (19), the Aariz set (29: ISBI plus ten) and
the points the analyses need besides (Ba, Pt, Xi, DC, Pm, CC). Codes are stable identifiers
stored with annotations: never rename one, add a new code instead. Soft-tissue points get a
``_s`` suffix rather than the textbook prime, which does not survive URLs and CSV well.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from domain.errors import InvalidInput


class LandmarkGroup(StrEnum):
    CRANIAL_BASE = "cranial_base"
    MAXILLA = "maxilla"
    MANDIBLE = "mandible"
    UPPER_INCISOR = "upper_incisor"
    LOWER_INCISOR = "lower_incisor"
    PREMOLARS = "premolars"
    MOLARS = "molars"
    SOFT_TISSUE = "soft_tissue"


class LandmarkSet(StrEnum):
    ISBI_2015 = "isbi_2015"
    AARIZ = "aariz"


@dataclass(frozen=True, slots=True)
class Landmark:
    code: str
    name: str
    description: str
    group: LandmarkGroup
    sets: frozenset[LandmarkSet]


_BOTH = frozenset({LandmarkSet.ISBI_2015, LandmarkSet.AARIZ})
_AARIZ = frozenset({LandmarkSet.AARIZ})
_NONE: frozenset[LandmarkSet] = frozenset()

_G = LandmarkGroup

LANDMARKS: tuple[Landmark, ...] = (
    # ISBI 2015, in the challenge's numbering order (all also in Aariz).
    Landmark("S", "Sella", "Centre of the sella turcica", _G.CRANIAL_BASE, _BOTH),
    Landmark(
        "N", "Nasion", "Most anterior point of the frontonasal suture", _G.CRANIAL_BASE, _BOTH
    ),
    Landmark(
        "Or", "Orbitale", "Lowest point on the inferior orbital margin", _G.CRANIAL_BASE, _BOTH
    ),
    Landmark("Po", "Porion", "Top of the external auditory meatus", _G.CRANIAL_BASE, _BOTH),
    Landmark(
        "A",
        "Subspinale (A point)",
        "Deepest point of the anterior maxillary concavity, between ANS and prosthion",
        _G.MAXILLA,
        _BOTH,
    ),
    Landmark(
        "B",
        "Supramentale (B point)",
        "Deepest point of the anterior mandibular concavity, between infradentale and pogonion",
        _G.MANDIBLE,
        _BOTH,
    ),
    Landmark("Pog", "Pogonion", "Most anterior point of the bony chin", _G.MANDIBLE, _BOTH),
    Landmark("Me", "Menton", "Lowest point of the mandibular symphysis", _G.MANDIBLE, _BOTH),
    Landmark(
        "Gn",
        "Gnathion",
        "Midway between pogonion and menton on the symphysis outline",
        _G.MANDIBLE,
        _BOTH,
    ),
    Landmark(
        "Go",
        "Gonion",
        "Most posterior-inferior point on the angle of the mandible",
        _G.MANDIBLE,
        _BOTH,
    ),
    Landmark(
        "L1",
        "Lower incisor tip",
        "Incisal edge of the most prominent lower incisor",
        _G.LOWER_INCISOR,
        _BOTH,
    ),
    Landmark(
        "U1",
        "Upper incisor tip",
        "Incisal edge of the most prominent upper incisor",
        _G.UPPER_INCISOR,
        _BOTH,
    ),
    Landmark(
        "UL",
        "Upper lip (labrale superius)",
        "Most anterior point of the upper lip",
        _G.SOFT_TISSUE,
        _BOTH,
    ),
    Landmark(
        "LL",
        "Lower lip (labrale inferius)",
        "Most anterior point of the lower lip",
        _G.SOFT_TISSUE,
        _BOTH,
    ),
    Landmark(
        "Sn", "Subnasale", "Junction of the columella and the upper lip", _G.SOFT_TISSUE, _BOTH
    ),
    Landmark(
        "Pog_s",
        "Soft-tissue pogonion",
        "Most anterior point of the soft-tissue chin",
        _G.SOFT_TISSUE,
        _BOTH,
    ),
    Landmark("PNS", "Posterior nasal spine", "Tip of the posterior nasal spine", _G.MAXILLA, _BOTH),
    Landmark("ANS", "Anterior nasal spine", "Tip of the anterior nasal spine", _G.MAXILLA, _BOTH),
    Landmark(
        "Ar",
        "Articulare",
        "Intersection of the posterior ramus border with the cranial base outline",
        _G.CRANIAL_BASE,
        _BOTH,
    ),
    # Added by Aariz.
    Landmark("Prn", "Pronasale", "Most anterior point of the nose tip", _G.SOFT_TISSUE, _AARIZ),
    Landmark(
        "R",
        "Ramus point",
        "Deepest point on the posterior border of the ramus",
        _G.MANDIBLE,
        _AARIZ,
    ),
    Landmark(
        "Co",
        "Condylion",
        "Most posterior-superior point of the mandibular condyle",
        _G.MANDIBLE,
        _AARIZ,
    ),
    Landmark(
        "UPM",
        "Upper premolar cusp tip",
        "Buccal cusp tip of the upper first premolar",
        _G.PREMOLARS,
        _AARIZ,
    ),
    Landmark(
        "LPM",
        "Lower premolar cusp tip",
        "Buccal cusp tip of the lower first premolar",
        _G.PREMOLARS,
        _AARIZ,
    ),
    Landmark(
        "UM",
        "Upper molar cusp tip",
        "Mesiobuccal cusp tip of the upper first molar",
        _G.MOLARS,
        _AARIZ,
    ),
    Landmark(
        "LM",
        "Lower molar cusp tip",
        "Mesiobuccal cusp tip of the lower first molar",
        _G.MOLARS,
        _AARIZ,
    ),
    Landmark(
        "U1_apex", "Upper incisor apex", "Root apex of the upper incisor", _G.UPPER_INCISOR, _AARIZ
    ),
    Landmark(
        "L1_apex", "Lower incisor apex", "Root apex of the lower incisor", _G.LOWER_INCISOR, _AARIZ
    ),
    Landmark(
        "N_s",
        "Soft-tissue nasion",
        "Deepest point of the soft-tissue concavity over nasion",
        _G.SOFT_TISSUE,
        _AARIZ,
    ),
    # Needed by Ricketts, Bjork-Jarabak and superimposition; in neither benchmark set.
    Landmark(
        "Ba",
        "Basion",
        "Most anterior-inferior point of the foramen magnum margin",
        _G.CRANIAL_BASE,
        _NONE,
    ),
    Landmark(
        "Pt",
        "Pterygoid point",
        "Posterior-superior point of the pterygomaxillary fissure at foramen rotundum",
        _G.CRANIAL_BASE,
        _NONE,
    ),
    Landmark("Xi", "Xi point", "Geometric centre of the ramus (Ricketts)", _G.MANDIBLE, _NONE),
    Landmark(
        "DC",
        "DC point",
        "Centre of the condylar neck on the Ba-N line (Ricketts)",
        _G.MANDIBLE,
        _NONE,
    ),
    Landmark(
        "Pm",
        "Protuberance menti (suprapogonion)",
        "Point where the anterior symphysis outline turns from concave to convex",
        _G.MANDIBLE,
        _NONE,
    ),
    Landmark(
        "CC",
        "Centre of cranium",
        "Intersection of the Ba-N line with the facial axis Pt-Gn (Ricketts)",
        _G.CRANIAL_BASE,
        _NONE,
    ),
)

_BY_CODE: dict[str, Landmark] = {lm.code: lm for lm in LANDMARKS}


def get_landmark(code: str) -> Landmark:
    try:
        return _BY_CODE[code]
    except KeyError:
        raise InvalidInput("unknown_landmark", f"unknown landmark code {code!r}") from None


def check_known(codes: Iterable[str]) -> None:
    """Raise ``unknown_landmark`` naming every code not in the catalogue."""
    unknown = sorted(c for c in codes if c not in _BY_CODE)
    if unknown:
        raise InvalidInput("unknown_landmark", f"unknown landmark codes: {', '.join(unknown)}")


def landmarks_in(landmark_set: LandmarkSet) -> tuple[Landmark, ...]:
    return tuple(lm for lm in LANDMARKS if landmark_set in lm.sets)
