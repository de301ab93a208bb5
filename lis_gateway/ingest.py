"""The store-backed sink: durable before acknowledged.

:class:`StoreSink` is the :class:`~lis_gateway.adapters.sink.Sink` of one
analyzer link when the gateway runs with a database. For each complete
message it extracts the rows with the link's driver, normalizes them with the
driver's mapping table and returns the Deferred of the store transaction
(``DbPool.run``), so the link ACKs the completing frame (or sends the HL7 AA)
only after the commit, and NAKs (AE) if the transaction fails: the analyzer
then sends the message again. A byte-identical resend is recognised by the
store (``StoredMessage.repeat``) and adds no results.

Messages are ASTM (``protocol`` ``astm``), HL7 (``hl7``) or Beckman AU online
texts (``au``: the text's blocks exactly as received, rows read by the
driver's own decoder, :func:`au_rows`, as ``lis-gateway parse`` and
``reprocess`` read them). A text whose layout does not match is stored with
its problem and no results; nothing of it is lost.

Text that never became a message (:class:`IncompleteTransmission`) is kept as a
one-chunk raw session whose ``peer`` says ``incomplete: <reason>``; the schema
has no dedicated table for it.

No SQL here: the work functions only call :mod:`lis_gateway.store.repository`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Concatenate, ParamSpec, Protocol, TypeVar, cast

import structlog
from sqlalchemy import Connection
from structlog.typing import FilteringBoundLogger
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from drivers import AnalyzerPatient, DriverSpec
from drivers.extract import ResultRow, extract_hl7_results, extract_results
from lis_gateway import metrics
from lis_gateway.astm.assembler import AstmMessage, IncompleteTransmission
from lis_gateway.astm.events import AbortReason
from lis_gateway.au_online import AuMessage
from lis_gateway.autoverify import Autoverification, Judging, judge_results
from lis_gateway.capture import CaptureReport, normalize_report
from lis_gateway.hl7.message import Hl7Message
from lis_gateway.link_status import LinkStatusBoard
from lis_gateway.mapping import MappingTable, load_table
from lis_gateway.normalize import NormalizedResult
from lis_gateway.store import repository
from lis_gateway.store.patients import adopt_analyzer_patient

T = TypeVar("T")
P = ParamSpec("P")


class RunsWork(Protocol):
    """What the sink needs of :class:`lis_gateway.store.pool.DbPool` (or ``NonThreadPool``)."""

    def run(self, fn: Callable[Concatenate[Connection, P], T], *args: P.args,
            **kwargs: P.kwargs) -> Deferred[T]: ...


def load_tables(specs: Iterable[DriverSpec], directories: Sequence[Path]
                ) -> dict[str, MappingTable | None]:
    """Load each driver's mapping table once (None: no table, results are not mapped).

    Raises:
        lis_gateway.mapping.MappingTableError: a table exists but has problems
            (``problems`` locates each one); nothing should start then.
    """
    tables: dict[str, MappingTable | None] = {}
    for spec in specs:
        if spec.table_name not in tables:
            tables[spec.table_name] = load_table(directories, spec.table_name)
    return tables


def normalize_rows(rows: Sequence[ResultRow], spec: DriverSpec, table: MappingTable | None
                   ) -> list[NormalizedResult]:
    """One message's rows normalized exactly as ``lis-gateway parse`` does."""
    report = CaptureReport(rows=[(0, row) for row in rows])
    return [result for _number, result in normalize_report(report, spec, table)]


def au_rows(msg: AuMessage, driver: DriverSpec) -> tuple[list[ResultRow], list[str]]:
    """The rows of an AU text, read from its raw bytes by the driver's decoder.

    Returns:
        The rows (none when the layout does not match) and the decoder's problems.
    """
    if driver.custom_decoder is None:
        return [], [f"error: driver {driver.name} has no decoder for AU texts; "
                    "nothing extracted, the bytes are kept"]
    decoded = driver.custom_decoder(msg.raw)
    return list(decoded.rows), list(decoded.problems)


def message_rows(msg: AstmMessage | Hl7Message | AuMessage, driver: DriverSpec
                 ) -> tuple[list[ResultRow], str, list[str]]:
    """A message's result rows, its ``protocol`` word for the store, and its problems."""
    if isinstance(msg, AuMessage):
        rows, problems = au_rows(msg, driver)
        return rows, "au", problems
    if isinstance(msg, Hl7Message):
        return extract_hl7_results(msg, driver), "hl7", [str(p) for p in msg.problems]
    return extract_results(msg, driver), "astm", [str(p) for p in msg.problems]


def analyzer_patients(rows: Sequence[ResultRow]) -> dict[str, AnalyzerPatient]:
    """The analyzer's own patient record of each barcode (the first one; QC left out)."""
    found: dict[str, AnalyzerPatient] = {}
    for row in rows:
        if row.patient and not row.qc and row.sample_id:
            found.setdefault(row.sample_id, row.patient)
    return found


def store_for_analyzer(conn: Connection, *, analyzer: str, family: str, protocol: str,
                       raw: bytes, received_at: datetime,
                       results: Sequence[NormalizedResult],
                       autoverification: Autoverification | None = None,
                       problems: Sequence[str] = (),
                       analyzer_patients: Mapping[str, AnalyzerPatient] | None = None
                       ) -> repository.StoredMessage:
    """Make sure the analyzer exists and store one message with its results (one transaction).

    ``analyzer_patients`` (an ``unsolicited`` analyzer's own patient records, by
    barcode): a sample with no patient yet takes its one, marked as such.
    With ``autoverification``, each new result is judged in the same transaction
    (rule outcomes and a HOLD or AUTOVERIFY transition); without, it stays RECEIVED.
    """
    known = repository.ensure_analyzer(conn, analyzer, received_at, family=family)
    stored = repository.store_message(conn, analyzer_id=known.id, protocol=protocol, raw=raw,
                                      received_at=received_at, results=results,
                                      problems=problems)
    if not stored.repeat:
        for accession, patient in (analyzer_patients or {}).items():
            adopt_analyzer_patient(conn, accession, analyzer, patient, received_at)
    if autoverification is None or not stored.new_result_ids:
        return stored
    items = [Judging(result_id, version_id, results[index].row.sample_id, results[index])
             for result_id, version_id, index in zip(
                 stored.new_result_ids, stored.new_version_ids, stored.new_result_index,
                 strict=True)
             if not results[index].row.qc]  # QC runs are kept, never judged
    judged = judge_results(conn, known.id, items, autoverification, received_at,
                           source=f"analyzer:{analyzer}")
    if not judged:
        return stored
    return replace(stored, decisions=tuple(j.transition.to_state.value for j in judged),
                   released=sum(j.released for j in judged))


def store_incomplete(conn: Connection, *, analyzer: str, family: str, transport: str,
                     reason: str, raw: bytes, received_at: datetime) -> int:
    """Keep incomplete text as a closed one-chunk raw session; returns the session id."""
    known = repository.ensure_analyzer(conn, analyzer, received_at, family=family)
    session = repository.open_raw_session(conn, known.id, transport[:20], received_at,
                                          peer=f"incomplete: {reason}"[:200])
    repository.record_chunks(conn, session, [(0, "in", received_at, raw)])
    repository.close_raw_session(conn, session, received_at)
    return session


def _probe(conn: Connection) -> None:
    """A transaction that only takes the write lock (``accepting``'s probe)."""
    repository.probe_write(conn)


class StoreSink:
    """Stores what one link receives; the acknowledgement waits for the commit.

    Args:
        name: the link (analyzer) name, as in the configuration.
        driver: extracts rows and knows the flag/status maps and time zone.
        transport: the link's transport (kept with incomplete text).
        table: the driver's mapping table, or None (every result gets ``not-mapped``).
        pool: runs the store work in a transaction off the reactor thread.
        utcnow: the wall clock for ``received_at``.
        log: a logger; one bound to ``analyzer=name`` when None.
        autoverification: judge each new result in the storing transaction (its rules
            and policy; the table and driver are this link's); None leaves results
            RECEIVED (the lifecycle is not wired).
        adopt_patients: the analyzer is ``unsolicited``: a sample with no patient
            takes the one from the analyzer's own record (marked as such).
        current_table: asked for the table at every message instead of ``table``
            (:class:`lis_gateway.mapping_files.LiveTables`: a table fixed from the
            web app is used for the next message).
        status: told each message's outcome (the analyzers page's board).
        on_release: called (on the reactor thread) after a commit that released
            results for the HIS (autorelease), so the outbox workers look at once.
        writer: runs the message stores instead of ``pool`` (a
            :class:`~lis_gateway.store.pool.GroupCommit` shared by every link, so
            messages arriving together share one transaction and one fsync).

    After a message could not be stored, :meth:`accepting` says no until a probe
    transaction commits again: an ASTM link then answers the next ENQ with NAK
    ("busy", E1381 8.2.5) instead of taking a message it cannot keep.
    """

    def __init__(self, name: str, driver: DriverSpec, transport: str,
                 table: MappingTable | None, pool: RunsWork, *,
                 utcnow: Callable[[], datetime] = lambda: datetime.now(UTC),
                 log: FilteringBoundLogger | None = None,
                 autoverification: Autoverification | None = None,
                 adopt_patients: bool = False,
                 current_table: Callable[[], MappingTable | None] | None = None,
                 status: LinkStatusBoard | None = None,
                 on_release: Callable[[], None] | None = None,
                 writer: RunsWork | None = None) -> None:
        self.name = name
        self._writer = writer if writer is not None else pool
        self._on_release = on_release
        self._store_failed = False  # the last store attempt failed
        self._probing = False
        self._current_table = current_table
        self._status = status
        self._adopt_patients = adopt_patients
        self._autoverification = None if autoverification is None else replace(
            autoverification, table=table, driver=driver.name)
        self._driver = driver
        self._transport = transport
        self._table = table
        self._pool = pool
        self._utcnow = utcnow
        self._log: FilteringBoundLogger = (
            log if log is not None
            else structlog.get_logger("lis_gateway.ingest").bind(analyzer=name))

    def message_received(self, msg: AstmMessage | Hl7Message | AuMessage) -> Deferred[object]:
        """Store the message; the Deferred fires after the commit (fails after a rollback)."""
        rows, protocol, problems = message_rows(msg, self._driver)
        table, judging = self._table, self._autoverification
        if self._current_table is not None:
            table = self._current_table()
            judging = None if judging is None else replace(judging, table=table)
        results = normalize_rows(rows, self._driver, table)
        patients = analyzer_patients(rows) if self._adopt_patients else None
        d = self._writer.run(store_for_analyzer, analyzer=self.name,
                             family=self._driver.name, protocol=protocol, raw=msg.raw,
                             received_at=self._utcnow(), results=results,
                             autoverification=judging,
                             problems=problems,
                             analyzer_patients=patients)
        d.addCallback(self._stored, len(msg.raw))
        d.addErrback(self._not_stored)
        return cast("Deferred[object]", d)

    def accepting(self) -> bool:
        """Whether the store took the last message (else a probe is started; say busy).

        After a failure the answer is False until a probe transaction (one
        write-locking ``BEGIN`` and nothing else) commits; the probe is started
        by the question itself, so a sender's next ENQ (10 s or more later,
        E1381 8.2.5) is answered from its outcome. No timer runs.
        """
        if not self._store_failed:
            return True
        if not self._probing:
            self._probing = True
            d = self._pool.run(_probe)
            d.addCallbacks(self._probe_ok, self._probe_failed)
        return False

    def _probe_ok(self, _: object) -> None:
        self._probing = False
        self._store_failed = False
        self._log.info("store-available-again")

    def _probe_failed(self, failure: Failure) -> None:
        self._probing = False
        kind = failure.type.__name__ if failure.type is not None else "unknown"
        self._log.warning("store-still-unavailable", error=kind)

    def _not_stored(self, failure: Failure) -> Failure:
        self._store_failed = True
        metrics.MESSAGES.labels(self.name, "failed").inc()
        if self._status is not None:
            at = self._utcnow().timestamp()
            self._status.message(self.name, "failed", at)
            kind = failure.type.__name__ if failure.type is not None else "unknown"
            self._status.error(self.name, f"message not stored: {kind}", at)
        return failure

    def _stored(self, stored: repository.StoredMessage, length: int
                ) -> repository.StoredMessage:
        self._store_failed = False
        outcome = "repeat" if stored.repeat else "stored"
        metrics.MESSAGES.labels(self.name, outcome).inc()
        if stored.released and self._on_release is not None:
            self._on_release()
        if self._status is not None:
            self._status.message(self.name, outcome, self._utcnow().timestamp())
        for decision in stored.decisions:
            metrics.RULE_DECISIONS.labels(decision).inc()
        if stored.repeat:
            self._log.info("message-repeat", message_id=stored.message_id, length=length,
                           results=len(stored.result_ids))
        else:
            self._log.info("message-stored", message_id=stored.message_id, length=length,
                           results=len(stored.result_ids),
                           new_results=len(stored.new_result_ids),
                           linked_results=len(stored.result_ids) - len(stored.new_result_ids))
        return stored

    def incomplete(self, item: IncompleteTransmission) -> None:
        """Keep the text as a raw session marked incomplete (nothing is acknowledged for it)."""
        if self._status is not None:
            at = self._utcnow().timestamp()
            self._status.message(self.name, "incomplete", at)
            self._status.error(self.name, f"incomplete transmission: {item.reason}", at)
        d = self._pool.run(store_incomplete, analyzer=self.name, family=self._driver.name,
                           transport=self._transport, reason=item.reason, raw=item.raw,
                           received_at=self._utcnow())
        d.addCallbacks(self._incomplete_stored, self._incomplete_lost,
                       callbackArgs=(item,), errbackArgs=(item,))

    def _incomplete_stored(self, session: int, item: IncompleteTransmission) -> None:
        metrics.MESSAGES.labels(self.name, "incomplete").inc()
        self._log.info("incomplete-stored", raw_session_id=session, length=len(item.raw),
                       reason=item.reason)

    def _incomplete_lost(self, failure: Failure, item: IncompleteTransmission) -> None:
        self._log.error("incomplete-not-stored", length=len(item.raw), reason=item.reason,
                        error=failure.getErrorMessage())

    def message_sent(self, message: bytes) -> None:
        """The gateway sends nothing on this link yet (orders arrive with issue 6)."""
        self._log.info("message-sent", length=len(message))

    def send_failed(self, messages: tuple[bytes, ...], reason: AbortReason) -> None:
        """The gateway sends nothing on this link yet (orders arrive with issue 6)."""
        self._log.warning("send-failed", messages=len(messages), reason=reason.value)
