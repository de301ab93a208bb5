"""Synchronous store functions: take a ``Connection``, return frozen dataclasses.

Every function here runs inside a transaction that :mod:`lis_gateway.store.pool`
opened (``DbPool.run(fn, ...)``); none commits. Nothing returned holds a
database object, so results can cross to the reactor thread safely.

Rules kept in code (and, for the append-only tables, by triggers too):

* A message is stored once per analyzer and content hash; a byte-identical
  resend adds a reception marked ``repeat`` and no results.
* A result is recognised by its fingerprint (see :func:`result_fingerprint`);
  a differently framed resend of the same result links the message to the
  existing result as a repeat. A rerun (new completion time or value) is a
  new result whose ``rerun_of_id`` is the latest earlier one; both are kept.
* Result versions are never updated: :func:`correct_result` inserts version
  n+1 linked to the old one, with reason, author and time, and audits it.
* Audit (:mod:`.audit`) and users (:mod:`.users`) live in their own modules and
  are re-exported here, so callers have one entry point.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Row, Select, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from lis_gateway.normalize import NormalizedResult

from . import schema as s
from ._common import (
    NotFoundError,
    StaleVersionError,
    StoreError,
    as_utc,
    canonical_json,
    primary_key,
    require_aware,
    sha256_hex,
)
from .audit import AuditEntry, append_audit, audit_entries, verify_audit
from .users import (
    User,
    create_user,
    disable_user,
    ensure_role,
    get_user,
    password_hash,
    set_password,
)

__all__ = ["AuditEntry", "NotFoundError", "StaleVersionError", "StoreError", "User",
           "append_audit", "audit_entries", "create_user", "disable_user", "ensure_role",
           "get_user", "password_hash", "set_password", "verify_audit"]


# --------------------------------------------------------------------- dataclasses


@dataclass(frozen=True, slots=True)
class Analyzer:
    """An analyzer known to the store."""

    id: int
    name: str
    family: str


@dataclass(frozen=True, slots=True)
class PatientIds:
    """Patient identifiers of a sample, when the analyzer or HIS sent them."""

    hospital_id: str | None = None
    national_id: str | None = None
    insurance_card: str | None = None


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """What :func:`store_message` did.

    Attributes:
        message_id: the message row (the original one for a repeat).
        reception_id: this arrival.
        repeat: the bytes were already stored for this analyzer.
        result_ids: the results the message carries, in order.
        new_result_ids: those created by this call (empty for a repeat).
    """

    message_id: int
    reception_id: int
    repeat: bool
    result_ids: tuple[int, ...]
    new_result_ids: tuple[int, ...]
    #: for each of ``new_result_ids``, the index of its result in the ``results`` given
    new_result_index: tuple[int, ...] = ()
    #: the state each judged new result reached (autoverified, held), for metrics
    decisions: tuple[str, ...] = ()
    #: how many new results were released in the same transaction (autorelease)
    released: int = 0
    #: for each of ``new_result_ids``, its first version's id
    new_version_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class ResultContent:
    """The content of one result version (what a correction may change)."""

    value_raw: str
    number: Decimal | None
    unit_raw: str
    unit_ucum: str
    code: str
    loinc: str
    flags: tuple[str, ...]
    instrument_flags: tuple[str, ...]
    reference_range: str
    status: str
    critical: str
    problems: tuple[str, ...]
    mapping_version: str
    result_time: datetime | None


@dataclass(frozen=True, slots=True)
class ResultVersion:
    """One stored version of a result."""

    id: int
    result_id: int
    version: int
    content: ResultContent
    reason: str
    author: str
    created_at: datetime
    supersedes_id: int | None


@dataclass(frozen=True, slots=True)
class ResultInfo:
    """A result (one run of one test on one sample) with its latest version."""

    id: int
    analyzer_id: int
    accession: str
    test_code: str
    completed_at_raw: str
    message_id: int
    rerun_of_id: int | None
    latest: ResultVersion
    analyzer: str = ""  #: the analyzer's configured name
    qc: bool = False  #: a QC run's result (never in the patient lifecycle)


def result_fingerprint(analyzer_id: int, result: NormalizedResult, occurrence: int) -> str:
    """The identity of a result across resends.

    Args:
        analyzer_id: the sending analyzer.
        result: the normalized result.
        occurrence: how many identical rows came before it in the same message.

    Returns:
        sha256 hex over sample, test, completion time, raw value, unit, flags,
        status and ``occurrence``. A rerun differs in completion time or value.
    """
    row = result.row
    return sha256_hex(canonical_json([analyzer_id, row.sample_id, row.test, row.completed_at,
                               row.value, row.unit, sorted(row.flags), row.status,
                               occurrence]))


# --------------------------------------------------------------------- analyzers, samples


def probe_write(conn: Connection) -> None:
    """Touch the store as a writer would, changing nothing (is it writable again?).

    On SQLite the transaction already holds the write lock (``BEGIN IMMEDIATE``);
    the statement makes PostgreSQL reach the server too.
    """
    conn.execute(select(func.count()).select_from(s.audit_head))


def ensure_analyzer(conn: Connection, name: str, now: datetime, family: str = "") -> Analyzer:
    """The analyzer called ``name``, created if new."""
    row = conn.execute(select(s.analyzers).where(s.analyzers.c.name == name)).first()
    if row is None:
        pk = primary_key(conn.execute(insert(s.analyzers).values(
            name=name, family=family, created_at=require_aware(now, "now"))))
        return Analyzer(int(pk[0]), name, family)
    return Analyzer(row.id, row.name, row.family)


def ensure_sample(conn: Connection, accession: str, now: datetime,
                  ids: PatientIds | None = None) -> int:
    """The sample id for ``accession``; known patient identifiers fill empty ones."""
    row = conn.execute(select(s.samples).where(s.samples.c.accession == accession)).first()
    given = {k: v for k, v in (
        ("hospital_id", ids.hospital_id if ids else None),
        ("national_id", ids.national_id if ids else None),
        ("insurance_card", ids.insurance_card if ids else None)) if v}
    if row is None:
        pk = primary_key(conn.execute(insert(s.samples).values(
            accession=accession, created_at=require_aware(now, "now"), **given)
        ))
        return int(pk[0])
    missing = {k: v for k, v in given.items() if getattr(row, k) is None}
    if missing:
        conn.execute(update(s.samples).where(s.samples.c.id == row.id).values(**missing))
    return int(row.id)


def ensure_samples(conn: Connection, accessions: Sequence[str], now: datetime,
                   patients: Mapping[str, PatientIds]) -> dict[str, int]:
    """:func:`ensure_sample` for several accessions: one read for the known ones."""
    wanted = sorted(set(accessions))
    rows = {row.accession: row for row in conn.execute(
        select(s.samples).where(s.samples.c.accession.in_(wanted)))}
    out: dict[str, int] = {}
    for accession in wanted:
        row = rows.get(accession)
        ids = patients.get(accession)
        if row is None or (ids is not None and any(
                v and getattr(row, k) is None for k, v in (
                    ("hospital_id", ids.hospital_id), ("national_id", ids.national_id),
                    ("insurance_card", ids.insurance_card)))):
            out[accession] = ensure_sample(conn, accession, now, ids)
        else:
            out[accession] = int(row.id)
    return out


def sample_ids(conn: Connection, accession: str) -> PatientIds:
    """The patient identifiers stored for ``accession``."""
    row = conn.execute(select(s.samples).where(s.samples.c.accession == accession)).first()
    if row is None:
        raise NotFoundError(f"sample {accession!r}")
    return PatientIds(row.hospital_id, row.national_id, row.insurance_card)


def add_order(conn: Connection, accession: str, test_code: str, now: datetime,
              placer_order: str = "") -> int:
    """Record an order for a test on a sample; returns its id."""
    sample_id = ensure_sample(conn, accession, now)
    pk = primary_key(conn.execute(insert(s.orders).values(
        sample_id=sample_id, test_code=test_code, placer_order=placer_order,
        status="ordered", ordered_at=require_aware(now, "now"))))
    return int(pk[0])


# --------------------------------------------------------------------- raw sessions


def open_raw_session(conn: Connection, analyzer_id: int, transport: str, now: datetime,
                     peer: str = "") -> int:
    """Start a wire recording; returns the session id."""
    pk = primary_key(conn.execute(insert(s.raw_sessions).values(
        analyzer_id=analyzer_id, transport=transport, peer=peer,
        opened_at=require_aware(now, "now"))))
    return int(pk[0])


def record_chunks(conn: Connection, session_id: int,
                  chunks: Sequence[tuple[int, str, datetime, bytes]]) -> None:
    """Append ``(seq, direction, at, data)`` chunks to a wire recording (executemany)."""
    if chunks:
        conn.execute(insert(s.raw_chunks), [
            {"session_id": session_id, "seq": seq, "direction": direction,
             "at": require_aware(at, "at"), "data": data}
            for seq, direction, at, data in chunks])


def raw_bytes(conn: Connection, session_id: int, direction: str) -> bytes:
    """Every recorded byte of one direction of a session, in order."""
    rows = conn.execute(select(s.raw_chunks.c.data).where(
        s.raw_chunks.c.session_id == session_id, s.raw_chunks.c.direction == direction
    ).order_by(s.raw_chunks.c.seq)).scalars()
    return b"".join(rows)


def close_raw_session(conn: Connection, session_id: int, now: datetime) -> None:
    """Mark a wire recording closed."""
    conn.execute(update(s.raw_sessions).where(s.raw_sessions.c.id == session_id).values(
        closed_at=require_aware(now, "now")))


# --------------------------------------------------------------------- messages, results


def _content_values(c: ResultContent) -> dict[str, Any]:
    return {
        "value_raw": c.value_raw, "number": None if c.number is None else str(c.number),
        "unit_raw": c.unit_raw, "unit_ucum": c.unit_ucum, "code": c.code, "loinc": c.loinc,
        "flags": canonical_json(list(c.flags)),
        "instrument_flags": canonical_json(list(c.instrument_flags)),
        "reference_range": c.reference_range, "status": c.status, "critical": c.critical,
        "problems": canonical_json(list(c.problems)), "mapping_version": c.mapping_version,
        "result_time": None if c.result_time is None else as_utc(c.result_time),
    }


def content_of(result: NormalizedResult) -> ResultContent:
    """The first version's content of a normalized result."""
    return ResultContent(
        value_raw=result.row.value, number=result.number, unit_raw=result.row.unit,
        unit_ucum=result.unit_ucum, code=result.code, loinc=result.loinc,
        flags=tuple(result.flags), instrument_flags=tuple(result.instrument_flags),
        reference_range=result.reference_range, status=result.status,
        critical=result.critical, problems=tuple(result.problems),
        mapping_version=result.mapping_version, result_time=result.result_time)


def store_message(conn: Connection, *, analyzer_id: int, protocol: str, raw: bytes,
                  received_at: datetime, results: Sequence[NormalizedResult],
                  patients: Mapping[str, PatientIds] | None = None,
                  raw_session_id: int | None = None,
                  problems: Sequence[str] = ()) -> StoredMessage:
    """Store one received message and its results (one transaction, the caller's).

    The statements do not grow with the results: the known fingerprints, the
    samples and the earlier runs are read once for the whole message, and the
    results, their first versions and the message links are inserted with one
    ``executemany`` each (a message that repeats a sample's test is inserted in
    as many rounds as the test repeats, so each rerun can name its predecessor).

    Args:
        analyzer_id: from :func:`ensure_analyzer`.
        protocol: ``"astm"``, ``"hl7"`` or ``"au"`` (Beckman AU online).
        raw: the message bytes exactly as received.
        received_at: timezone-aware arrival time.
        results: the message's normalized results, in order.
        patients: known patient identifiers per accession.
        raw_session_id: the wire recording it arrived on, if any.
        problems: what was off with the message itself (kept with it, in words).

    Returns:
        Ids, and whether the message (``repeat``) or which results were already known.
    """
    at = require_aware(received_at, "received_at")
    digest = sha256_hex(raw)
    existing = conn.execute(select(s.messages.c.id).where(
        s.messages.c.analyzer_id == analyzer_id, s.messages.c.content_hash == digest)
    ).scalar_one_or_none()
    if existing is not None:
        reception = _reception(conn, existing, raw_session_id, at, repeat=True)
        ids = conn.execute(select(s.message_results.c.result_id).where(
            s.message_results.c.message_id == existing).order_by(
            s.message_results.c.result_id)).scalars().all()
        return StoredMessage(existing, reception, True, tuple(ids), ())
    message_id = int(primary_key(conn.execute(insert(s.messages).values(
        analyzer_id=analyzer_id, protocol=protocol, content_hash=digest, raw=raw,
        raw_session_id=raw_session_id, received_at=at,
        problems=canonical_json(list(problems)))))[0])
    reception = _reception(conn, message_id, raw_session_id, at, repeat=False)
    fingerprints = _fingerprints(analyzer_id, results)
    known = _known_results(conn, analyzer_id, fingerprints)
    fresh = [i for i, fingerprint in enumerate(fingerprints) if fingerprint not in known]
    created, first_versions = _insert_results(conn, analyzer_id, message_id, results,
                                              fingerprints, fresh, at, patients or {})
    result_ids: list[int] = []
    links: list[dict[str, Any]] = []
    for index, fingerprint in enumerate(fingerprints):
        result_id = created.get(index) or known[fingerprint]
        if result_id in result_ids:
            continue
        result_ids.append(result_id)
        links.append({"message_id": message_id, "result_id": result_id,
                      "repeat": index not in created})
    if links:
        conn.execute(insert(s.message_results), links)
    return StoredMessage(message_id, reception, False, tuple(result_ids),
                         tuple(created[i] for i in fresh), tuple(fresh),
                         new_version_ids=tuple(first_versions[i] for i in fresh))


def _fingerprints(analyzer_id: int, results: Sequence[NormalizedResult]) -> list[str]:
    """Each result's fingerprint, identical rows told apart by their occurrence."""
    seen: dict[str, int] = {}
    out: list[str] = []
    for result in results:
        base = result_fingerprint(analyzer_id, result, 0)
        seen[base] = seen.get(base, -1) + 1
        out.append(base if seen[base] == 0 else result_fingerprint(analyzer_id, result,
                                                                   seen[base]))
    return out


def _known_results(conn: Connection, analyzer_id: int, fingerprints: Sequence[str]
                   ) -> dict[str, int]:
    """The already stored results among ``fingerprints`` (one query)."""
    if not fingerprints:
        return {}
    r = s.results
    rows = conn.execute(select(r.c.fingerprint, r.c.id).where(
        r.c.analyzer_id == analyzer_id, r.c.fingerprint.in_(sorted(set(fingerprints)))))
    return {row.fingerprint: int(row.id) for row in rows}


def _insert_results(conn: Connection, analyzer_id: int, message_id: int,
                    results: Sequence[NormalizedResult], fingerprints: Sequence[str],
                    fresh: Sequence[int], at: datetime,
                    patients: Mapping[str, PatientIds]
                    ) -> tuple[dict[int, int], dict[int, int]]:
    """Insert the new results and their first versions, in message order.

    Returns:
        index in the message -> new result id, and index -> its first version's id.
    """
    created: dict[int, int] = {}
    first_versions: dict[int, int] = {}
    if not fresh:
        return created, first_versions
    samples = ensure_samples(conn, [results[i].row.sample_id for i in fresh], at, patients)
    pairs = {(samples[results[i].row.sample_id], results[i].row.test) for i in fresh}
    latest = _latest_runs(conn, analyzer_id, pairs)
    author = "analyzer:" + conn.execute(select(s.analyzers.c.name).where(
        s.analyzers.c.id == analyzer_id)).scalar_one()
    for batch in _rounds(fresh, [(samples[r.row.sample_id], r.row.test) for r in results]):
        rows = []
        for i in batch:
            row = results[i].row
            pair = (samples[row.sample_id], row.test)
            rows.append({"analyzer_id": analyzer_id, "sample_id": pair[0],
                         "message_id": message_id, "test_code": row.test,
                         "completed_at_raw": row.completed_at,
                         "fingerprint": fingerprints[i], "rerun_of_id": latest.get(pair),
                         "created_at": at, "qc": row.qc})
        # each fingerprint and each new result's first version are unique: map
        # the returned rows by them rather than pay for ordered RETURNING
        returning = insert(s.results).returning(s.results.c.fingerprint, s.results.c.id)
        ids = {str(fingerprint): int(pk) for fingerprint, pk in conn.execute(returning, rows)}
        for i in batch:
            created[i] = ids[fingerprints[i]]
            latest[samples[results[i].row.sample_id], results[i].row.test] = created[i]
        versions = {int(result_id): int(pk) for result_id, pk in conn.execute(
            insert(s.result_versions).returning(s.result_versions.c.result_id,
                                                s.result_versions.c.id),
            [{"result_id": created[i], "version": 1, "reason": "received", "author": author,
              "created_at": at, "supersedes_id": None,
              **_content_values(content_of(results[i]))} for i in batch])}
        first_versions.update((i, versions[created[i]]) for i in batch)
    return created, first_versions


def _rounds(fresh: Sequence[int], pairs: Sequence[tuple[int, str]]) -> list[list[int]]:
    """``fresh`` cut into consecutive runs in which no (sample, test) pair repeats."""
    out: list[list[int]] = [[]]
    taken: set[tuple[int, str]] = set()
    for i in fresh:
        if pairs[i] in taken:
            out.append([])
            taken = set()
        out[-1].append(i)
        taken.add(pairs[i])
    return out


def _latest_runs(conn: Connection, analyzer_id: int, pairs: set[tuple[int, str]]
                 ) -> dict[tuple[int, str], int]:
    """The newest stored result of each (sample, test) from this analyzer (one query)."""
    r = s.results
    rows = conn.execute(select(r.c.sample_id, r.c.test_code, func.max(r.c.id).label("id"))
                        .where(r.c.analyzer_id == analyzer_id,
                               r.c.sample_id.in_(sorted({p[0] for p in pairs})),
                               r.c.test_code.in_(sorted({p[1] for p in pairs})))
                        .group_by(r.c.sample_id, r.c.test_code))
    return {(row.sample_id, row.test_code): int(row.id) for row in rows
            if (row.sample_id, row.test_code) in pairs}


def _reception(conn: Connection, message_id: int, session_id: int | None, at: datetime,
               repeat: bool) -> int:
    return int(primary_key(conn.execute(insert(s.message_receptions).values(
        message_id=message_id, raw_session_id=session_id, received_at=at, repeat=repeat)
    ))[0])


def version_from_row(row: Row[Any]) -> ResultVersion:
    """A ``result_versions`` row as a :class:`ResultVersion`."""
    content = ResultContent(
        value_raw=row.value_raw, number=None if row.number is None else Decimal(row.number),
        unit_raw=row.unit_raw, unit_ucum=row.unit_ucum, code=row.code, loinc=row.loinc,
        flags=tuple(json.loads(row.flags)),
        instrument_flags=tuple(json.loads(row.instrument_flags)),
        reference_range=row.reference_range, status=row.status, critical=row.critical,
        problems=tuple(json.loads(row.problems)), mapping_version=row.mapping_version,
        result_time=None if row.result_time is None else as_utc(row.result_time))
    return ResultVersion(row.id, row.result_id, row.version, content, row.reason,
                         row.author, as_utc(row.created_at), row.supersedes_id)


def result_versions(conn: Connection, result_id: int) -> tuple[ResultVersion, ...]:
    """Every version of a result, oldest first."""
    rows = conn.execute(select(s.result_versions).where(
        s.result_versions.c.result_id == result_id).order_by(s.result_versions.c.version))
    return tuple(version_from_row(r) for r in rows)


def _result_query() -> Select[Any]:
    return select(s.results, s.samples.c.accession, s.analyzers.c.name.label("analyzer_name")
                  ).join(s.samples, s.results.c.sample_id == s.samples.c.id
                  ).join(s.analyzers, s.results.c.analyzer_id == s.analyzers.c.id)


def _info(conn: Connection, row: Row[Any]) -> ResultInfo:
    return ResultInfo(row.id, row.analyzer_id, row.accession, row.test_code,
                      row.completed_at_raw, row.message_id, row.rerun_of_id,
                      result_versions(conn, row.id)[-1], row.analyzer_name, bool(row.qc))


def get_result(conn: Connection, result_id: int) -> ResultInfo:
    """A result with its latest version."""
    row = conn.execute(_result_query().where(s.results.c.id == result_id)).first()
    if row is None:
        raise NotFoundError(f"result {result_id}")
    return _info(conn, row)


def list_results(conn: Connection, accession: str | None = None) -> tuple[ResultInfo, ...]:
    """Every result (of one sample when ``accession`` is given), reruns included, oldest first."""
    query = _result_query()
    if accession is not None:
        query = query.where(s.samples.c.accession == accession)
    rows = conn.execute(query.order_by(s.results.c.id)).all()
    return tuple(_info(conn, row) for row in rows)


def results_for_sample(conn: Connection, accession: str) -> tuple[ResultInfo, ...]:
    """Every result of a sample (reruns included), oldest first."""
    return list_results(conn, accession)


def message_problems(conn: Connection, message_id: int) -> tuple[str, ...]:
    """What was off with a stored message itself (no L record, framing deviations)."""
    text = conn.execute(select(s.messages.c.problems).where(
        s.messages.c.id == message_id)).scalar_one_or_none()
    if text is None:
        raise NotFoundError(f"message {message_id}")
    return tuple(json.loads(text))


def message_receptions(conn: Connection, message_id: int) -> tuple[tuple[datetime, bool], ...]:
    """Each arrival of a message: (received_at, repeat)."""
    rows = conn.execute(select(s.message_receptions.c.received_at,
                               s.message_receptions.c.repeat).where(
        s.message_receptions.c.message_id == message_id).order_by(s.message_receptions.c.id))
    return tuple((as_utc(r.received_at), bool(r.repeat)) for r in rows)


def correct_result(conn: Connection, version_id: int, content: ResultContent, *,
                   reason: str, author: str, at: datetime, source: str = "",
                   audit_action: str = "result.correct") -> ResultVersion:
    """Correct a result: insert a new version linked to ``version_id``; never update.

    Args:
        version_id: the latest version, the one being corrected.
        content: the corrected content (``dataclasses.replace`` of the old one).
        reason, author: required, non-empty.
        at: timezone-aware time of the correction.
        source: where the correction came from (for the audit log).
        audit_action: the audit log's action (``result.reprocess`` for a re-mapping).

    Raises:
        StaleVersionError: ``version_id`` is not the latest version.
        NotFoundError: no such version.
        ValueError: empty reason or author.
    """
    if not reason.strip() or not author.strip():
        raise ValueError("a correction needs a reason and an author")
    when = require_aware(at, "at")
    old = conn.execute(select(s.result_versions).where(
        s.result_versions.c.id == version_id)).first()
    if old is None:
        raise NotFoundError(f"result version {version_id}")
    latest = conn.execute(select(func.max(s.result_versions.c.version)).where(
        s.result_versions.c.result_id == old.result_id)).scalar_one()
    if latest != old.version:
        raise StaleVersionError(f"version {version_id} was already corrected")
    try:
        with conn.begin_nested():
            pk = primary_key(conn.execute(insert(s.result_versions).values(
                result_id=old.result_id, version=old.version + 1, reason=reason,
                author=author, created_at=when, supersedes_id=old.id,
                **_content_values(content))))
    except IntegrityError as exc:  # a concurrent correction won the race
        raise StaleVersionError(f"version {version_id} was already corrected") from exc
    new = version_from_row(conn.execute(select(s.result_versions).where(
        s.result_versions.c.id == pk[0])).one())
    append_audit(conn, actor=author, action=audit_action, target=f"result:{old.result_id}",
                 detail={"from_version": old.version, "to_version": new.version,
                         "reason": reason}, source=source, at=when)
    return new
