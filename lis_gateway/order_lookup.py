"""Host queries answered from the HIS's orders: the store's orders in an analyzer's codes.

:class:`StoreOrderSource` is the ``OrderSource`` of an HL7 analyzer link
(Mindray QRY^Q02, IHE LAW QBP^Q11). For each barcode asked about it reads
the active orders and the patient from the store (off the reactor thread)
and translates each ordered local test code into this analyzer's code
through its mapping table (the reverse of result mapping). Tests the table
does not map are not this analyzer's and are left out; a barcode with no
test left is "not found", which the query answer says correctly (NF).
Names are passed as stored: builders for 7-bit analyzers fold diacritics
(:func:`lis_gateway.hl7.queries.ascii_fold`); the store keeps the original.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

from sqlalchemy import Connection
from twisted.internet.defer import Deferred

from lis_gateway.hl7.datatypes import HierarchicDesignator
from lis_gateway.hl7.patient import PatientIdentity, Sex
from lis_gateway.hl7.queries import OrderedSample, Priority
from lis_gateway.ingest import RunsWork
from lis_gateway.mapping import MappingTable
from lis_gateway.store.orders import SampleOrder, sample_orders


def analyzer_codes(table: MappingTable | None) -> dict[str, tuple[str, str]]:
    """local code -> (analyzer code, name) from a mapping table (first row wins)."""
    out: dict[str, tuple[str, str]] = {}
    for entry in (table.entries.values() if table is not None else ()):
        if entry.local_code and entry.local_code not in out:
            out[entry.local_code] = (entry.analyzer_code, entry.name_en or entry.name_vi)
    return out


def ordered_sample(order: SampleOrder, codes: Mapping[str, tuple[str, str]],
                   hospital: HierarchicDesignator | None = None) -> OrderedSample | None:
    """The tube as this analyzer should see it, or None when none of its tests is ordered."""
    # each test once, even when two placer orders ask for it
    tests = tuple(dict.fromkeys(codes[t.test_code] for t in order.tests if t.test_code in codes))
    if not tests:
        return None
    patient = PatientIdentity(
        hospital_id=order.hospital_id, hospital=hospital if order.hospital_id else None,
        national_id=order.national_id, insurance_card=order.insurance_card,
        family_name=order.family_name, middle_name=order.middle_name,
        given_name=order.given_name, birth_date=order.birth_date,
        sex=Sex.from_code(order.sex))
    stat = any(t.priority == "S" for t in order.tests if t.test_code in codes)
    return OrderedSample(order.accession, tests, patient,
                         priority=Priority.STAT if stat else Priority.ROUTINE,
                         collected_at=order.collected_at)


def _find(conn: Connection, sample_ids: tuple[str, ...], codes: Mapping[str, tuple[str, str]],
          hospital: HierarchicDesignator | None) -> list[OrderedSample]:
    found = (ordered_sample(o, codes, hospital) for o in sample_orders(conn, sample_ids))
    return [sample for sample in found if sample is not None]


class StoreOrderSource:
    """Looks host queries up in the store; see the module docstring.

    Args:
        pool: runs the lookup off the reactor thread.
        table: the analyzer's mapping table (None: no test is this analyzer's).
        hospital: PID-3 CX.4 of hospital patient IDs.
    """

    def __init__(self, pool: RunsWork, table: MappingTable | None,
                 hospital: HierarchicDesignator | None = None) -> None:
        self._pool, self._codes, self._hospital = pool, analyzer_codes(table), hospital

    def find(self, sample_ids: tuple[str, ...]) -> Deferred[Sequence[OrderedSample]]:
        """The ordered samples among ``sample_ids`` (empty when none is known)."""
        d = self._pool.run(_find, sample_ids, self._codes, self._hospital)
        return cast("Deferred[Sequence[OrderedSample]]", d)
