"""The worklist and the sample page (reading, batch validation, per-result actions).

Each page view that shows patient data is written to the audit log in the
same transaction that reads it (``view.worklist`` with the barcodes shown,
``view.sample``; a sample outside the person's sections is refused and
audited as ``view.sample-refused``). Actions run in one transaction each
through :mod:`.actions`, then the browser is sent back (303) to the page,
which shows what was done and what was refused, with the lifecycle's reason.

Every read and every action is limited to the person's lab sections
(:mod:`lis_gateway.sections`), read from the store each time.

Live refresh: the worklist's script asks ``/worklist?<filters>&part=live``
every :data:`REFRESH_SECONDS` and swaps in the list and the critical-value
banner. That request does not count as activity (the session still ends
when the screen is left alone) and is audited only when the barcodes shown
change; when the session has ended it answers 401 and the script reloads
the page (the login page, with the expiry audited as usual).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection
from twisted.web.server import Request

from lis_gateway.lifecycle import Action, ResultState
from lis_gateway.sections import EVERYTHING, Scope
from lis_gateway.store import worklist as wl
from lis_gateway.store._common import NotFoundError
from lis_gateway.store.audit import append_audit
from lis_gateway.store.sections import scope_of, sections_in_use
from lis_gateway.validation import Outcome, UserRefusedError

from . import actions
from .accounts import Page
from .sessions import MAX_SESSIONS, Session
from .web import (
    SESSION_COOKIE,
    STATE_LABELS,
    FormError,
    WebContext,
    client,
    field_list,
    field_text,
    with_query,
)

#: The states the worklist filter offers, in the order shown ("not delivered" follows
#: "delivered" in the template: it is not a lifecycle state but the outbox's word).
FILTER_STATES = (ResultState.HELD, ResultState.AUTOVERIFIED, ResultState.TECH_VALIDATED,
                 ResultState.APPROVED, ResultState.RELEASED, ResultState.DELIVERED,
                 ResultState.CORRECTED, ResultState.RECEIVED, ResultState.REJECTED,
                 ResultState.RERUN_REQUESTED, ResultState.RETRACTED)
#: The state filter's value for released results that failed to reach a destination.
NOT_DELIVERED = "not-delivered"
#: Seconds between two looks of the worklist's script at the server.
REFRESH_SECONDS = 20
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
    """What the worklist page shows.

    Attributes:
        sections: the sections the section filter offers (none: sections are not used).
        scope: what the person may see.
    """

    samples: tuple[wl.WorkSample, ...]
    criticals: tuple[tuple[str, wl.WorkResult], ...]
    analyzers: tuple[str, ...]
    sections: tuple[str, ...] = ()
    scope: Scope = EVERYTHING

    @property
    def shown(self) -> tuple[str, ...]:
        """The barcodes shown, in order."""
        return tuple(s.accession for s in self.samples)


def load_worklist(conn: Connection, filters: wl.Filters, username: str, *, at: datetime,
                  source: str, previous: Sequence[str] | None = None) -> WorklistView:
    """Read the worklist of the person's sections and audit the view (the barcodes
    shown); a live refresh (``previous``: the barcodes shown last) is audited only when
    they changed."""
    scope = scope_of(conn, username)
    samples = wl.worklist(conn, dataclasses.replace(filters, scope=scope))
    shown = [s.accession for s in samples]
    if previous is None or set(previous) != set(shown):
        detail: dict[str, object] = {"samples": shown}
        if previous is not None:
            detail["refresh"] = True
        append_audit(conn, actor=username, action="view.worklist", target="worklist",
                     detail=detail, source=source, at=at)
    offered = sections_in_use(conn) if scope.everything else tuple(sorted(scope.sections))
    return WorklistView(samples, wl.open_criticals(conn, scope),
                        wl.analyzer_names(conn, scope), offered, scope)


@dataclass(frozen=True, slots=True)
class SampleView:
    """What the sample page shows (``refused``: the sections it belongs to, none of which
    the person holds; then ``sample`` is None)."""

    sample: wl.SampleDetail | None
    criticals: tuple[tuple[str, wl.WorkResult], ...]
    refused: tuple[str, ...] = ()


def load_sample(conn: Connection, accession: str, username: str, *, at: datetime,
                source: str) -> SampleView:
    """Read one sample (the results of the person's sections) and audit the view; a
    sample with results in other sections only is audited as refused.

    Raises:
        NotFoundError: no such sample (nothing audited).
    """
    scope = scope_of(conn, username)
    criticals = wl.open_criticals(conn, scope)
    try:
        sample = wl.sample_detail(conn, accession, scope)
    except wl.NotInScopeError as exc:
        append_audit(conn, actor=username, action="view.sample-refused",
                     target=f"sample:{accession}", detail={"sections": list(exc.sections)},
                     source=source, at=at)
        return SampleView(None, criticals, exc.sections)
    append_audit(conn, actor=username, action="view.sample", target=f"sample:{accession}",
                 detail={}, source=source, at=at)
    return SampleView(sample, criticals)


def in_words(outcome: Outcome, gettext: Callable[[str], str]) -> Outcome:
    """The outcome with a section refusal said in the person's language."""
    if isinstance(outcome, actions.OutOfSection):
        return dataclasses.replace(outcome, refused=gettext(
            "the result belongs to the section {section}, which you do not hold"
        ).format(section=outcome.section or "-"))
    return outcome


class WorklistPage(Page):
    """``/worklist``: samples by state with filters (GET), its live part
    (``part=live``); batch validation (POST)."""

    def __init__(self, ctx: WebContext) -> None:
        super().__init__(ctx)
        #: per session id, the barcodes its worklist showed last (live-refresh audit)
        self._shown: OrderedDict[str, tuple[str, ...]] = OrderedDict()

    def _remember(self, session: Session, view: WorklistView) -> None:
        self._shown[session.id] = view.shown
        self._shown.move_to_end(session.id)
        while len(self._shown) > MAX_SESSIONS:
            self._shown.popitem(last=False)

    def _filters(self, request: Request, session: Session) -> tuple[wl.Filters, list[str],
                                                                     dict[str, str]]:
        gettext = self.ctx.locales[session.lang].gettext
        given = {k: field_text(request, k).strip()
                 for k in ("analyzer", "state", "day", "priority", "section")}
        errors: list[str] = []
        state = None
        if given["state"] and given["state"] != NOT_DELIVERED:
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
                           priority=given["priority"], section=given["section"],
                           not_delivered=given["state"] == NOT_DELIVERED), errors, given)

    def _context(self, request: Request, session: Session, view: WorklistView,
                 given: dict[str, str]) -> dict[str, Any]:
        live = with_query("/worklist", {**given, "part": "live"})
        return {"criticals": view.criticals, "samples": view.samples,
                "analyzers": view.analyzers, "sections": view.sections, "scope": view.scope,
                "given": given, "states": FILTER_STATES, "not_delivered": NOT_DELIVERED,
                "batch": {s.accession: batchable(s, session.roles) for s in view.samples},
                "doctor": "doctor" in session.roles, "live_url": live,
                "refresh": REFRESH_SECONDS,
                "back": with_query("/worklist", given)}

    def get(self, request: Request, session: Session | None) -> bytes | int:
        assert session is not None
        filters, errors, given = self._filters(request, session)
        d = self.ctx.pool.run(load_worklist, filters, session.username, at=self.ctx.now(),
                              source=client(request))

        def done(view: WorklistView) -> bytes:
            self._remember(session, view)
            return self.ctx.render(request, session, "worklist.html", errors=errors,
                                   **self._context(request, session, view, given))

        return self.ctx.respond(request, session, d, done)

    def render_GET(self, request: Request) -> bytes | int:
        if field_text(request, "part") != "live":
            return super().render_GET(request)
        sid = request.getCookie(SESSION_COOKIE)
        session = (self.ctx.sessions.peek(sid.decode("ascii", "replace"),
                                          self.ctx.clock.seconds()) if sid else None)
        if session is None or not session.username:
            self.ctx.headers(request, b"text/plain; charset=utf-8")
            request.setResponseCode(401)
            return b"the session has ended\n"
        try:
            filters, _errors, given = self._filters(request, session)
        except FormError as exc:
            return self.ctx.refuse(request, session, 400, str(exc))
        d = self.ctx.pool.run(load_worklist, filters, session.username, at=self.ctx.now(),
                              source=client(request),
                              previous=self._shown.get(session.id, ()))

        def done(view: WorklistView) -> bytes:
            self._remember(session, view)
            return self.ctx.render(request, session, "worklist_live.html", keep_flashes=True,
                                   **self._context(request, session, view, given))

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
                              source=client(request)).addCallback(self.ctx.released)
        back = field_text(request, "back", "/worklist")
        return self.ctx.respond(request, session, _refusal_safe(d, session, self.ctx),
                                lambda outcomes: self._after(request, session, outcomes, back))

    def _after(self, request: Request, session: Session, outcomes: list[Outcome] | None,
               back: str) -> bytes:
        if outcomes is not None:
            gettext = self.ctx.locales[session.lang].gettext
            self.ctx.flash_outcomes(session, [in_words(o, gettext) for o in outcomes])
        return self.ctx.redirect(request, back)


def _refusal_safe(d: Any, session: Session, ctx: WebContext) -> Any:
    """A disabled or deleted user's action becomes a message, not a 503."""
    def refused(failure: Any) -> None:
        failure.trap(UserRefusedError)
        session.flash("error", ctx.locales[session.lang].gettext(
            "Your account may not do this: {why}").format(why=failure.getErrorMessage()))
        return None

    return d.addErrback(refused)


_DECISIONS = {"reject": Action.REJECT, "rerun": Action.REQUEST_RERUN,
              "retract": Action.RETRACT}


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
            if view.sample is None:
                gettext = self.ctx.locales[session.lang].gettext
                return self.ctx.render(request, session, "error.html", status=403,
                                       criticals=view.criticals, message=gettext(
                    "The results of sample {barcode} belong to the section {sections}, "
                    "which you do not hold. An administrator can give it to you."
                ).format(barcode=accession, sections=", ".join(
                    x or "-" for x in view.refused)))
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
        if what in ("validate", "approve", "correct", "retract"):  # may queue messages
            d.addCallback(self.ctx.released)
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
            outcome = in_words(outcome, gettext)
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
