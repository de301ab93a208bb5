"""ASTM host queries (LIS2-A2 Q records) and the gateway's reply (sans-IO).

The flow (protocols.md §2.4): the analyzer sends ``H, Q|1|^<specimen>...||ALL
...|O, L`` in its own session; after its EOT the gateway bids and sends

* found: ``H, P, O (O-5 the tests, O-26 = Q), L|1|F``, one P/O pair per
  sample, the O-3 specimen field echoing the analyzer's Q-3 components from
  the specimen on (sequence, rack, position: some analyzers skip the sample
  when they change);
* nothing found: ``H, L|1|I`` ("no information available from last query").

Vendor variants (the cobas e 411 ``TSDWN^REPLY`` header, O-26 = Z or an
empty O) are not built yet; this is the LIS2-A2 form. A Q-13 of ``A`` is the
analyzer cancelling its last request and asks for no reply.

Names and text are written in the link's encoding; what it cannot carry is
folded to bare letters (``Nguyễn`` -> ``Nguyen``), the store keeps the
original.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from lis_gateway.text import strip_diacritics

from .assembler import AstmMessage
from .codec import encode_message
from .delimiters import DEFAULT, Delimiters
from .records import HeaderRecord, OrderRecord, PatientRecord, QueryRecord, TerminatorRecord


@dataclass(frozen=True, slots=True)
class HostQuery:
    """One Q record asking for the orders of one sample.

    Attributes:
        barcode: the specimen ID: the first non-empty Q-3 component after the
            patient ID (component 2 in LIS2-A2, 3 in the cobas TSREQ form), else
            component 1.
        specimen_field: Q-3 components from the specimen on, as sent (echoed in O-3).
    """

    barcode: str
    specimen_field: str


@dataclass(frozen=True, slots=True)
class ReplySample:
    """What the gateway knows of one queried sample (from the HIS's orders)."""

    barcode: str
    tests: tuple[str, ...]  #: this analyzer's test codes
    stat: bool = False
    patient_id: str = ""  #: P-3, the hospital patient code
    family_name: str = ""
    given_name: str = ""
    middle_name: str = ""
    birth_date: str = ""  #: YYYYMMDD
    sex: str = ""  #: M, F or U


def host_queries(msg: AstmMessage) -> list[HostQuery]:
    """The sample requests in a received message (none for results, or a cancel)."""
    out: list[HostQuery] = []
    delims = msg.decoded.delimiters
    for record in msg.decoded.records:
        if not isinstance(record, QueryRecord) or record.status_code.upper() == "A":
            continue
        parts = record.starting_range.split(delims.component)
        # the specimen is the first non-empty component after the patient ID:
        # ^SPEC^seq^rack (LIS2-A2, Elecsys), ^^SPEC^seq^rack (cobas TSREQ)
        at = next((i for i in range(1, len(parts)) if parts[i].strip()), 0)
        barcode = parts[at].strip()
        if barcode and barcode.upper() != "ALL":
            out.append(HostQuery(barcode, delims.component.join(parts[at:])))
    return out


def fold(text: str, encoding: str) -> str:
    """``text`` if ``encoding`` can carry it, else without diacritics."""
    try:
        text.encode(encoding)
        return text
    except UnicodeEncodeError:
        return strip_diacritics(text).encode(encoding, "replace").decode(encoding)


def _safe(text: str, delims: Delimiters, encoding: str) -> str:
    return delims.escape_text(fold(text, encoding))


def _header(now: datetime, sender: str) -> HeaderRecord:
    return HeaderRecord(sender_id=sender, processing_id="P", version="LIS2-A2",
                        timestamp=now.strftime("%Y%m%d%H%M%S"))


def build_error_reply(*, now: datetime, encoding: str = "latin-1",
                      sender: str = "LIS-GATEWAY") -> bytes:
    """``H, L|1|Q``: "error in last request for information" (the lookup failed)."""
    return encode_message([_header(now, sender), TerminatorRecord(sequence="1",
                                                                  termination_code="Q")],
                          encoding=encoding)


def _sample_records(number: int, specimen_field: str, sample: ReplySample, *,
                    action: str, report_type: str, stamp: str, delimiters: Delimiters,
                    encoding: str) -> tuple[PatientRecord, OrderRecord]:
    """The P and O records of one sample (P-2 = ``number``)."""
    d = delimiters
    name = d.component.join(_safe(p, d, encoding) for p in (
        sample.family_name, sample.given_name, sample.middle_name)).rstrip(d.component)
    tests = d.repeat.join(f"{d.component * 3}{_safe(t, d, encoding)}" for t in sample.tests)
    return (PatientRecord(sequence=str(number),
                          practice_patient_id=_safe(sample.patient_id, d, encoding),
                          name=name, birthdate=sample.birth_date, sex=sample.sex),
            OrderRecord(sequence="1", specimen_id=specimen_field, universal_test_id=tests,
                        priority="S" if sample.stat else "R", requested_at=stamp,
                        action_code=action, report_type=report_type))


def build_reply(queries: Sequence[HostQuery], found: Mapping[str, ReplySample], *,
                now: datetime, encoding: str = "latin-1", sender: str = "LIS-GATEWAY",
                delimiters: Delimiters = DEFAULT) -> bytes:
    """The reply message to ``queries`` (records ending in CR, not framed)."""
    stamp = now.strftime("%Y%m%d%H%M%S")
    records: list[HeaderRecord | PatientRecord | OrderRecord | TerminatorRecord] = [
        _header(now, sender)]
    number = 0
    for query in queries:
        sample = found.get(query.barcode)
        if sample is None or not sample.tests:
            continue
        number += 1
        records.extend(_sample_records(number, query.specimen_field, sample, action="N",
                                       report_type="Q", stamp=stamp, delimiters=delimiters,
                                       encoding=encoding))
    records.append(TerminatorRecord(sequence="1", termination_code="F" if number else "I"))
    return encode_message(records, delimiters, encoding)


#: O-12 action codes of a download (LIS2-A2 8.4.12).
ACTION_NEW = "N"  #: new requests accompanying a new specimen
ACTION_ADD = "A"  #: add the requested tests to an existing specimen (also: a rerun)
ACTION_CANCEL = "C"  #: cancel the request


def build_download(samples: Sequence[tuple[ReplySample, str]], *, now: datetime,
                   encoding: str = "latin-1", sender: str = "LIS-GATEWAY",
                   delimiters: Delimiters = DEFAULT) -> bytes:
    """Work pushed to an analyzer unasked: ``H``, a ``P``/``O`` pair per sample, ``L|1|N``.

    Each sample comes with its O-12 action code (:data:`ACTION_NEW`,
    :data:`ACTION_ADD`, :data:`ACTION_CANCEL`); O-26 is ``O`` (an order),
    O-3 the barcode.

    Raises:
        ValueError: no sample, a sample with no test, or an unknown action code.
    """
    if not samples:
        raise ValueError("a download needs at least one sample")
    stamp = now.strftime("%Y%m%d%H%M%S")
    records: list[HeaderRecord | PatientRecord | OrderRecord | TerminatorRecord] = [
        _header(now, sender)]
    for number, (sample, action) in enumerate(samples, start=1):
        if not sample.tests:
            raise ValueError(f"sample {sample.barcode!r} has no test to download")
        if action not in (ACTION_NEW, ACTION_ADD, ACTION_CANCEL):
            raise ValueError(f"unknown O-12 action code {action!r}")
        records.extend(_sample_records(number, delimiters.escape_text(sample.barcode), sample,
                                       action=action, report_type="O", stamp=stamp,
                                       delimiters=delimiters, encoding=encoding))
    records.append(TerminatorRecord(sequence="1", termination_code="N"))
    return encode_message(records, delimiters, encoding)
