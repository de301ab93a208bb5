"""The mapping-problems page: held results with an unmapped code or unit, fixed in place.

* ``GET /mapping``: the groups (analyzer, code as sent, problem), how many
  results wait, the units sent, the first barcodes (the view is audited:
  ``view.mapping-problems`` with the barcodes shown).
* ``GET /mapping/fix?analyzer=&code=``: the table row of that code as it is
  in the file now (or a new one, with the unit the analyzer sent), with the
  file it will be written to.
* ``POST /mapping/fix``: the row is edited in the table's file, the whole
  table validated (every problem shown with file, line and column; nothing
  written then), the file replaced atomically and the table put in use for
  the next message (:mod:`lis_gateway.mapping_files`). The change is audited
  (``mapping.edit``: who, which file, the old and the new row, the old and
  the new version) in the transaction the file is written in; if that
  transaction does not commit, the old file is put back.
* ``POST /mapping/reprocess``: the group's held results are re-mapped with
  the tables in use (:func:`lis_gateway.reprocess.reprocess_held`), audited
  as ``mapping.reprocess`` with who asked.

Only administrators may see and act (:class:`~.admin.RolePage`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from twisted.python.failure import Failure
from twisted.web.server import Request

from lis_gateway.lifecycle import Policies, Policy, ResultState
from lis_gateway.mapping import MappingTable, MappingTableError
from lis_gateway.mapping_edit import RowEditError, find_row, header_of
from lis_gateway.mapping_files import (
    PreparedEdit,
    TableWriteError,
    restore_table,
    write_table,
)
from lis_gateway.reprocess import Reprocessed, reprocess_held
from lis_gateway.store.audit import append_audit
from lis_gateway.store.mapping_problems import MappingProblem, mapping_problems, problem_of

from .admin import MappingSetup, RolePage
from .sessions import Session
from .web import FormError, client, field_text, with_query


def load_problems(conn: Connection, username: str, *, at: datetime, source: str,
                  target: str = "mapping", only: tuple[str, str] | None = None
                  ) -> tuple[MappingProblem, ...]:
    """The groups (of one analyzer and code with ``only``), the view audited."""
    found = mapping_problems(conn) if only is None else problem_of(conn, *only)
    append_audit(conn, actor=username, action="view.mapping-problems", target=target,
                 detail={"samples": sorted({a for p in found for a in p.samples})},
                 source=source, at=at)
    return found


@dataclass(frozen=True, slots=True)
class Saved:
    """A row written: the edit and the table now in use."""

    prepared: PreparedEdit
    table: MappingTable


def save_row(conn: Connection, setup: MappingSetup, name: str, row: dict[str, str],
             based_on: str, username: str, *, at: datetime, source: str,
             written: list[PreparedEdit]) -> Saved:
    """Validate, audit and write one row (the file last: an error before leaves nothing).

    ``written`` gets the edit once the file is replaced, so that the caller can
    put the old file back if this transaction then fails to commit.

    Raises:
        TableWriteError, RowEditError, MappingTableError: nothing was written.
    """
    tables = setup.tables
    with tables.lock:
        prepared = tables.prepare_row(name, row, based_on=based_on)
        target = prepared.file.target
        append_audit(conn, actor=username, action="mapping.edit", target=f"mapping:{name}",
                     detail={"file": str(target), "copied_from": str(prepared.file.source)
                             if prepared.file.copied and prepared.file.source else "",
                             "old_row": prepared.edit.old_row, "new_row": prepared.edit.new_row,
                             "old_version": based_on, "new_version": prepared.table.version},
                     source=source, at=at)
        write_table(prepared)
        written.append(prepared)
        reloaded = tables.reload(name)
        if reloaded is None or reloaded.version != prepared.table.version:
            raise TableWriteError(f"table {name} read back from its directory differs from "
                                  "what was written")
    return Saved(prepared, reloaded)


def reprocess_group(conn: Connection, setup: MappingSetup, policy: Policy | Policies,
                    analyzer: str, code: str, username: str, *, at: datetime,
                    source: str) -> list[Reprocessed]:
    """Re-map the held results of one analyzer and code with the tables in use (audited)."""
    ids = sorted({i for p in problem_of(conn, analyzer, code) for i in p.result_ids})
    if not ids:
        return []
    done = reprocess_held(conn, setup.specs, setup.tables.all(), setup.rules, policy, at,
                          source=source, needs_order=setup.needs_order, only=set(ids))
    table = setup.tables.get(setup.specs[analyzer].table_name) if analyzer in setup.specs \
        else None
    append_audit(conn, actor=username, action="mapping.reprocess",
                 target=f"mapping:{analyzer}:{code}",
                 detail={"results": ids, "table_version": table.version if table else "",
                         "outcomes": [{"result": d.result_id, "new_version": d.new_version,
                                       "state": d.state.value} for d in done]},
                 source=source, at=at)
    return done


class MappingProblemsPage(RolePage):
    """``/mapping``: the groups of held results with a mapping problem."""

    def read(self, request: Request, session: Session) -> bytes | int:
        d = self.ctx.pool.run(load_problems, session.username, at=self.ctx.now(),
                              source=client(request))
        mapping = self.setup.mapping

        def done(problems: tuple[MappingProblem, ...]) -> bytes:
            tables = {}
            if mapping is not None:
                for p in problems:
                    spec = mapping.specs.get(p.analyzer)
                    if spec is not None:
                        tables[p.analyzer] = (spec.table_name,
                                              mapping.tables.get(spec.table_name))
            return self.ctx.render(request, session, "mapping.html", problems=problems,
                                   tables=tables, configured=mapping is not None)

        return self.ctx.respond(request, session, d, done)


class MappingFixPage(RolePage):
    """``/mapping/fix``: one code's row, shown (GET) and written (POST)."""

    def _mapping(self, request: Request, session: Session) -> MappingSetup:
        if self.setup.mapping is None:
            raise FormError(self._text(session, request, "The mapping tables are not "
                                       "available to this web app."))
        return self.setup.mapping

    def _table_name(self, request: Request, session: Session, analyzer: str) -> str:
        spec = self._mapping(request, session).specs.get(analyzer)
        if spec is None:
            raise FormError(self._text(session, request, "This analyzer is not in the "
                                       "configuration: {analyzer}").format(analyzer=analyzer))
        return spec.table_name

    def read(self, request: Request, session: Session) -> bytes | int:
        analyzer, code = field_text(request, "analyzer"), field_text(request, "code")
        name = self._table_name(request, session, analyzer)
        tables = self._mapping(request, session).tables
        file, data, version = tables.on_disk(name)
        try:
            columns, row = header_of(data), find_row(data, code)
        except RowEditError as exc:
            return self.ctx.refuse(request, session, 409, str(exc))
        d = self.ctx.pool.run(load_problems, session.username, at=self.ctx.now(),
                              source=client(request), target=f"mapping:{analyzer}:{code}",
                              only=(analyzer, code))

        def done(problems: tuple[MappingProblem, ...]) -> bytes:
            units = [u for p in problems for u in p.units if u]
            start = row or {"analyzer_code": code, "analyzer_unit": units[0] if units else ""}
            return self._form(request, session, analyzer=analyzer, code=code, name=name,
                              columns=columns, row=start, version=version, file=file,
                              existing=row is not None, problems=problems, errors=())

        return self.ctx.respond(request, session, d, done)

    def _form(self, request: Request, session: Session, *, status: int = 200,
              **context: Any) -> bytes:
        in_use = self._mapping(request, session).tables.get(context["name"])
        return self.ctx.render(request, session, "mapping_fix.html", status=status,
                               in_use=in_use, **context)

    def act(self, request: Request, session: Session) -> bytes | int:
        analyzer, code = field_text(request, "analyzer"), field_text(request, "code")
        name = self._table_name(request, session, analyzer)
        mapping = self._mapping(request, session)
        file, data, _ = mapping.tables.on_disk(name)
        columns = header_of(data)
        row = {c: field_text(request, f"col_{c}") for c in columns}
        row["analyzer_code"] = code
        based_on = field_text(request, "based_on")
        written: list[PreparedEdit] = []
        d = self.ctx.pool.run(save_row, mapping, name, row, based_on, session.username,
                              at=self.ctx.now(), source=client(request), written=written)

        def saved(result: Saved) -> bytes:
            mapping.tables.replace(name, result.table)
            self.ctx.log.info("webapp-mapping-edit", user=session.username, table=name,
                              version=result.table.version[:12])
            session.flash("ok", self.ctx.locales[session.lang].gettext(
                "Saved the row of {code} in {file}; table {table} is now version {version} "
                "and is used for new messages. Reprocess the held results to apply it."
            ).format(code=code, file=str(result.prepared.file.target), table=name,
                     version=result.table.version[:12]))
            return self.ctx.redirect(request, "/mapping")

        def refused(failure: Failure) -> bytes:
            if written:  # the file was replaced but the audit row did not commit
                restore_table(written[0])
                failure.raiseException()  # the store's failure: the 503 page
            failure.trap(TableWriteError, RowEditError, MappingTableError)
            errors = ([str(p) for p in failure.value.problems]
                      if isinstance(failure.value, MappingTableError)
                      else [str(failure.value)])
            return self._form(request, session, status=409 if isinstance(
                failure.value, TableWriteError) else 400, analyzer=analyzer, code=code,
                name=name, columns=columns, row=row, version=based_on, file=file,
                existing=find_row(data, code) is not None, problems=(), errors=errors)

        d.addCallbacks(saved, refused)
        return self.ctx.respond(request, session, d, lambda body: body)


class MappingReprocessPage(RolePage):
    """``POST /mapping/reprocess``: re-map the held results of one analyzer and code."""

    def act(self, request: Request, session: Session) -> bytes | int:
        if self.setup.mapping is None:
            raise FormError(self._text(session, request, "The mapping tables are not "
                                       "available to this web app."))
        analyzer, code = field_text(request, "analyzer"), field_text(request, "code")
        d = self.ctx.pool.run(reprocess_group, self.setup.mapping, self.ctx.policy,
                              analyzer, code, session.username, at=self.ctx.now(),
                              source=client(request)).addCallback(self.ctx.released)

        def done(outcomes: list[Reprocessed]) -> bytes:
            gettext = self.ctx.locales[session.lang].gettext
            held = sum(1 for o in outcomes if o.state is ResultState.HELD)
            session.flash("ok" if outcomes else "error", gettext(
                "Reprocessed {count} result(s) of {code}: {new} with a new version, "
                "{held} still held.").format(
                    count=len(outcomes), code=code,
                    new=sum(1 for o in outcomes if o.new_version is not None), held=held))
            self.ctx.log.info("webapp-mapping-reprocess", user=session.username,
                              results=len(outcomes), held=held)
            return self.ctx.redirect(request, with_query("/mapping", {}))

        return self.ctx.respond(request, session, d, done)
