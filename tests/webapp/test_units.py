"""The web app's pure parts: sessions, catalogues and time formats, flags of a correction."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po
from jinja2.ext import babel_extract

from lis_gateway.webapp.actions import range_flags
from lis_gateway.webapp.i18n import LANGUAGES, LOCALE_DIR, language, load_locales
from lis_gateway.webapp.sessions import Sessions
from lis_gateway.webapp.web import ROLE_LABELS, STATE_LABELS, local_path

WEBAPP = Path(__file__).resolve().parents[2] / "lis_gateway" / "webapp"


def test_a_session_ends_when_idle_or_too_old() -> None:
    """Idle past ``idle`` or older than ``absolute``: gone, and reported as just expired once."""
    sessions = Sessions(idle=10, absolute=25)
    s = sessions.new(100.0, "vi", username="lan")
    assert sessions.get(s.id, 109.0) == (s, None)
    assert sessions.get(s.id, 118.0) == (s, None)  # used at 109: still live
    assert sessions.get(s.id, 126.0) == (None, s)  # 26 s after the login
    assert sessions.get(s.id, 126.0) == (None, None)
    idle = sessions.new(200.0, "vi")
    assert sessions.get(idle.id, 210.5) == (None, idle)


def test_sessions_are_bounded_and_secret() -> None:
    """Past the limit the least recently used go first; ids and tokens differ."""
    sessions = Sessions(limit=2)
    a, b = sessions.new(0, "vi"), sessions.new(0, "vi")
    sessions.get(a.id, 1)
    c = sessions.new(2, "en")
    assert len(sessions) == 2 and sessions.get(b.id, 3) == (None, None)
    assert sessions.get(a.id, 3)[0] is a and sessions.get(c.id, 3)[0] is c
    assert len({a.id, a.csrf, b.id, c.id}) == 4 and len(a.id) >= 40


def test_csrf_tokens_compare_exactly() -> None:
    """Only the session's own token passes."""
    s = Sessions().new(0, "vi")
    assert s.csrf_ok(s.csrf) and not s.csrf_ok("") and not s.csrf_ok(s.csrf[:-1])


def _used_messages() -> set[str]:
    found: set[str] = set(STATE_LABELS.values()) | set(ROLE_LABELS.values())
    for template in (WEBAPP / "templates").glob("*.html"):
        with template.open("rb") as handle:
            found |= {m for _, _, m, _ in babel_extract(handle, ("_",), [], {})
                      if isinstance(m, str)}
    for module in WEBAPP.glob("*.py"):
        found |= {m for _, m, _, _ in extract_from_file(
            "python", module, keywords={"gettext": None, "_text": (3,)})
                  if isinstance(m, str)}
    return found


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_message_is_translated(lang: str) -> None:
    """Each text the templates and the code show has a translation in each catalogue,
    with the same {placeholders}; no catalogue entry is unused."""
    with (LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        catalog = read_po(handle)
    entries = {m.id: m.string for m in catalog if m.id}
    used = _used_messages()
    assert sorted(used - set(entries)) == []
    assert sorted(set(entries) - used) == []
    for msgid, text in entries.items():
        assert text, f"{lang}: {msgid!r} is not translated"
        assert set(re.findall(r"\{\w+\}", str(text))) == set(
            re.findall(r"\{\w+\}", str(msgid))), msgid


def test_vietnamese_texts_and_times() -> None:
    """Diacritics survive the catalogue; times are shown in Hanoi time, dd/mm/yyyy in Vietnamese."""
    locales = load_locales()
    at = datetime(2026, 11, 21, 18, 5, tzinfo=UTC)
    assert locales["vi"].gettext("Log in") == "Đăng nhập"
    assert locales["vi"].gettext("Rerun requested") == "Đã yêu cầu chạy lại"
    assert locales["vi"].datetime(at) == "22/11/2026 01:05"
    assert locales["en"].datetime(at) == "22 Nov 2026 01:05"
    assert locales["vi"].day(date(1980, 1, 2)) == "02/01/1980"
    assert locales["vi"].iso("2026-11-21T18:05:00+00:00") == "22/11/2026 01:05"
    assert (language("en"), language("fr"), language(None)) == ("en", "vi", "vi")


@pytest.mark.parametrize("number,range_,flags", [
    ("6.5", "3.9-6.1", ("H",)), ("3.0", "3.9-6.1", ("L",)), ("5", "3,9 - 6,1", ("N",)),
    ("5", "<6.1", ()), (None, "3.9-6.1", ())])
def test_flags_of_a_corrected_value(number: str | None, range_: str,
                                    flags: tuple[str, ...]) -> None:
    """A corrected number is flagged against a readable low-high range, else not at all."""
    assert range_flags(None if number is None else Decimal(number), range_) == flags


@pytest.mark.parametrize("target,expected", [
    ("/worklist?state=held", "/worklist?state=held"), ("//evil.example/", "/worklist"),
    ("https://evil.example/", "/worklist"), ("/\\evil", "/worklist"), ("", "/worklist")])
def test_redirects_stay_on_the_site(target: str, expected: str) -> None:
    """Only paths of this site are followed after a form."""
    assert local_path(target) == expected
