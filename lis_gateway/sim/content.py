"""What a simulated analyzer measures: analytes, made-up patients, samples, values (pure).

Values are drawn from a seeded :class:`random.Random` given by the caller, so
a run with the same seed sends the same samples. Every patient is made up:
the names say so in Vietnamese ("Mô Phỏng" is "simulation", "Thử Nghiệm"
"test", "Giả Lập" "emulated") or are the usual English placeholders.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import datetime

from lis_gateway.text import strip_diacritics


@dataclass(frozen=True, slots=True)
class Analyte:
    """One test as an analyzer family reports it.

    Attributes:
        code: the analyzer's code, as its mapping table knows it.
        unit: the unit as the analyzer writes it.
        mean, sd: the distribution values are drawn from (in ``unit``).
        decimals: digits after the point the analyzer writes.
        low, high: the analyzer's reference range (flags L/H outside it).
        name: a display name (HL7 OBX-3.2 / OBX-4), default the code.
        loinc: the code the analyzer puts next to its own (Mindray BC, Horiba).
        channel: the analyzer's channel number (Mindray BS OBX-3).
        choices: for qualitative tests, the possible values with their weights.
        minimum: the smallest value the analyzer reports.
    """

    code: str
    unit: str = ""
    mean: float = 0.0
    sd: float = 0.0
    decimals: int = 1
    low: float | None = None
    high: float | None = None
    name: str = ""
    loinc: str = ""
    channel: str = ""
    choices: tuple[tuple[str, float], ...] = ()
    minimum: float = 0.0

    @property
    def display(self) -> str:
        """The name, or the code when there is none."""
        return self.name or self.code

    def range_text(self, separator: str = "-") -> str:
        """``low-high`` with the analyzer's decimals ("" without a range)."""
        if self.low is None or self.high is None:
            return ""
        return f"{self.low:.{self.decimals}f}{separator}{self.high:.{self.decimals}f}"


@dataclass(frozen=True, slots=True)
class Measured:
    """One value drawn for one analyte.

    Attributes:
        analyte: what was measured.
        value: the value as the analyzer writes it.
        flag: ``L``, ``H``, ``N`` (inside the range) or ``""`` (no range, qualitative).
    """

    analyte: Analyte
    value: str
    flag: str


@dataclass(frozen=True, slots=True)
class Patient:
    """A made-up patient (never a real person).

    Attributes:
        patient_id: the analyzer-side patient ID.
        family_name, given_name: with Vietnamese diacritics where the name has them.
        birth_date: YYYYMMDD.
        sex: ``M`` or ``F``.
    """

    patient_id: str
    family_name: str
    given_name: str
    birth_date: str
    sex: str

    def folded(self) -> Patient:
        """The same patient with bare letters (8-bit analyzers cannot write Vietnamese)."""
        return Patient(self.patient_id, strip_diacritics(self.family_name),
                       strip_diacritics(self.given_name), self.birth_date, self.sex)


#: Made-up patients: (family name, given name, birth date, sex).
PATIENTS: tuple[tuple[str, str, str, str], ...] = (
    ("NGUYỄN", "VĂN MÔ PHỎNG", "19800214", "M"),
    ("TRẦN", "THỊ THỬ NGHIỆM", "19571103", "F"),
    ("LÊ", "GIẢ LẬP", "19640812", "F"),
    ("DOE", "JANE", "19911230", "F"),
    ("ROE", "RICHARD", "20050401", "M"),
    ("PHẠM", "MẪU THỬ", "19450720", "M"),
)


@dataclass(frozen=True, slots=True)
class Sample:
    """One tube the simulator reports on.

    Attributes:
        seq: its number in this run (1, 2, ...).
        sample_id: the barcode.
        patient: who it belongs to (made up).
        results: one value per analyte, in the panel's order.
        when: the measurement time written into the message.
    """

    seq: int
    sample_id: str
    patient: Patient
    results: tuple[Measured, ...]
    when: datetime

    @property
    def codes(self) -> tuple[str, ...]:
        """The analyzer codes measured."""
        return tuple(m.analyte.code for m in self.results)


_TAIL_DIGITS = re.compile(r"^(.*?)(\d+)$")


def sample_id(first: str, seq: int) -> str:
    """The barcode of sample ``seq``: ``first`` with its trailing number advanced.

    ``sample_id("S0098", 3)`` gives ``S0100`` (sample 1 is ``first`` itself);
    an ID without trailing digits gets ``-<seq>`` appended.
    """
    match = _TAIL_DIGITS.match(first)
    if match is None:
        return f"{first}-{seq}"
    head, digits = match.groups()
    return f"{head}{int(digits) + seq - 1:0{len(digits)}d}"


def default_first_sample(when: datetime) -> str:
    """The first barcode when none is given: ``YYMMDD0001`` of the start day."""
    return f"{when:%y%m%d}0001"


def draw(analyte: Analyte, rng: random.Random) -> Measured:
    """One value for ``analyte``: a qualitative choice, or a number around its mean."""
    if analyte.choices:
        words = [c for c, _w in analyte.choices]
        weights = [w for _c, w in analyte.choices]
        return Measured(analyte, rng.choices(words, weights)[0], "")
    number = max(analyte.minimum, rng.gauss(analyte.mean, analyte.sd))
    text = f"{number:.{analyte.decimals}f}"
    shown = float(text)
    flag = ""
    if analyte.low is not None and shown < analyte.low:
        flag = "L"
    elif analyte.high is not None and shown > analyte.high:
        flag = "H"
    elif analyte.low is not None or analyte.high is not None:
        flag = "N"
    return Measured(analyte, text, flag)


def make_sample(seq: int, first: str, panel: tuple[Analyte, ...], when: datetime,
                rng: random.Random) -> Sample:
    """Sample ``seq`` with a made-up patient and one value per analyte of ``panel``."""
    family, given, birth, sex = PATIENTS[rng.randrange(len(PATIENTS))]
    patient = Patient(f"SIM{rng.randrange(100000, 999999)}", family, given, birth, sex)
    results = tuple(draw(a, rng) for a in panel)
    return Sample(seq, sample_id(first, seq), patient, results, when)


def stamp(when: datetime) -> str:
    """``YYYYMMDDHHMMSS`` (ASTM and HL7 v2.3 timestamps without zone)."""
    return when.strftime("%Y%m%d%H%M%S")
