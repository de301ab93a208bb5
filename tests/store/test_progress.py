"""Progress lines of long commands: paced, counts only, final line always, quiet when short."""

from __future__ import annotations

import io

from sqlalchemy import Engine

from lis_gateway.progress import Progress
from lis_gateway.store import repository as repo
from lis_gateway.store.audit import verify_audit

from .test_repository import T0


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_are_paced_and_the_last_one_always_shows() -> None:
    now = [0.0]
    out = io.StringIO()
    progress = Progress("reprocess", stream=out, clock=lambda: now[0], every=2.0)
    for done in range(0, 1000, 100):
        progress(done, 1000)
        now[0] += 0.5
    progress(1000, 1000)
    assert out.getvalue().splitlines() == [
        "reprocess: 0/1000 (0 %)", "reprocess: 400/1000 (40 %)", "reprocess: 800/1000 (80 %)",
        "reprocess: 1000/1000 (100 %)"]


def test_on_a_terminal_the_line_is_rewritten_and_short_runs_say_nothing() -> None:
    now = [0.0]
    tty = Tty()
    progress = Progress("audit verify", stream=tty, clock=lambda: now[0])
    progress(0, 300)
    now[0] = 1.0
    progress(300, 300)
    assert tty.getvalue() == "\raudit verify: 0/300 (0 %)\raudit verify: 300/300 (100 %)\n"
    quiet = io.StringIO()
    Progress("x", stream=quiet)(10, 10)
    assert quiet.getvalue() == ""


def test_audit_verification_reports_its_progress(engine: Engine) -> None:
    with engine.begin() as conn:
        for i in range(3):
            repo.append_audit(conn, actor="t", action="test", target=f"x:{i}", detail={},
                              source="", at=T0)
    seen: list[tuple[int, int]] = []
    with engine.begin() as conn:
        assert verify_audit(conn, lambda done, total: seen.append((done, total))) == []
    assert seen == [(0, 3), (3, 3)]
