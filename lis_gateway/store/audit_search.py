"""Searching the audit log by patient, sample, user and time (SQL only here).

"Who viewed or changed this patient's results?" A patient is found by an
identifier (hospital ID, national ID or insurance card, exactly) or by part
of the name (case and Unicode form ignored); their samples give the audit
rows *about* them: the rows whose target is one of the samples, their
results, result versions, outbox entries, downloads or order messages, and
the rows whose detail names one of the barcodes (a worklist view lists the
barcodes it showed). A user search finds what the user did and what was
done to their account. Times bound the rows (the log keeps UTC ISO text,
which sorts like the times it names).

Read-only; the page that calls it audits the search itself.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, or_, select

from lis_gateway.store import schema as s
from lis_gateway.store._common import require_aware
from lis_gateway.store.audit import AuditEntry

#: The most samples one search follows (a patient with more is reported as cut).
MAX_SAMPLES = 200
#: The most rows one search returns (newest first).
MAX_ROWS = 500


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """What to look for; empty fields are not used.

    Attributes:
        patient: an identifier (exact) or part of a patient's name.
        sample: a barcode (exact).
        user: a user name (exact): what they did, and what was done to their account.
        since, until: the time range (``since`` included, ``until`` excluded).
        limit: the most rows returned.
    """

    patient: str = ""
    sample: str = ""
    user: str = ""
    since: datetime | None = None
    until: datetime | None = None
    limit: int = MAX_ROWS

    @property
    def empty(self) -> bool:
        """Nothing to look for."""
        return not (self.patient or self.sample or self.user or self.since or self.until)


@dataclass(frozen=True, slots=True)
class PatientSample:
    """One sample a patient search matched, with whose it is."""

    accession: str
    name: str
    hospital_id: str


@dataclass(frozen=True, slots=True)
class AuditFound:
    """The rows found, newest first, and what the patient and sample criteria matched.

    Attributes:
        entries: the audit rows, newest first.
        samples: the samples followed (for a patient or sample search).
        more: there were more rows (or samples) than shown.
    """

    entries: tuple[AuditEntry, ...]
    samples: tuple[PatientSample, ...]
    more: bool


def _fold(text: str) -> str:
    return unicodedata.normalize("NFC", text).casefold().strip()


def _name(row: object) -> str:
    parts = (getattr(row, "family_name", ""), getattr(row, "middle_name", ""),
             getattr(row, "given_name", ""))
    return " ".join(p for p in parts if p)


def patient_samples(conn: Connection, patient: str, *, limit: int = MAX_SAMPLES
                    ) -> tuple[PatientSample, ...]:
    """The samples of the patients an identifier or part of a name matches, newest first.

    The name is compared in Python (NFC, case-folded) so Vietnamese letters
    match whatever the database's collation does.
    """
    smp = s.samples
    wanted = patient.strip()
    if not wanted:
        return ()
    columns = (smp.c.id, smp.c.accession, smp.c.hospital_id, smp.c.family_name,
               smp.c.middle_name, smp.c.given_name)
    exact = conn.execute(select(*columns).where(or_(
        smp.c.hospital_id == wanted, smp.c.national_id == wanted,
        smp.c.insurance_card == wanted))).all()
    folded = _fold(wanted)
    named = [row for row in conn.execute(select(*columns).where(or_(
        smp.c.family_name != "", smp.c.given_name != ""))).all()
        if folded in _fold(_name(row))]
    rows = {row.id: row for row in (*exact, *named)}
    ordered = sorted(rows.values(), key=lambda r: -r.id)[:limit + 1]
    return tuple(PatientSample(r.accession, _name(r), r.hospital_id or "") for r in ordered)


def targets_of(conn: Connection, accessions: Sequence[str]) -> list[str]:
    """Every audit target that is about these samples."""
    if not accessions:
        return []
    smp, r, v, o, d, orders = (s.samples, s.results, s.result_versions, s.outbox,
                               s.downloads, s.orders)
    sample_ids = select(smp.c.id).where(smp.c.accession.in_(list(accessions)))
    result_ids = select(r.c.id).where(r.c.sample_id.in_(sample_ids))
    out = [f"sample:{a}" for a in accessions]
    out += [f"result:{i}" for i in conn.execute(result_ids).scalars()]
    out += [f"result_version:{i}" for i in conn.execute(
        select(v.c.id).where(v.c.result_id.in_(result_ids))).scalars()]
    out += [f"outbox:{i}" for i in conn.execute(
        select(o.c.id).where(o.c.sample_id.in_(sample_ids))).scalars()]
    out += [f"download:{i}" for i in conn.execute(
        select(d.c.id).where(d.c.accession.in_(list(accessions)))).scalars()]
    out += [f"order-message:{i}" for i in conn.execute(
        select(orders.c.order_message_id).where(orders.c.sample_id.in_(sample_ids),
                                                orders.c.order_message_id.is_not(None))
        .distinct()).scalars()]
    return out


def _about(conn: Connection, accessions: Sequence[str]) -> ColumnElement[bool]:
    log = s.audit_log
    return or_(log.c.target.in_(targets_of(conn, accessions)),
               *(log.c.detail.contains(f'"{a}"', autoescape=True) for a in accessions))


def search_audit(conn: Connection, query: AuditQuery) -> AuditFound:
    """The audit rows matching every criterion given, newest first."""
    log = s.audit_log
    conditions: list[ColumnElement[bool]] = []
    samples: tuple[PatientSample, ...] = ()
    more = False
    if query.patient or query.sample:
        if query.patient:
            samples = patient_samples(conn, query.patient)
            more = len(samples) > MAX_SAMPLES
            samples = samples[:MAX_SAMPLES]
            if query.sample:
                samples = tuple(p for p in samples if p.accession == query.sample.strip())
        else:
            samples = (PatientSample(query.sample.strip(), "", ""),)
        if not samples:
            return AuditFound((), (), False)
        conditions.append(_about(conn, [p.accession for p in samples]))
    if query.user:
        user = query.user.strip()
        conditions.append(or_(log.c.actor == user, log.c.target == f"user:{user}"))
    if query.since is not None:
        conditions.append(log.c.at >= require_aware(query.since, "since").isoformat())
    if query.until is not None:
        conditions.append(log.c.at < require_aware(query.until, "until").isoformat())
    rows = conn.execute(select(log).where(*conditions).order_by(log.c.seq.desc())
                        .limit(query.limit + 1)).all()
    entries = tuple(AuditEntry(r.id, r.seq, r.at, r.actor, r.action, r.target, r.detail,
                               r.source, r.prev_hash, r.hash) for r in rows[:query.limit])
    return AuditFound(entries, samples, more or len(rows) > query.limit)
