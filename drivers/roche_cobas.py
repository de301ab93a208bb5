"""roche-cobas: Roche cobas c 111, c 311, c 501/502 and e 411/e 601 ("cobas" host format).

What differs from generic ASTM (sources: the cobas c 111 Host Interface Manual
v2.1, the cobas c 311 Host Interface Manual v1.3 and the cobas e 411 Host
Interface Manual v2.3, all public; the corpus captures roche_1..6):

* **Sample ID.** O-3, trimmed: the c 311 sends it right-aligned and
  space-padded (``"               28987-S"``). The c 111 leaves O-3 empty and
  sends ``<sample ID>^^<position>`` in O-4, with spaces *inside* the ID
  (``T20 10134GA D28``), which are kept. A c 311 in its native layout sends
  ``<sample no.>^<sample ID, left-aligned>^...`` in O-3; the ID is then the
  second component. Never a rack or position number.
* **Test code.** R-3 component 4 is the application code with a dilution
  suffix after ``/`` (``^^^685/`` gives ``685``).
* **Data alarms** come as ``C|1|I|<code>|I`` after the R record they belong to
  (``43``, ``0`` = none). They are comments, never results: see :func:`data_alarms`.
* **H-11** says what the message is: ``RSUPL^REAL`` (automatic upload),
  ``RSUPL^BATCH`` (an operator re-sent results), ``TSREQ^REAL`` (host query).
* **Host query** (:func:`read_queries`): the e 411 asks with a Q record after
  reading a barcode and cancels with Q-13 = ``A`` if no answer has started
  within 15 s. The answer must echo sequence, carrier and position unchanged:
  :func:`reply_style` answers in the query's own format, ``TSDWN^REPLY``
  (O-3 the barcode, O-4 the keys, O-12 ``A``, O-26 ``O``, ``L|1|N``; no order
  = an O without tests) or the disk/Elecsys form (empty H, O-26 ``Q`` or
  ``Z``, ``L|1|``), as the e 411 manual's examples write them (corpus
  roche_5, roche_6). The per-test dilution component of O-5 (``^^^30^2``)
  is left empty: the HIS order carries no dilution.
* **Receiver timeout** 15 s, as the Roche manuals state.
* **QC** runs carry O-12 = ``Q`` (``X\\Q`` in the e 411 Elecsys format) or
  sample type ``QC``/``CONTROL`` in O-4.
"""

from __future__ import annotations

from dataclasses import dataclass

from lis_gateway.astm.assembler import AstmMessage
from lis_gateway.astm.delimiters import Delimiters
from lis_gateway.astm.host_query import COBAS_TSDWN, ELECSYS_DISK, ReplyStyle
from lis_gateway.astm.records import (
    CommentRecord,
    HeaderRecord,
    OrderRecord,
    QueryRecord,
    ResultRecord,
)

from . import _astm_generic
from ._context import ResultContext
from ._spec import DriverSpec, QueryStyle, SerialDefaults

#: Roche: "the receiver waits 15 s for the next frame" (e 411 / c 311 manuals).
RECEIVE_TIMEOUT = 15.0

#: The host must start its answer to a query within this many seconds, or the e 411
#: cancels the query (it sends the same Q with Q-13 = A).
QUERY_DEADLINE = 15.0

_QC_SAMPLE_TYPES = frozenset({"QC", "CONTROL"})


def sample_id(ctx: ResultContext) -> str:
    """O-3 (trimmed; second component in the c 311 native layout), else O-4 component 1."""
    order = ctx.order
    if order is None:
        return ""
    comps = ctx.delimiters.components(order.specimen_id)
    first = comps[0].strip()
    second = comps[1].strip() if len(comps) > 1 else ""
    if second and (not first or first.isdigit()):
        # c 311 native layout: <sample no.>^<sample ID>^<count>^^<daily no.>
        return second
    if first:
        return first
    return ctx.delimiters.components(order.instrument_specimen_id)[0].strip()


def test_code(ctx: ResultContext) -> str:
    """R-3 component 4 without its ``/dilution`` suffix (``685/`` gives ``685``)."""
    comps = ctx.delimiters.components(ctx.result.universal_test_id)
    if len(comps) >= 4:
        code = comps[3].split("/", 1)[0].strip()
        if code:
            return code
    return _astm_generic.test_code(ctx)


def is_qc(message: object) -> bool:
    """A control run: O-12 contains ``Q``, or the O-4 sample type is ``QC``/``CONTROL``."""
    if not isinstance(message, AstmMessage):
        return False
    delims = message.decoded.delimiters
    for rec in message.decoded.records:
        if not isinstance(rec, OrderRecord):
            continue
        if "Q" in (r.strip() for r in delims.repeats(rec.action_code)):
            return True
        comps = delims.components(rec.instrument_specimen_id)
        if len(comps) > 4 and comps[4].strip().upper() in _QC_SAMPLE_TYPES:
            return True
    return False


def message_kind(message: AstmMessage) -> tuple[str, str]:
    """H-11 as (meaning, cause): ``("RSUPL", "BATCH")``; empty strings when absent."""
    for rec in message.decoded.records:
        if isinstance(rec, HeaderRecord):
            comps = message.decoded.delimiters.components(rec.comment)
            meaning = comps[0].strip().upper()
            cause = comps[1].strip().upper() if len(comps) > 1 else ""
            return meaning, cause
    return "", ""


def data_alarms(message: AstmMessage) -> dict[int, tuple[str, ...]]:
    """Roche data alarm codes per result record.

    Returns:
        ``{index of the R record in message.decoded.records: codes}`` for every
        R followed by instrument comments (``C|n|I|<code>^<text>\\...|I``) that
        carry a code other than ``0``. ``ResultRow.record_index`` is the same index.
    """
    delims = message.decoded.delimiters
    alarms: dict[int, list[str]] = {}
    current: int | None = None
    for index, rec in enumerate(message.decoded.records):
        if isinstance(rec, ResultRecord):
            current = index
        elif isinstance(rec, CommentRecord) and current is not None:
            if rec.source.strip() != "I":
                continue
            for rep in delims.repeats(rec.text):
                code = delims.components(rep)[0].strip()
                if code and code != "0":
                    alarms.setdefault(current, []).append(code)
        else:
            current = None
    return {k: tuple(v) for k, v in alarms.items()}


@dataclass(frozen=True, slots=True)
class RocheQuery:
    """One host query (Q record) of a cobas analyzer.

    Attributes:
        sample_id: the barcode read, trimmed (``@<sequence>`` when the read failed).
        sequence, carrier, position: the analyzer's keys, as received; echo them unchanged.
        sample_type: ``S1`` ... ``S5`` (cobas format) or ``SAMPLE`` (Elecsys format).
        container: ``SC``/``MC`` (cobas) or ``NORMAL``/``REDUCED`` (Elecsys).
        cancel: Q-13 = ``A``: the analyzer gave up waiting (15 s) and cancels.
        layout: ``"cobas"`` (``^^id^seq^...``) or ``"elecsys"`` (``^id^seq^...``).
    """

    sample_id: str
    sequence: str
    carrier: str
    position: str
    sample_type: str
    container: str
    cancel: bool
    layout: str

    @property
    def barcode_failed(self) -> bool:
        """The analyzer could not read the barcode and made the ID up (``@<sequence>``)."""
        return self.sample_id.startswith("@")

    def instrument_specimen_id(self, delimiters: Delimiters) -> str:
        """O-4 of the answer: ``seq^carrier^position^^type^container``, as received."""
        return delimiters.build_field([[self.sequence, self.carrier, self.position, "",
                                        self.sample_type, self.container]])


def read_queries(message: AstmMessage) -> list[RocheQuery]:
    """The Q records of a query message (TSREQ), in order.

    The cobas format (H-11 ``TSREQ^REAL``) writes Q-3 as
    ``^^id^seq^carrier^pos^^type^container``, the Elecsys format as
    ``^id^seq^carrier^pos^^type^container``. Without H-11 the number of
    components decides (9 = cobas, 8 = Elecsys).
    """
    delims = message.decoded.delimiters
    meaning, _ = message_kind(message)
    out: list[RocheQuery] = []
    for rec in message.decoded.records:
        if not isinstance(rec, QueryRecord):
            continue
        comps = delims.components(rec.starting_range)
        cobas = meaning == "TSREQ" or (not meaning and len(comps) >= 9)
        start = 2 if cobas else 1
        fields = comps[start:] + [""] * 7
        # the keys are kept exactly as received: the answer must echo them unchanged
        out.append(RocheQuery(
            sample_id=fields[0].strip(), sequence=fields[1], carrier=fields[2],
            position=fields[3],
            sample_type=fields[5], container=fields[6],
            cancel=rec.status_code.strip().upper() == "A",
            layout="cobas" if cobas else "elecsys",
        ))
    return out


def reply_style(message: AstmMessage) -> ReplyStyle:
    """Answer in the query's own format: ``TSDWN^REPLY`` to the cobas form, else the disk form."""
    queries = read_queries(message)
    if queries and queries[0].layout == "elecsys":
        return ELECSYS_DISK
    return COBAS_TSDWN


SPEC = DriverSpec(
    completed_at=_astm_generic.completed_or_started_at,
    name="roche-cobas",
    description="Roche cobas c 111/c 311/c 501/e 411/e 601 (ASTM, cobas host format)",
    sample_id=sample_id,
    test_code=test_code,
    serial=SerialDefaults(baudrate=9600, bytesize=8, parity="N", stopbits=1),
    receive_timeout=RECEIVE_TIMEOUT,
    is_qc=is_qc,
    query_style=QueryStyle.ASTM_Q,
    astm_reply=reply_style,
    default_status="F",
    models="cobas c 111, cobas c 311, cobas c 501/502 (cobas 6000), cobas e 411, cobas e 601",
    tested_with="corpus roche_1 (c 111), roche_2/roche_3 (c 311), roche_4 (c 111, bad checksum), "
                "roche_5/roche_6 (e 411 host query trace, built into frames)",
)
