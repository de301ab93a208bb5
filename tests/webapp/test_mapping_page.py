"""The mapping-problems page over loopback TCP: results held for an unmapped code, the row
fixed in the site's table file, new messages mapped at once, the held ones reprocessed.

The analyzer link ``chem1`` runs beside the app (tests/webapp/live_admin.py); its
results arrive over a real socket in E1381 framing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from lis_gateway.lifecycle import ResultState
from lis_gateway.mapping import load_table, table_version
from lis_gateway.mapping_files import LiveTables
from lis_gateway.store import judgements
from lis_gateway.store import repository as repo
from lis_gateway.store.audit import audit_entries, verify_audit
from lis_gateway.webapp.admin import AdminSetup, MappingSetup

from .live import Browser, add_user
from .live_admin import (
    RULES,
    SHIPPED,
    SPEC,
    AdminLive,
    alt_message,
    send_astm,
    site_table_without_alt,
    start_admin_live,
    start_app,
)

FIX = {"col_local_code": "ALT", "col_loinc": "1744-2",
       "col_name_vi": "Alanin aminotransferase (ALT/GPT)",
       "col_name_en": "Alanine aminotransferase", "col_analyzer_unit": "U/L",
       "col_unit_ucum": "U/L", "col_factor": "1", "col_offset": "0", "col_decimals": "0"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminLive]:
    """The app, the link, an administrator and a technician."""
    with start_admin_live(tmp_path_factory.mktemp("mapping")) as started:
        add_user(started.live.engine, "root", "admin", display="Quản trị")
        add_user(started.live.engine, "lan", "technician")
        yield started


def admin(lab: AdminLive) -> Browser:
    """A browser logged in as the administrator."""
    browser = Browser(lab.live)
    assert browser.login("root").status == 303
    return browser


def status(lab: AdminLive, accession: str) -> tuple[ResultState, str, str]:
    """The state, local code and mapping version of a sample's (one) result."""
    with lab.live.engine.begin() as conn:
        (info,) = repo.results_for_sample(conn, accession)
        return (judgements.result_status(conn, info.id).state, info.latest.content.code,
                info.latest.content.mapping_version)


def form(page: str) -> list[tuple[str, str]]:
    """Every named input of the row form, as the page filled it."""
    body = page.split('class="mapping-row"')[1]
    return re.findall(r'<input (?:type="hidden" )?name="([^"]+)" value="([^"]*)"', body)


def flashes(page: str) -> list[str]:
    """The messages at the top of a page."""
    return [re.sub(r"\s+", " ", m) for m in re.findall(
        r'<p class="flash \w+" role="status">(.*?)</p>', page, re.S)]


def test_held_results_are_grouped_by_analyzer_and_code(lab: AdminLive) -> None:
    """Two ALT results arrive unmapped and are held; the page lists them as one group with
    the unit sent and the barcodes, and the view is audited with those barcodes."""
    send_astm(lab.link_port, alt_message("M1"), alt_message("M2"))
    assert status(lab, "M1")[:2] == (ResultState.HELD, "")
    page = admin(lab).get("/mapping")
    assert page.status == 200
    row = page.text.split('data-analyzer="chem1" data-code="685"')[1].split("</tr>")[0]
    assert "Mã không có trong bảng" in row and "<code>U/L</code>" in row
    assert '<td class="count">2</td>' in row and ">M1</a>" in row and ">M2</a>" in row
    with lab.live.engine.begin() as conn:
        view = [e for e in audit_entries(conn) if e.action == "view.mapping-problems"][-1]
    assert view.actor == "root" and json.loads(view.detail) == {"samples": ["M1", "M2"]}


def test_an_invalid_row_is_refused_with_its_place_and_nothing_is_written(
        lab: AdminLive) -> None:
    """A LOINC with a wrong check digit: 400, the file, line and column named, the file and
    the table in use unchanged, nothing audited."""
    browser = admin(lab)
    page = browser.get("/mapping/fix?analyzer=chem1&code=685")
    fields = dict(form(page.text))
    before = (lab.site / "roche-cobas.csv").read_bytes()
    assert fields["based_on"] == table_version(before, (lab.site / "roche-cobas.ranges.csv")
                                               .read_bytes())
    assert fields["col_analyzer_code"] == "685" and fields["col_analyzer_unit"] == "U/L"
    answer = browser.post("/mapping/fix", [("analyzer", "chem1"), ("code", "685"),
                                           ("based_on", fields["based_on"]),
                                           *{**FIX, "col_loinc": "1744-3"}.items()])
    assert answer.status == 400
    assert f"{lab.site / 'roche-cobas.csv'}:" in answer.text
    assert "column loinc: &#39;1744-3&#39; has a wrong check digit (expected 2)" in answer.text
    kept = dict(form(answer.text))  # what was typed is still in the form
    assert kept["col_loinc"] == "1744-3" and kept["col_name_en"] == FIX["col_name_en"]
    assert (lab.site / "roche-cobas.csv").read_bytes() == before
    with lab.live.engine.begin() as conn:
        assert not [e for e in audit_entries(conn) if e.action == "mapping.edit"]


def test_the_admin_fixes_the_row_and_reprocesses(lab: AdminLive) -> None:
    """The row is appended to the site's file (validated, audited with old and new row),
    the next message is mapped at once, and reprocessing gives the held results a version
    carrying the new table version; the group is gone from the page."""
    browser = admin(lab)
    fields = dict(form(browser.get("/mapping/fix?analyzer=chem1&code=685").text))
    old = lab.tables.get(SPEC.table_name)
    assert old is not None
    answer = browser.post("/mapping/fix", [("analyzer", "chem1"), ("code", "685"),
                                           ("based_on", fields["based_on"]), *FIX.items()])
    assert (answer.status, answer.header("location")) == (303, "/mapping")
    new = lab.tables.get(SPEC.table_name)
    assert new is not None and new.version != old.version and new.lookup("685") is not None
    written = (lab.site / "roche-cobas.csv").read_bytes()
    assert written.splitlines()[-1] == (b"685,ALT,,,1744-2,Alanin aminotransferase (ALT/GPT),"
                                        b"Alanine aminotransferase,U/L,U/L,1,0,0,,,,")
    assert new.version == table_version(written, (lab.site / "roche-cobas.ranges.csv")
                                        .read_bytes())
    page = browser.get("/mapping")
    assert any(m.startswith("Đã lưu dòng của 685 vào") and new.version[:12] in m
               for m in flashes(page.text))

    send_astm(lab.link_port, alt_message("M3"))
    assert status(lab, "M3") == (ResultState.AUTOVERIFIED, "ALT", new.version)

    answer = browser.post("/mapping/reprocess", [("analyzer", "chem1"), ("code", "685")])
    assert answer.status == 303
    assert status(lab, "M1") == (ResultState.AUTOVERIFIED, "ALT", new.version)
    assert status(lab, "M2") == (ResultState.AUTOVERIFIED, "ALT", new.version)
    page = browser.get("/mapping")
    assert "Đã xử lý lại 2 kết quả của 685: 2 có phiên bản mới, 0 vẫn bị giữ." in flashes(
        page.text)
    assert 'data-code="685"' not in page.text
    with lab.live.engine.begin() as conn:
        entries = audit_entries(conn)
        assert verify_audit(conn) == []
    edit = json.loads(next(e for e in entries if e.action == "mapping.edit").detail)
    assert edit["old_row"] is None and edit["new_row"]["loinc"] == "1744-2"
    assert (edit["old_version"], edit["new_version"]) == (old.version, new.version)
    assert edit["file"] == str(lab.site / "roche-cobas.csv")
    again = next(e for e in entries if e.action == "mapping.reprocess")
    assert again.actor == "root" and json.loads(again.detail)["table_version"] == new.version


def test_a_form_based_on_an_older_version_is_refused(lab: AdminLive) -> None:
    """The table changed since the form was shown: 409, nothing written."""
    browser = admin(lab)
    browser.get("/mapping")
    before = (lab.site / "roche-cobas.csv").read_bytes()
    answer = browser.post("/mapping/fix", [("analyzer", "chem1"), ("code", "685"),
                                           ("based_on", "0" * 64), *FIX.items()])
    assert answer.status == 409 and "changed since it was shown" in answer.text
    assert (lab.site / "roche-cobas.csv").read_bytes() == before


def test_a_unit_mismatch_edits_the_existing_row(lab: AdminLive) -> None:
    """ALT sent in another unit is held as unit-mismatch; the form shows the row as it is,
    and saving replaces that row in place (old row audited)."""
    send_astm(lab.link_port, alt_message("M4").replace(b"|35|U/L|", b"|35|ukat/L|"))
    assert status(lab, "M4")[0] is ResultState.HELD
    browser = admin(lab)
    assert "Đơn vị khác với bảng" in browser.get("/mapping").text
    fields = dict(form(browser.get("/mapping/fix?analyzer=chem1&code=685").text))
    assert fields["col_analyzer_unit"] == "U/L" and fields["col_local_code"] == "ALT"
    lines = (lab.site / "roche-cobas.csv").read_bytes().count(b"\n")
    fields.update({"col_analyzer_unit": "ukat/L", "col_factor": "60"})
    answer = browser.post("/mapping/fix", list(fields.items()))
    assert answer.status == 303
    assert (lab.site / "roche-cobas.csv").read_bytes().count(b"\n") == lines
    browser.post("/mapping/reprocess", [("analyzer", "chem1"), ("code", "685")])
    with lab.live.engine.begin() as conn:
        (info,) = repo.results_for_sample(conn, "M4")
        edit = json.loads([e for e in audit_entries(conn) if e.action == "mapping.edit"][-1]
                          .detail)
    assert str(info.latest.content.number) == "2100" and info.latest.content.unit_ucum == "U/L"
    assert edit["old_row"]["analyzer_unit"] == "U/L" and edit["new_row"]["factor"] == "60"


def test_a_shipped_table_is_copied_into_the_site_directory(tmp_path: Path) -> None:
    """With the site directory empty, the shipped table is in use; fixing a code it lacks
    writes a copy (with its ranges) into the site directory and leaves mappings/ alone."""
    shipped = (SHIPPED / "roche-cobas.csv").read_bytes()
    with start_admin_live(tmp_path, site_table=False) as lab:
        add_user(lab.live.engine, "root", "admin")
        send_astm(lab.link_port, alt_message("N1").replace(b"685", b"9685"))
        browser = admin(lab)
        page = browser.get("/mapping/fix?analyzer=chem1&code=9685")
        assert "được sao chép vào" in page.text
        fields = dict(form(page.text))
        answer = browser.post("/mapping/fix", [
            ("analyzer", "chem1"), ("code", "9685"), ("based_on", fields["based_on"]),
            *{**FIX, "col_local_code": "ALT2"}.items()])
        assert answer.status == 303
        assert (SHIPPED / "roche-cobas.csv").read_bytes() == shipped
        copy = (lab.site / "roche-cobas.csv").read_bytes()
        assert copy.startswith(shipped) and copy.endswith(b"9685,ALT2,,,1744-2,"
                                                          b"Alanin aminotransferase (ALT/GPT),"
                                                          b"Alanine aminotransferase,U/L,U/L,"
                                                          b"1,0,0,,,,\n")
        assert (lab.site / "roche-cobas.ranges.csv").read_bytes() == (
            SHIPPED / "roche-cobas.ranges.csv").read_bytes()


def test_a_write_that_cannot_be_confirmed_is_undone(tmp_path: Path) -> None:
    """When the table read back after the write is not the one written (here a directory
    read before the site's holds the table too), the transaction is rolled back, the site's
    new files are removed, nothing is audited and the table in use stays: 503."""
    first, site, app = tmp_path / "first", tmp_path / "site", tmp_path / "app"
    site_table_without_alt(first)
    site.mkdir()
    app.mkdir()
    tables = LiveTables({SPEC.table_name: load_table([first, site], SPEC.table_name)},
                        [first, site], [site])
    in_use = tables.get(SPEC.table_name)
    setup = AdminSetup(mapping=MappingSetup(tables, {"chem1": SPEC}, RULES))
    with start_app(app, lambda _pool: setup) as live:
        add_user(live.engine, "root", "admin")
        browser = Browser(live)
        browser.login("root")
        fields = dict(form(browser.get("/mapping/fix?analyzer=chem1&code=685").text))
        answer = browser.post("/mapping/fix", [("analyzer", "chem1"), ("code", "685"),
                                               ("based_on", fields["based_on"]), *FIX.items()])
        assert answer.status == 503  # a refusal before the write would be a 409 or 400
        assert list(site.iterdir()) == []
        assert tables.get(SPEC.table_name) is in_use
        with live.engine.begin() as conn:
            assert not [e for e in audit_entries(conn) if e.action == "mapping.edit"]
