"""Answering analyzer host queries, sans-IO.

An analyzer that reads a barcode asks the gateway for the tube's work:

* Mindray (v2.3.1): QRY^Q02, answered with QCK^Q02 (``QAK|SR|OK`` or ``NF``)
  and, when orders exist, one DSR^Q03 per sample (the analyzer answers each
  DSR with ACK^Q03);
* IHE LAW LAB-27 (v2.5.1): QBP^Q11, answered with RSP^K11 (``QAK|<tag>|OK``
  or ``NF``) and, when orders exist, one OML^O33 per sample (LAB-28; the
  analyzer answers ORL^O34);
* Mindray BC haematology (v2.3.1): ORM^O01 with ORC-1 ``RF`` (a worklist
  request), answered with one ORR^O02 (``MSA|AA`` with the order and the run
  settings, or ``MSA|AR`` alone); see :mod:`.worklist`. Any other ORM^O01 is
  data, acknowledged as usual.

Where no order exists the analyzer gets the "not found" answer, never
silence. Messages that are themselves answers (ACK, ORL, ...) are not
acknowledged: acknowledging an acknowledgement makes some analyzers loop.

Which samples exist is not known here: the adapter looks the keys up
(:attr:`PendingQuery.keys`) in whatever order source it is given and calls
:func:`build_answers` with what it found.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from .datatypes import MessageRoute
from .law import WorkOrderQuery, build_oml_o33, build_rsp_k11, parse_qbp_q11
from .message import Hl7Message
from .queries import (
    OrderedSample,
    SampleQuery,
    SampleQueryKind,
    build_dsr_q03_batch,
    build_qck_q02,
    parse_qry_q02,
)
from .worklist import (
    WorklistRequest,
    answer_for,
    build_orr_o02,
    is_worklist_request,
    parse_orm_o01,
)

#: Message types that are answers: never acknowledged.
RESPONSE_TYPES = frozenset({"ACK", "ORL", "RSP", "QCK"})
#: Query message types we answer (and ORM^O01 when it is a worklist request).
QUERY_TYPES = frozenset({"QRY^Q02", "QBP^Q11"})


class MessageRole(enum.Enum):
    """How the gateway treats a received message."""

    DATA = "data"  #: results and anything else: stored, then acknowledged
    QUERY = "query"  #: a host query: stored, then answered
    RESPONSE = "response"  #: an answer to something we sent: stored, not acknowledged


def role_of(msg: Hl7Message) -> MessageRole:
    """Classify a received message by MSH-9 (and ORC-1 for ORM^O01)."""
    mtype = msg.message_type
    if mtype in QUERY_TYPES or is_worklist_request(msg):
        return MessageRole.QUERY
    if mtype.split("^", 1)[0] in RESPONSE_TYPES:
        return MessageRole.RESPONSE
    return MessageRole.DATA


@dataclass(frozen=True, slots=True)
class PendingQuery:
    """A host query waiting for the order lookup.

    Attributes:
        keys: the sample IDs (barcodes) to look up; empty when the query asks
            for something the gateway cannot look up (the answer is then NF).
        mindray: the parsed QRY^Q02, or None.
        law: the parsed QBP^Q11, or None.
        worklist: the parsed Mindray BC ORM^O01 worklist request, or None.
    """

    keys: tuple[str, ...]
    mindray: SampleQuery | None = None
    law: WorkOrderQuery | None = None
    worklist: WorklistRequest | None = None


def read_query(msg: Hl7Message) -> PendingQuery:
    """Parse a QRY^Q02, QBP^Q11 or ORM^O01 worklist request into what must be looked up.

    Mindray sample-ID and time ranges refer to the analyzer's own run numbers
    and clock, which the gateway does not track: they are answered NF.
    """
    if msg.message_type == "QBP^Q11":
        law = parse_qbp_q11(msg)
        return PendingQuery((law.specimen_id,) if law.specimen_id else (), law=law)
    if msg.message_type == "ORM^O01":
        request = parse_orm_o01(msg)
        keys = (request.sample_id,) if request.sample_id and not request.problems else ()
        return PendingQuery(keys, worklist=request)
    query = parse_qry_q02(msg)
    keys = (query.barcode,) if query.kind is SampleQueryKind.BARCODE else ()
    return PendingQuery(keys, mindray=query)


def build_answers(pending: PendingQuery, samples: Sequence[OrderedSample], *,
                  control_ids: Callable[[], str], now: datetime,
                  route: MessageRoute | None = None) -> list[bytes]:
    """The messages that answer a query, in sending order.

    Args:
        pending: the query.
        samples: the ordered samples found for its keys (empty: not found).
        control_ids: gives MSH-10 of each message built.
        now: MSH-7.
        route: our sending application/facility for LAW messages (default:
            the query's route reversed).

    Returns:
        QCK^Q02 then DSR^Q03s (Mindray QRY), RSP^K11 then OML^O33s (LAW), or the
        one ORR^O02 (Mindray BC worklist request).
    """
    if pending.worklist is not None:
        request = pending.worklist
        return [build_orr_o02(request, answer_for(request, samples), control_id=control_ids(),
                              now=now)]
    if pending.law is not None:
        law = pending.law
        found = bool(samples) and not law.problems
        answers = [build_rsp_k11(law, found=found, control_id=control_ids(), now=now,
                                 route=route)]
        if found:
            reply_route = route or law.route.reply()
            answers += [build_oml_o33(s, route=reply_route, control_id=control_ids(), now=now)
                        for s in samples]
        return answers
    if pending.mindray is None:
        return []
    query = pending.mindray
    found = bool(samples) and not query.problems
    answers = [build_qck_q02(query, found=found, control_id=control_ids(), now=now)]
    if found:
        answers += build_dsr_q03_batch(samples, query=query,
                                       control_ids=[control_ids() for _ in samples], now=now)
    return answers
