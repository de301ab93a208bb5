"""The HIS's order link: ORM^O01 / OML^O21 over MLLP into the store.

An :class:`OrderSink` plugs into the same MLLP server protocol as an HL7
analyzer link, so the HIS gets the same guarantees: strict order, and the
AA only after the order message and its orders are committed. A message
that cannot be applied (no barcode, no patient identifier, unknown order
control, not an order) is kept with its problems and answered AR with them,
so the HIS's operators see why; a database failure is answered AE and the
HIS sends it again. Logs carry counts and ids, never patient data.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import cast

import structlog
from structlog.typing import FilteringBoundLogger
from twisted.internet.defer import Deferred

from lis_gateway.adapters.mllp_protocol import MessageRejectedError
from lis_gateway.astm.assembler import AstmMessage, IncompleteTransmission
from lis_gateway.astm.events import AbortReason
from lis_gateway.hl7.message import Hl7Message
from lis_gateway.hl7.orders_in import parse_order_message
from lis_gateway.ingest import RunsWork, store_incomplete
from lis_gateway.store.orders import StoredOrders, store_order_message

#: HL7 table 0357: required field missing (what most refusals are).
REQUIRED_FIELD_MISSING = "101"
#: The analyzer-table name the order link's wire recordings are kept under.
ORDER_LINK_NAME = "his-orders"


class OrderSink:
    """Stores what the HIS orders; see the module docstring.

    Args:
        pool: runs the store work in a transaction off the reactor thread.
        zone: the HIS clock's time zone (for times sent without an offset).
        source: where the orders come from, for the audit log.
        utcnow: the wall clock for ``received_at``.
        log: a logger.
        download_to: analyzers that take pushed work -> the local codes they do
            (their orders are queued for download in the order's transaction).
    """

    def __init__(self, pool: RunsWork, *, zone: str = "Asia/Ho_Chi_Minh",
                 source: str = ORDER_LINK_NAME,
                 utcnow: Callable[[], datetime] = lambda: datetime.now(UTC),
                 log: FilteringBoundLogger | None = None,
                 download_to: Mapping[str, Collection[str]] | None = None) -> None:
        self._pool, self._zone, self._source, self._utcnow = pool, zone, source, utcnow
        self._download_to = download_to
        self._log: FilteringBoundLogger = (
            log if log is not None else structlog.get_logger("lis_gateway.orders"))

    def message_received(self, msg: AstmMessage | Hl7Message) -> Deferred[object]:
        """Keep and apply the order message; AA after the commit, AR with its problems."""
        if not isinstance(msg, Hl7Message):
            raise TypeError("the order link takes HL7 messages only")
        parsed = parse_order_message(msg, self._zone)
        d = self._pool.run(store_order_message, raw=msg.raw, control_id=msg.control_id,
                           parsed=parsed, source=self._source, at=self._utcnow(),
                           download_to=self._download_to)
        d.addCallback(self._stored)
        return cast("Deferred[object]", d)

    def _stored(self, stored: StoredOrders) -> StoredOrders:
        if not stored.accepted:
            self._log.warning("orders-refused", order_message_id=stored.message_id,
                              problems=len(stored.problems))
            raise MessageRejectedError("; ".join(stored.problems)[:500], REQUIRED_FIELD_MISSING)
        self._log.info("orders-stored", order_message_id=stored.message_id,
                       samples=len(stored.samples))
        return stored

    def incomplete(self, item: IncompleteTransmission) -> None:
        """Keep bytes that never became a message (as a raw session of the order link)."""
        d = self._pool.run(store_incomplete, analyzer=ORDER_LINK_NAME, family="his",
                           transport="tcp", reason=item.reason, raw=item.raw,
                           received_at=self._utcnow())
        d.addErrback(lambda f: self._log.error("incomplete-not-stored",
                                               kind=f.type.__name__ if f.type else ""))

    def message_sent(self, message: bytes) -> None:
        """Nothing is sent to the HIS on this link but ACKs."""

    def send_failed(self, messages: tuple[bytes, ...], reason: AbortReason) -> None:
        """Nothing is sent to the HIS on this link but ACKs."""
