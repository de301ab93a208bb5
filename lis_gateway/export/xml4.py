"""The social-insurance claim table XML4 (*Bảng 4: chỉ tiêu chi tiết dịch vụ cận lâm sàng*).

Vietnamese health-insurance (BHYT) claims are XML tables defined by QĐ
130/QĐ-BYT as amended by QĐ 4750 and QĐ 3176; table 4 holds one row per
paraclinical indicator result. The HIS assembles the claim; the laboratory
supplies the rows of its released results. This module is the table's format
and nothing else: one :class:`Xml4Row` per result, :func:`check_row` /
:func:`validate_row` for the field rules, :func:`render` for the UTF-8 XML
body ``CHITIEU_CHITIET_DICHVUCANLAMSANG/DSACH_CHI_TIET_CLS/CHI_TIET_CLS``
(children in the table's field order), :func:`format_time` and
:func:`format_decimal` for the two value formats the table prescribes.

Field rules (../shared/vietnam.md §2.2, from an HIS vendor's field-by-field
description of QĐ 130 + 4750; the portal's live XSD is the final word):

== ============== ============ ==== ==============================================
#  field          type (max)   req. content
== ============== ============ ==== ==============================================
1  MA_LK          string(100)  yes  episode key (the HIS visit number)
2  STT            number(10)   yes  running number from 1 within one submission
3  MA_DICH_VU     string(15)   yes  QĐ 2010 App. 1 service code ``CC.KKKK.GGGG``;
                                    a sample sent elsewhere ``XX.YYYY.ZZZZ.K.WWWWW``
4  MA_CHI_SO      string(50)        QĐ 1227 indicator code (7 digits), else the
                                    Appendix 11 fallback (``H02``); empty if none
5  TEN_CHI_SO     string(255)       indicator name
6  GIA_TRI        string(50)        the value; decimal point ``.``, several ``;``
7  DON_VI_DO      string(50)        unit; empty if unitless
8  MO_TA          string(n)         description (imaging): empty for the lab
9  KET_LUAN       string(n)         conclusion (imaging): empty for the lab
10 NGAY_KQ        string(12)   yes  result time ``yyyymmddHHMM``, 24 h, local time
11 MA_BS_DOC_KQ   string(255)  yes  approver's practising-certificate number(s),
                                    ``;``-joined; not required for referred-out samples
12 DU_PHONG       string(n)         reserved, empty
== ============== ============ ==== ==============================================

Two rules need a reading: the referral form of ``MA_DICH_VU`` has 20
characters, more than the documented ``string(15)``, so a code in that exact
form is accepted whole (the 15-character limit applies to everything else);
and as the description says, ``MA_BS_DOC_KQ`` may be empty for such a
referred-out sample. Lengths count characters, not bytes.

Out of scope, because they are the HIS's job: the claim envelope
(``GIAMDINHHS/THONGTINHOSO/.../FILEHOSO``), the base64 encoding of each table
inside it, and the facility's signature ``CHUKYDONVI``.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import astuple, dataclass, fields
from datetime import datetime, tzinfo
from decimal import Decimal

from lis_gateway.mapping import REFERRAL_SERVICE_CODE, SERVICE_CODE

ROOT = "CHITIEU_CHITIET_DICHVUCANLAMSANG"
LIST = "DSACH_CHI_TIET_CLS"
ITEM = "CHI_TIET_CLS"
TIME_FORMAT = "%Y%m%d%H%M"  #: ``yyyymmddHHMM``

_TIME = re.compile(r"^\d{12}$")
_INDICATOR = re.compile(r"^(?:\d{7}|[A-Z]{1,3}\d{1,4})$")  # QĐ 1227, else Appendix 11
# Characters XML 1.0 cannot carry at all (not even escaped).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True, slots=True)
class Xml4Row:
    """One ``CHI_TIET_CLS`` row; attributes in the table's order, named as its fields."""

    ma_lk: str
    stt: int
    ma_dich_vu: str
    ma_chi_so: str
    ten_chi_so: str
    gia_tri: str
    don_vi_do: str
    mo_ta: str
    ket_luan: str
    ngay_kq: str
    ma_bs_doc_kq: str
    du_phong: str = ""

    def items(self) -> list[tuple[str, str]]:
        """(element name, text) in the table's order."""
        return [(f.name.upper(), str(value))
                for f, value in zip(fields(self), astuple(self), strict=True)]

    def to_dict(self) -> dict[str, str | int]:
        """The fields by element name (``STT`` stays a number), for JSON."""
        return {f.name.upper(): getattr(self, f.name) for f in fields(self)}


#: Element names in the table's order.
FIELDS: tuple[str, ...] = tuple(f.name.upper() for f in fields(Xml4Row))


@dataclass(frozen=True, slots=True)
class _Rule:
    max_length: int | None  # None: string(n), no limit
    required: bool


_RULES: dict[str, _Rule] = {
    "MA_LK": _Rule(100, True), "STT": _Rule(10, True), "MA_DICH_VU": _Rule(15, True),
    "MA_CHI_SO": _Rule(50, False), "TEN_CHI_SO": _Rule(255, False),
    "GIA_TRI": _Rule(50, False), "DON_VI_DO": _Rule(50, False), "MO_TA": _Rule(None, False),
    "KET_LUAN": _Rule(None, False), "NGAY_KQ": _Rule(12, True),
    "MA_BS_DOC_KQ": _Rule(255, True), "DU_PHONG": _Rule(None, False),
}


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One field of a row breaks one rule."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def is_referral(service_code: str) -> bool:
    """The service code is the form for a sample performed at another facility."""
    return REFERRAL_SERVICE_CODE.match(service_code) is not None


def check_row(row: Xml4Row) -> list[FieldProblem]:
    """Every rule the row breaks, in field order (empty: the row is valid)."""
    problems: list[FieldProblem] = []
    referral = is_referral(row.ma_dich_vu)
    for name, text in row.items():
        rule = _RULES[name]
        required = rule.required and not (name == "MA_BS_DOC_KQ" and referral)
        if not text.strip():
            if required:
                problems.append(FieldProblem(name, "required, missing"))
            continue
        limit = rule.max_length
        if limit is not None and len(text) > limit and not (name == "MA_DICH_VU" and referral):
            problems.append(FieldProblem(name, f"too long: {len(text)} characters, at most "
                                               f"{limit}"))
        bad = _NOT_XML.search(text)
        if bad is not None:
            problems.append(FieldProblem(name, f"holds character U+{ord(bad.group()):04X}, "
                                               "which XML cannot carry"))
    if row.stt < 1:
        problems.append(FieldProblem("STT", f"must be a number from 1, not {row.stt}"))
    if row.ma_dich_vu.strip() and not (SERVICE_CODE.match(row.ma_dich_vu) or referral):
        problems.append(FieldProblem(
            "MA_DICH_VU", f"{row.ma_dich_vu!r} is not a QĐ 2010 service code CC.KKKK.GGGG "
                          "(or XX.YYYY.ZZZZ.K.WWWWW for a sample sent to another facility)"))
    if row.ma_chi_so and not _INDICATOR.match(row.ma_chi_so):
        problems.append(FieldProblem(
            "MA_CHI_SO", f"{row.ma_chi_so!r} is neither a QĐ 1227 code (7 digits) nor an "
                         "Appendix 11 code like H02"))
    if row.ngay_kq.strip() and not _is_time(row.ngay_kq):
        problems.append(FieldProblem("NGAY_KQ", f"{row.ngay_kq!r} is not a time yyyymmddHHMM"))
    if row.ma_bs_doc_kq.strip() and any(not part.strip()
                                        for part in row.ma_bs_doc_kq.split(";")):
        problems.append(FieldProblem("MA_BS_DOC_KQ", "an empty number between ';' separators"))
    return problems


def validate_row(row: Xml4Row) -> list[str]:
    """Every rule the row breaks as text naming the field and the rule (``MA_LK: ...``)."""
    return [str(p) for p in check_row(row)]


def _is_time(text: str) -> bool:
    if not _TIME.match(text):
        return False
    try:
        datetime.strptime(text, TIME_FORMAT)
    except ValueError:
        return False
    return True


def format_time(moment: datetime, zone: tzinfo) -> str:
    """``NGAY_KQ``: an aware time as local ``yyyymmddHHMM`` in ``zone`` (seconds dropped).

    Raises:
        ValueError: a naive time (its zone would be a guess).
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("format_time needs a timezone-aware time")
    return moment.astimezone(zone).strftime(TIME_FORMAT)


def format_decimal(number: Decimal) -> str:
    """An exact number as the table writes it: plain digits, ``.``, never an exponent.

    ``Decimal("1E+2")`` -> ``100``; ``Decimal("0.000012")`` stays ``0.000012``;
    the decimals the number carries are kept (``1.50``); ``-0`` is ``0``.

    Raises:
        ValueError: an infinity or NaN.
    """
    if not number.is_finite():
        raise ValueError(f"{number} is not a finite number")
    if number.is_zero():
        number = number.copy_abs()
    return format(number, "f")


def render(rows: Iterable[Xml4Row]) -> bytes:
    """The XML4 body as UTF-8 bytes with an XML declaration.

    Text is escaped by ElementTree (``&``, ``<``, ``>``); Vietnamese stays as
    UTF-8 characters, never character references. Every field is written, an
    empty one as ``<MO_TA></MO_TA>``. Rows are written as given: validate them
    first (:func:`check_row`); nothing here refuses a row.
    """
    root = ET.Element(ROOT)
    listing = ET.SubElement(root, LIST)
    for row in rows:
        item = ET.SubElement(listing, ITEM)
        for name, text in row.items():
            ET.SubElement(item, name).text = text
    ET.indent(root, space="  ")
    body = ET.tostring(root, encoding="unicode", short_empty_elements=False)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n").encode("utf-8")
