"""A sample's patient taken from the analyzer's own record (SQL only here).

Only for analyzers configured ``unsolicited = true``: their results need no
HIS order, and the patient comes from the P record (ASTM) or PID (HL7) the
analyzer sent. It is marked ``patient_source = "analyzer"`` with the
analyzer's name, so every reader (the ORU^R01's PID-3, FHIR, the web app)
can say where it came from. The first analyzer to give a patient wins; an
HIS order always replaces it (:mod:`lis_gateway.store.orders`). Nothing here
logs: these are patient data.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Connection, select, update

from drivers import AnalyzerPatient
from lis_gateway.store import schema as s
from lis_gateway.store.audit import append_audit

#: ``samples.patient_source`` of a patient taken from an analyzer's record.
ANALYZER = "analyzer"

#: The sample columns an analyzer's record fills (an HIS order clears them first).
ANALYZER_FIELDS = ("hospital_id", "family_name", "middle_name", "given_name", "birth_date",
                   "sex", "patient_analyzer")


def birth_date(text: str) -> date | None:
    """YYYYMMDD (anything after it ignored); None when it is not a real date."""
    digits = text.strip()[:8]
    if len(digits) != 8 or not digits.isdigit():
        return None
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return None


def adopt_analyzer_patient(conn: Connection, accession: str, analyzer: str,
                           patient: AnalyzerPatient, at: datetime) -> bool:
    """Fill a sample's patient from ``analyzer``'s record if it has none yet.

    Returns:
        True when the sample took this patient; False when it already has one
        (from an HIS order or another analyzer) or is unknown.
    """
    row = conn.execute(select(s.samples.c.id, s.samples.c.patient_source).where(
        s.samples.c.accession == accession)).first()
    if row is None or row.patient_source:
        return False
    conn.execute(update(s.samples).where(s.samples.c.id == row.id).values(
        patient_source=ANALYZER, patient_analyzer=analyzer,
        hospital_id=patient.patient_id or None, family_name=patient.family_name,
        middle_name=patient.middle_name, given_name=patient.given_name,
        birth_date=birth_date(patient.birth_date), sex=patient.sex))
    append_audit(conn, actor=f"analyzer:{analyzer}", action="sample.patient-from-analyzer",
                 target=f"sample:{accession}", detail={"analyzer": analyzer},
                 source="ingest", at=at)
    return True
