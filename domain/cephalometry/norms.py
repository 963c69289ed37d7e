"""Cephalometric norms as versioned data.

Published norms differ between sources, populations, ages and sexes, so each value carries
its citation and applicability, and a report can say exactly which norm it compared with.
Changing a value means adding a row with a new ``version``, never editing one in place:
stored reports refer to (key, version).

Values come from docs ORTHODONTICS.md unless marked otherwise. Where a source gives only a
mean (Steiner's SN-GoGn 32 deg) the SD is left empty rather than invented; such a norm still
yields a difference from the mean but no deviation in SDs.

Version 2026.1 (issue 19) corrects Tweed's IMPA to the usual 90 +/- 5 (85-95; 2025.1 had
87-93), adds the published SDs of Downs' convexity and Y-axis, McNamara's adult Ann Arbor
values and Jacobson's Wits, and adds the Bjork/Jarabak saddle, articular and gonial angles,
U1-SN, McNamara's maxillomandibular difference and Pog to N-perpendicular, and the upper lip
to Ricketts' E-plane. The 2025.1 rows stay in the table (a stored report names them); for
the same key, sex and age band the newer row wins.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

NORMS_VERSION = "2026.1"
FIRST_VERSION = "2025.1"


class Sex(StrEnum):
    FEMALE = "female"
    MALE = "male"
    ANY = "any"


@dataclass(frozen=True, slots=True)
class Norm:
    """One reference value. Ages are in years, ``age_min`` inclusive, ``age_max`` exclusive."""

    key: str
    unit: str
    mean: float | None
    sd: float | None
    source: str
    population: str
    range_low: float | None = None
    range_high: float | None = None
    sex: Sex = Sex.ANY
    age_min: float | None = None
    age_max: float | None = None
    version: str = NORMS_VERSION

    def applies_to(self, age: float | None, sex: Sex | None) -> bool:
        # Unknown sex matches only sex-neutral norms: guessing would bias the comparison.
        if self.sex is not Sex.ANY and self.sex is not sex:
            return False
        if age is None:
            return self.age_min is None and self.age_max is None
        if self.age_min is not None and age < self.age_min:
            return False
        return self.age_max is None or age < self.age_max

    def deviation_sd(self, value: float) -> float | None:
        if self.mean is None or not self.sd:
            return None
        return (value - self.mean) / self.sd

    @property
    def age_span(self) -> float:
        low = 0.0 if self.age_min is None else self.age_min
        high = 200.0 if self.age_max is None else self.age_max
        return high - low


STEINER = "Steiner CC. Cephalometrics for you and me. Am J Orthod 1953;39:729-755"
DOWNS = (
    "Downs WB. Variations in facial relationships: their significance in treatment and "
    "prognosis. Am J Orthod 1948;34:812-840"
)
TWEED = (
    "Tweed CH. The Frankfort-mandibular incisor angle (FMIA) in orthodontic diagnosis, "
    "treatment planning and prognosis. Angle Orthod 1954;24:121-169"
)
MCNAMARA = "McNamara JA Jr. A method of cephalometric evaluation. Am J Orthod 1984;86:449-469"
JACOBSON = "Jacobson A. The 'Wits' appraisal of jaw disharmony. Am J Orthod 1975;67:125-138"
JARABAK = (
    "Jarabak JR, Fizzell JA. Technique and treatment with light-wire edgewise appliances. "
    "Mosby 1972; Bjork A. The face in profile. Sven Tandlak Tidskr 1947;40(suppl 5B)"
)
RICKETTS = (
    "Ricketts RM. Perspectives in the clinical application of cephalometrics. "
    "Angle Orthod 1981;51:115-150"
)
RICKETTS_LIPS = (
    "Ricketts RM. Esthetics, environment, and the law of lip relation. "
    "Am J Orthod 1968;54:272-289"
)
BJORK = (
    "Bjork A. Prediction of mandibular growth rotation. Am J Orthod 1969;55:585-599; "
    "values as tabulated by Jarabak JR, Fizzell JA (Mosby 1972)"
)

_STEINER_POP = "North American orthodontic reference sample (Steiner)"
_DOWNS_POP = "20 white adolescents, 12-17 years, with excellent untreated occlusion"
_TWEED_POP = "Tweed's clinical standards for white North American patients"
_MCN_ADULT = "Untreated adults with well-balanced faces (Ann Arbor sample)"
_MCN_CHILD = "Children in the mixed dentition (Bolton standards)"
_JARABAK_POP = "Jarabak's clinical standards"
_RICKETTS_POP = "Ricketts' clinical norms (not from ORTHODONTICS.md; verify before release)"
_RICKETTS_LIPS_POP = "Ricketts' clinical sample of balanced adult profiles"
_MCN_ADULT_F = "Untreated adult women with well-balanced faces (Ann Arbor sample)"
_MCN_ADULT_M = "Untreated adult men with well-balanced faces (Ann Arbor sample)"
_JACOBSON_F = "Adult females with excellent occlusion"
_JACOBSON_M = "Adult males with excellent occlusion"
_BJORK_POP = "Bjork's and Jarabak's samples of untreated subjects (Jarabak's clinical table)"

_TABLE_2025_1: tuple[Norm, ...] = (
    # Steiner
    Norm("sna", "deg", 82.0, 2.0, STEINER, _STEINER_POP),
    Norm("snb", "deg", 80.0, 2.0, STEINER, _STEINER_POP),
    Norm("anb", "deg", 2.0, 2.0, STEINER, _STEINER_POP),
    Norm("sn_gogn", "deg", 32.0, None, STEINER, _STEINER_POP),
    Norm("u1_na_angle", "deg", 22.0, None, STEINER, _STEINER_POP),
    Norm("u1_na_distance", "mm", 4.0, None, STEINER, _STEINER_POP),
    Norm("l1_nb_angle", "deg", 25.0, None, STEINER, _STEINER_POP),
    Norm("l1_nb_distance", "mm", 4.0, None, STEINER, _STEINER_POP),
    Norm("interincisal_angle", "deg", 130.0, None, STEINER, _STEINER_POP),
    # Downs
    Norm("facial_angle", "deg", 87.8, 3.6, DOWNS, _DOWNS_POP, 82.0, 95.0),
    Norm("angle_of_convexity", "deg", 0.0, None, DOWNS, _DOWNS_POP, -8.5, 10.0),
    Norm("y_axis", "deg", 59.4, None, DOWNS, _DOWNS_POP, 53.0, 66.0),
    # Tweed
    Norm("fma", "deg", 25.0, None, TWEED, _TWEED_POP, 20.0, 30.0),
    Norm("impa", "deg", 90.0, None, TWEED, _TWEED_POP, 87.0, 93.0),
    Norm("fmia", "deg", None, None, TWEED, _TWEED_POP, 65.0, 70.0),
    # McNamara; the adult/child boundary at 18 is our policy, the paper gives two samples.
    Norm("a_to_n_perp", "mm", 0.0, None, MCNAMARA, _MCN_CHILD, age_max=18.0),
    Norm("a_to_n_perp", "mm", 1.0, None, MCNAMARA, _MCN_ADULT, age_min=18.0),
    Norm("co_a", "mm", 91.0, None, MCNAMARA, _MCN_ADULT, sex=Sex.FEMALE, age_min=18.0),
    Norm("co_gn", "mm", 120.2, None, MCNAMARA, _MCN_ADULT, sex=Sex.FEMALE, age_min=18.0),
    Norm("ans_me", "mm", 66.7, None, MCNAMARA, _MCN_ADULT, sex=Sex.FEMALE, age_min=18.0),
    Norm("co_a", "mm", 99.8, None, MCNAMARA, _MCN_ADULT, sex=Sex.MALE, age_min=18.0),
    Norm("co_gn", "mm", 134.3, None, MCNAMARA, _MCN_ADULT, sex=Sex.MALE, age_min=18.0),
    Norm("ans_me", "mm", 74.6, None, MCNAMARA, _MCN_ADULT, sex=Sex.MALE, age_min=18.0),
    # Wits
    Norm(
        "wits", "mm", 0.0, None, JACOBSON, "Adult females with excellent occlusion", sex=Sex.FEMALE
    ),
    Norm("wits", "mm", -1.0, None, JACOBSON, "Adult males with excellent occlusion", sex=Sex.MALE),
    # Bjork-Jarabak
    Norm("bjork_sum", "deg", 396.0, 6.0, JARABAK, _JARABAK_POP),
    Norm("facial_height_ratio", "%", None, None, JARABAK, _JARABAK_POP, 62.0, 65.0),
    # Ricketts summary
    Norm("facial_axis", "deg", 90.0, 3.5, RICKETTS, _RICKETTS_POP),
    # Ricketts gives 2 mm at age 9, falling about 0.2 mm a year; only used near that age.
    Norm("convexity_a_point", "mm", 2.0, 2.0, RICKETTS, _RICKETTS_POP, age_min=7.0, age_max=12.0),
    Norm("l1_to_a_pog", "mm", 1.0, 2.3, RICKETTS, _RICKETTS_POP),
    Norm("lower_lip_to_e_plane", "mm", -2.0, 2.0, RICKETTS, _RICKETTS_POP),
)

_V = NORMS_VERSION
_ADULT = 18.0
_F, _M = Sex.FEMALE, Sex.MALE
_TABLE_2026_1: tuple[Norm, ...] = (
    # Tweed: 90 +/- 5 (85-95); 2025.1's 87-93 flagged a normal 94 deg as proclined.
    Norm("impa", "deg", 90.0, 5.0, TWEED, _TWEED_POP, 85.0, 95.0, version=_V),
    # Downs' own SDs.
    Norm("angle_of_convexity", "deg", 0.0, 5.1, DOWNS, _DOWNS_POP, -8.5, 10.0, version=_V),
    Norm("y_axis", "deg", 59.4, 3.8, DOWNS, _DOWNS_POP, 53.0, 66.0, version=_V),
    # McNamara 1984, adult Ann Arbor sample, mean +/- SD by sex.
    Norm("a_to_n_perp", "mm", 0.4, 2.3, MCNAMARA, _MCN_ADULT_F, sex=_F, age_min=_ADULT,
         version=_V),
    Norm("a_to_n_perp", "mm", 1.1, 2.7, MCNAMARA, _MCN_ADULT_M, sex=_M, age_min=_ADULT,
         version=_V),
    Norm("co_a", "mm", 91.0, 4.3, MCNAMARA, _MCN_ADULT_F, sex=_F, age_min=_ADULT, version=_V),
    Norm("co_a", "mm", 99.8, 6.0, MCNAMARA, _MCN_ADULT_M, sex=_M, age_min=_ADULT, version=_V),
    Norm("co_gn", "mm", 120.2, 5.3, MCNAMARA, _MCN_ADULT_F, sex=_F, age_min=_ADULT,
         version=_V),
    Norm("co_gn", "mm", 134.3, 6.8, MCNAMARA, _MCN_ADULT_M, sex=_M, age_min=_ADULT,
         version=_V),
    Norm("ans_me", "mm", 66.7, 4.1, MCNAMARA, _MCN_ADULT_F, sex=_F, age_min=_ADULT,
         version=_V),
    Norm("ans_me", "mm", 74.6, 5.0, MCNAMARA, _MCN_ADULT_M, sex=_M, age_min=_ADULT,
         version=_V),
    Norm("maxillomandibular_difference", "mm", 29.2, 3.3, MCNAMARA, _MCN_ADULT_F, sex=_F,
         age_min=_ADULT, version=_V),
    Norm("maxillomandibular_difference", "mm", 34.5, 4.0, MCNAMARA, _MCN_ADULT_M, sex=_M,
         age_min=_ADULT, version=_V),
    # McNamara gives ranges for the mixed dentition: 20-23 mm, Pog 8 to 6 mm behind N-perp.
    Norm("maxillomandibular_difference", "mm", None, None, MCNAMARA, _MCN_CHILD, 20.0, 23.0,
         age_max=_ADULT, version=_V),
    Norm("pog_to_n_perp", "mm", None, None, MCNAMARA, _MCN_CHILD, -8.0, -6.0, age_max=_ADULT,
         version=_V),
    Norm("pog_to_n_perp", "mm", -1.8, 4.5, MCNAMARA, _MCN_ADULT_F, sex=_F, age_min=_ADULT,
         version=_V),
    Norm("pog_to_n_perp", "mm", -0.3, 3.8, MCNAMARA, _MCN_ADULT_M, sex=_M, age_min=_ADULT,
         version=_V),
    # Jacobson 1975: 0 +/- 1.77 mm in women, -1 +/- 1.19 mm in men.
    Norm("wits", "mm", 0.0, 1.77, JACOBSON, _JACOBSON_F, sex=_F, version=_V),
    Norm("wits", "mm", -1.0, 1.19, JACOBSON, _JACOBSON_M, sex=_M, version=_V),
    # Bjork's polygon angles.
    Norm("saddle_angle", "deg", 123.0, 5.0, BJORK, _BJORK_POP, version=_V),
    Norm("articular_angle", "deg", 143.0, 6.0, BJORK, _BJORK_POP, version=_V),
    Norm("gonial_angle", "deg", 130.0, 7.0, BJORK, _BJORK_POP, version=_V),
    Norm("u1_sn", "deg", 102.0, 2.0, JARABAK, _JARABAK_POP, version=_V),
    # Ricketts: the upper lip about 4 mm behind the E-plane in adults; no SD published.
    Norm("upper_lip_to_e_plane", "mm", -4.0, None, RICKETTS_LIPS, _RICKETTS_LIPS_POP,
         version=_V),
)

DEFAULT_NORMS: tuple[Norm, ...] = (
    tuple(replace(n, version=FIRST_VERSION) for n in _TABLE_2025_1) + _TABLE_2026_1
)


def select_norm(
    key: str,
    *,
    age: float | None = None,
    sex: Sex | None = None,
    norms: Iterable[Norm] = DEFAULT_NORMS,
) -> Norm | None:
    """The most specific applicable norm for ``key``, or None when none applies.

    A sex-specific norm beats a sex-neutral one, then a narrower age band beats a wider one,
    then the newer version wins. Unknown age matches only norms without an age band.
    """
    candidates = [n for n in norms if n.key == key and n.applies_to(age, sex)]
    if not candidates:
        return None
    return min(candidates, key=lambda n: (n.sex is Sex.ANY, n.age_span, _newest_first(n.version)))


def _newest_first(version: str) -> tuple[int, ...]:
    return tuple(-int(part) if part.isdigit() else 0 for part in version.split("."))
