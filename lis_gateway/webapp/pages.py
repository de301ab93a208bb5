"""The worklist and the sample page (reading, batch validation, per-result actions).

Each page view that shows patient data is written to the audit log in the
same transaction that reads it (``view.worklist`` with the barcodes shown,
``view.sample``). Actions run in one transaction each through
:mod:`.actions`, then the browser is sent back (303) to the page, which
shows what was done and what was refused, with the lifecycle's reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection
from twisted.web.server import Request

from lis_gateway.lifecycle import Action, ResultState
from lis_gateway.store import worklist as wl
from lis_gateway.store._common import NotFoundError
from lis_gateway.store.audit import append_audit
from lis_gateway.validation import Outcome, UserRefusedError

from . import actions
from .accounts import Page
from .sessions import Session
from .web import STATE_LABELS, FormError, WebContext, client, field_list, field_text, with_query

#: The states the worklist filter offers, in the order shown.
FILTER_STATES = (ResultState.HELD, ResultState.AUTOVERIFIED, ResultState.TECH_VALIDATED,
                 ResultState.APPROVED, ResultState.RELEASED, ResultState.CORRECTED,
                 ResultState.RECEIVED, ResultState.REJECTED, ResultState.RERUN_REQUESTED,
                 ResultState.RETRACTED)
#: Sample states that need the sample page (no batch validation).
NEEDS_LOOK = frozenset({ResultState.HELD, ResultState.CORRECTED, ResultState.RECEIVED})


def batchable(sample: wl.WorkSample, roles: frozenset[str]) -> list[int]:
    """The versions the batch form may send for ``sample`` and a person with ``roles``:
    none when any result needs a look (held, corrected, not yet judged, open critical)."""
    if sample.open_critical or any(r.state in NEEDS_LOOK for r in sample.results):
        return []
    states = {ResultState.AUTOVERIFIED}
    if "doctor" in roles:
        states.add(ResultState.TECH_VALIDATED)
    return [r.version_id for r in sample.results if r.state in states]


def _parse_day(text: str) -> date:
    for pattern in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            return datetime.strptime(text.strip(), pattern).date()
        except ValueError:
            continue
    raise ValueError(text)


@dataclass(frozen=True, slots=True)
class WorklistView:
    """What the worklist page shows."""

    samples: tuple[wl.WorkSample, ...]
    criticals: tuple[tuple[str, wl.WorkResult], ...]
    analyzers: tuple[str, ...]


def load_worklist(conn: Connection, filters: wl.Filters, username: str, *, at: datetime,
                  source: str) -> WorklistView:
    """Read the worklist and audit the view (the barcodes shown)."""
    samples = wl.worklist(conn, filters)
    append_audit(conn, actor=username, action="view.worklist", target="worklist",
                 detail={"samples": [s.accession for s in samples]}, source=source, at=at)
    return WorklistView(samples, wl.open_criticals(conn), wl.analyzer_names(conn))


@dataclass(frozen=True, slots=True)
class SampleView:
    """What the sample page shows."""

    sample: wl.SampleDetail
    criticals: tuple[tuple[str, wl.WorkResult], ...]


def load_sample(conn: Connection, accession: str, username: str, *, at: datetime,
                source: str) -> SampleView:
    """Read one sample and audit the view.

    Raises:
        NotFoundError: no such sample (nothing audited).
    """
    sample = wl.sample_detail(conn, accession)
    append_audit(conn, actor=username, action="view.sample", target=f"sample:{accession}",
                 detail={}, source=source, at=at)
    return SampleView(sample, wl.open_criticals(conn))


class WorklistPage(Page):
    """``/worklist``: samples by state with filters (GET); batch validation (POST)."""

    def _filters(self, request: Request, session: Session) -> tuple[wl.Filters, list[str],
                                                                     dict[str, str]]:
        gettext = self.ctx.locales[session.lang].gettext
        given = {k: field_text(request, k).strip()
                 for k in ("analyzer", "state", "day", "priority")}
        errors: list[str] = []
        state = None
        if given["state"]:
            try:
                state = ResultState(given["state"])
            except ValueError:
                errors.append(gettext("Unknown state: {value}").format(value=given["state"]))
                given["state"] = ""
        since = until = None
        if given["day"]:
            try:
                day = _parse_day(given["day"])
                since = datetime.combine(day, time(), ZoneInfo(self.ctx.zone))
                until = since + timedelta(days=1)
            except ValueError:
                errors.append(gettext("Not a date (dd/mm/yyyy): {value}").format(
                    value=given["day"]))
                given["day"] = ""
        if given["priority"] not in ("", "S", "R"):
            errors.append(gettext("Unknown priority: {value}").format(value=given["priority"]))
            given["priority"] = ""
        return (wl.Filters(analyzer=given["analyzer"], state=state, since=since, until=until,
                           priority=given["priority"]), errors, given)

    def get(self, request: Request, session: Session | None) -> bytes | int:
        assert session is not None
        filters, errors, given = self._filters(request, session)
        d = self.ctx.pool.run(load_worklist, filters, session.username, at=self.ctx.now(),
                              source=client(request))

        def done(view: WorklistView) -> bytes:
            return self.ctx.render(
                request, session, "worklist.html", criticals=view.criticals,
                samples=view.samples, analyzers=view.analyzers, errors=errors,
                given=given, states=FILTER_STATES,
                batch={s.accession: batchable(s, session.roles) for s in view.samples},
                doctor="doctor" in session.roles,
                back=request.uri.decode("utf-8", "replace"))

        return self.ctx.respond(request, session, d, done)

    def post(self, request: Request, session: Session) -> bytes | int:
        try:
            versions = [int(v) for item in field_list(request, "v")
                        for v in item.split(".") if v]
        except ValueError:
            raise FormError("the selection is malformed") from None
        approve = field_text(request, "action") == "approve"
        d = self.ctx.pool.run(actions.batch_validate, versions, session.username,
                              self.ctx.policy, approve=approve, at=self.ctx.now(),
                              source=client(request))
        back = field_text(request, "back", "/worklist")
        return self.ctx.respond(request, session, _refusal_safe(d, session, self.ctx),
                                lambda outcomes: self._after(request, session, outcomes, back))

    def _after(self, request: Request, session: Session, outcomes: list[Outcome] | None,
               back: str) -> bytes:
        if outcomes is not None:
            self.ctx.flash_outcomes(session, outcomes)
        return self.ctx.redirect(request, back)


def _refusal_safe(d: Any, session: Session, ctx: WebContext) -> Any:
    """A disabled or deleted user's action becomes a message, not a 503."""
    def refused(failure: Any) -> None:
        failure.trap(UserRefusedError)
        session.flash("error", ctx.locales[session.lang].gettext(
            "Your account may not do this: {why}").format(why=failure.getErrorMessage()))
        return None

    return d.addErrback(refused)


_DECISIONS = {"reject": Action.REJECT, "rerun": Action.REQUEST_RERUN}


class SamplePage(Page):
    """``/sample?s=<barcode>``: one sample in full (GET) and actions on its results (POST)."""

    def get(self, request: Request, session: Session | None) -> bytes | int:
        assert session is not None
        accession = field_text(request, "s").strip()
        if not accession:
            raise FormError(self._text(session, request, "Which sample? (no barcode given)"))
        d = self.ctx.pool.run(load_sample, accession, session.username, at=self.ctx.now(),
                              source=client(request))

        def done(view: SampleView) -> bytes:
            return self.ctx.render(request, session, "sample.html", criticals=view.criticals,
                                   sample=view.sample, doctor="doctor" in session.roles,
                                   now_local=self.ctx.now().astimezone(
                                       ZoneInfo(self.ctx.zone)).strftime("%Y-%m-%dT%H:%M"))

        def missing(failure: Any) -> bytes:
            failure.trap(NotFoundError)
            return self.ctx.refuse(request, session, 404, self._text(
                session, request, "No sample with this barcode has results: {barcode}"
            ).format(barcode=accession))

        d.addErrback(lambda f: _Answer(missing(f)))
        return self.ctx.respond(request, session, d, lambda v: v.body if isinstance(
            v, _Answer) else done(v))

    def post(self, request: Request, session: Session) -> bytes | int:
        accession = field_text(request, "s").strip()
        try:
            version = int(field_text(request, "version"))
        except ValueError:
            raise FormError(self._text(session, request, "Which result? (no version given)")
                            ) from None
        what = field_text(request, "action")
        d = self._act(request, session, what, version)
        back = with_query("/sample", {"s": accession})
        return self.ctx.respond(request, session, _refusal_safe(d, session, self.ctx),
                                lambda outcome: self._after(request, session, outcome, back))

    def _act(self, request: Request, session: Session, what: str, version: int) -> Any:
        ctx, user, at, source = self.ctx, session.username, self.ctx.now(), client(request)
        if what in ("validate", "approve"):
            return ctx.pool.run(actions.validate_one, version, user, ctx.policy,
                                approve=what == "approve", at=at, source=source)
        if what in _DECISIONS:
            return ctx.pool.run(actions.decide, version, user, ctx.policy, _DECISIONS[what],
                                field_text(request, "reason"), at=at, source=source)
        if what == "correct":
            return ctx.pool.run(actions.correct, version, user, ctx.policy,
                                field_text(request, "value"), field_text(request, "reason"),
                                at=at, source=source)
        if what == "comment":
            return ctx.pool.run(actions.comment, version, user, field_text(request, "text"),
                                at=at, source=source)
        if what == "acknowledge":
            return ctx.pool.run(actions.acknowledge, version, user,
                                informed=field_text(request, "informed"),
                                informed_at=self._informed_at(request, session), how=field_text(
                                    request, "how"), at=at, source=source)
        raise FormError(f"unknown action {what!r}")

    def _informed_at(self, request: Request, session: Session) -> datetime:
        text = field_text(request, "informed_at").strip()
        try:
            return datetime.strptime(text, "%Y-%m-%dT%H:%M").replace(
                tzinfo=ZoneInfo(self.ctx.zone))
        except ValueError:
            raise FormError(self._text(session, request, "Not a time: {value}").format(
                value=text)) from None

    def _after(self, request: Request, session: Session, outcome: Outcome | None,
               back: str) -> bytes:
        if outcome is not None:
            gettext = self.ctx.locales[session.lang].gettext
            if outcome.refused:
                session.flash("error", gettext("Refused: {test}: {why}").format(
                    test=outcome.test, why=outcome.refused))
            else:
                session.flash("ok", gettext("Saved: {test} ({state})").format(
                    test=outcome.test, state=gettext(STATE_LABELS[outcome.after])))
        return self.ctx.redirect(request, back)


@dataclass(frozen=True, slots=True)
class _Answer:
    """A finished page standing in for the store's result (a 404, say)."""

    body: bytes
