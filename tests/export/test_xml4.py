"""The XML4 table format: rendering, field rules, time and number formats (pure)."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from lis_gateway.export.xml4 import (
    FIELDS,
    Xml4Row,
    check_row,
    format_decimal,
    format_time,
    render,
    validate_row,
)

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
ROW = Xml4Row(ma_lk="V2026-0001", stt=1, ma_dich_vu="12.3456.7890", ma_chi_so="H02",
              ten_chi_so="Huyết sắc tố", gia_tri="125", don_vi_do="g/L", mo_ta="", ket_luan="",
              ngay_kq="202611011530", ma_bs_doc_kq="0012345/HNO-CCHN", du_phong="")


def test_fields_are_the_twelve_of_the_table_in_order() -> None:
    """Element names and order as QĐ 130/4750 table 4 lists them."""
    assert FIELDS == ("MA_LK", "STT", "MA_DICH_VU", "MA_CHI_SO", "TEN_CHI_SO", "GIA_TRI",
                      "DON_VI_DO", "MO_TA", "KET_LUAN", "NGAY_KQ", "MA_BS_DOC_KQ", "DU_PHONG")


def test_render_parses_back_with_every_field_in_order() -> None:
    """Root/list/item elements, twelve children per row in table order, STT as digits."""
    second = dataclasses.replace(ROW, stt=2, ma_chi_so="", ten_chi_so="HBsAg",
                                 gia_tri="Âm tính", don_vi_do="")
    root = ET.fromstring(render([ROW, second]))
    assert root.tag == "CHITIEU_CHITIET_DICHVUCANLAMSANG"
    [listing] = list(root)
    assert listing.tag == "DSACH_CHI_TIET_CLS"
    items = list(listing)
    assert [item.tag for item in items] == ["CHI_TIET_CLS", "CHI_TIET_CLS"]
    for item, row in zip(items, (ROW, second), strict=True):
        assert [child.tag for child in item] == list(FIELDS)
        assert [child.text or "" for child in item] == [text for _, text in row.items()]
    assert items[1].findtext("STT") == "2" and items[1].findtext("GIA_TRI") == "Âm tính"


def test_render_is_utf8_with_a_declaration_and_no_character_references() -> None:
    """Vietnamese is written as UTF-8 bytes, not &#...; references; empty fields are open/close."""
    data = render([ROW])
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n')
    assert "Huyết sắc tố".encode() in data
    assert b"&#" not in data
    assert b"<MO_TA></MO_TA>" in data


def test_render_escapes_markup_characters() -> None:
    """&, < and > in a value or name survive the round trip and never break the document."""
    tricky = dataclasses.replace(ROW, gia_tri="<0.5 & >0.1", ten_chi_so="A<B>&C")
    data = render([tricky])
    assert b"&lt;0.5 &amp; &gt;0.1" in data
    item = ET.fromstring(data).find("DSACH_CHI_TIET_CLS/CHI_TIET_CLS")
    assert item is not None
    assert (item.findtext("GIA_TRI"), item.findtext("TEN_CHI_SO")) == ("<0.5 & >0.1", "A<B>&C")


def test_render_of_no_rows_is_an_empty_list() -> None:
    """A period without releases is a valid, empty body."""
    root = ET.fromstring(render([]))
    assert [child.tag for child in root] == ["DSACH_CHI_TIET_CLS"]
    assert list(root[0]) == []


def test_a_valid_row_has_no_problem() -> None:
    """The example row breaks no rule; the referral form and App. 11 codes are fine too."""
    assert validate_row(ROW) == []
    assert validate_row(dataclasses.replace(ROW, ma_chi_so="1234567")) == []
    assert validate_row(dataclasses.replace(ROW, ma_bs_doc_kq="0012/A;0034/B")) == []


def test_required_fields_missing_are_each_named() -> None:
    """MA_LK, MA_DICH_VU, NGAY_KQ, MA_BS_DOC_KQ: required (blank counts as missing)."""
    empty = dataclasses.replace(ROW, ma_lk=" ", ma_dich_vu="", ngay_kq="", ma_bs_doc_kq="")
    assert validate_row(empty) == ["MA_LK: required, missing", "MA_DICH_VU: required, missing",
                                   "NGAY_KQ: required, missing",
                                   "MA_BS_DOC_KQ: required, missing"]


def test_too_long_fields_name_the_limit() -> None:
    """Lengths count characters (Vietnamese letters are one each, not their UTF-8 bytes)."""
    long = dataclasses.replace(ROW, ma_lk="V" * 101, ten_chi_so="ệ" * 255, gia_tri="9" * 51,
                               don_vi_do="u" * 51, ma_bs_doc_kq="1" * 256, stt=10**10)
    assert validate_row(long) == [
        "MA_LK: too long: 101 characters, at most 100",
        "STT: too long: 11 characters, at most 10",
        "GIA_TRI: too long: 51 characters, at most 50",
        "DON_VI_DO: too long: 51 characters, at most 50",
        "MA_BS_DOC_KQ: too long: 256 characters, at most 255"]


@pytest.mark.parametrize("text", ["2026110115", "202611011530 ", "202613011530", "202611011561",
                                  "2026-11-01 1", "20261101153000"])
def test_ngay_kq_must_be_yyyymmddhhmm(text: str) -> None:
    """Twelve digits forming a real date and 24-hour time."""
    assert f"NGAY_KQ: {text!r} is not a time yyyymmddHHMM" in validate_row(
        dataclasses.replace(ROW, ngay_kq=text))


@pytest.mark.parametrize("code", ["12.3456.789", "12-3456-7890", "ab.3456.7890",
                                  "12.3456.7890.1", "12.3456.7890.1.0100"])
def test_ma_dich_vu_pattern(code: str) -> None:
    """CC.KKKK.GGGG or XX.YYYY.ZZZZ.K.WWWWW, nothing else."""
    problems = [p for p in check_row(dataclasses.replace(ROW, ma_dich_vu=code))
                if p.field == "MA_DICH_VU"]
    assert [p.message.split(" is not ")[0] for p in problems if "QĐ 2010" in p.message] == [
        repr(code)]


def test_referral_code_is_accepted_whole_and_needs_no_reader() -> None:
    """The 20-character referral form passes the 15-character limit; MA_BS_DOC_KQ may be empty."""
    referred = dataclasses.replace(ROW, ma_dich_vu="12.3456.7890.1.01001", ma_bs_doc_kq="")
    assert validate_row(referred) == []
    near_miss = dataclasses.replace(ROW, ma_dich_vu="12.3456.7890.1.010012")
    assert validate_row(near_miss) == [
        "MA_DICH_VU: too long: 21 characters, at most 15",
        "MA_DICH_VU: '12.3456.7890.1.010012' is not a QĐ 2010 service code CC.KKKK.GGGG (or "
        "XX.YYYY.ZZZZ.K.WWWWW for a sample sent to another facility)"]


@pytest.mark.parametrize("code", ["123456", "12345678", "h02", "H", "HHHH1", "H12345"])
def test_ma_chi_so_pattern(code: str) -> None:
    """Seven digits (QĐ 1227) or an Appendix 11 code; empty is allowed."""
    assert validate_row(dataclasses.replace(ROW, ma_chi_so=code)) == [
        f"MA_CHI_SO: {code!r} is neither a QĐ 1227 code (7 digits) nor an Appendix 11 code "
        "like H02"]
    assert validate_row(dataclasses.replace(ROW, ma_chi_so="")) == []


def test_characters_xml_cannot_carry_are_problems() -> None:
    """A control character from an analyzer would make the document unreadable."""
    assert validate_row(dataclasses.replace(ROW, gia_tri="5\x1b")) == [
        "GIA_TRI: holds character U+001B, which XML cannot carry"]


def test_empty_certificate_between_separators() -> None:
    """Several readers are ';'-joined; an empty one is a mistake."""
    assert validate_row(dataclasses.replace(ROW, ma_bs_doc_kq="0012;")) == [
        "MA_BS_DOC_KQ: an empty number between ';' separators"]


def test_stt_starts_at_one() -> None:
    """STT 0 is not a running number from 1."""
    assert validate_row(dataclasses.replace(ROW, stt=0)) == ["STT: must be a number from 1, not 0"]


def test_format_time_is_local_yyyymmddhhmm() -> None:
    """UTC 17:05 on 31 Dec is 00:05 on 1 Jan in Vietnam (UTC+7); seconds are dropped."""
    assert format_time(datetime(2026, 12, 31, 17, 5, 59, tzinfo=UTC), HCM) == "202701010005"
    plus9 = timezone(timedelta(hours=9))
    assert format_time(datetime(2026, 11, 1, 10, 0, tzinfo=plus9), HCM) == "202611010800"
    with pytest.raises(ValueError, match="timezone-aware"):
        format_time(datetime(2026, 11, 1, 8, 0), HCM)


@pytest.mark.parametrize(("number", "text"), [
    ("1E+2", "100"), ("1.5E-7", "0.00000015"), ("125", "125"), ("5.50", "5.50"),
    ("-0", "0"), ("-0.0", "0.0"), ("-58.4", "-58.4"), ("0E+3", "0"), ("12345678901234567890",
                                                                   "12345678901234567890")])
def test_format_decimal_is_plain(number: str, text: str) -> None:
    """Never an exponent, always '.', the number's own decimals kept, no negative zero."""
    assert format_decimal(Decimal(number)) == text


def test_format_decimal_refuses_non_finite() -> None:
    """NaN and infinity are not values."""
    for bad in ("NaN", "Infinity"):
        with pytest.raises(ValueError):
            format_decimal(Decimal(bad))
