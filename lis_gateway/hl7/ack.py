"""HL7 acknowledgements: the ACKs we send analyzers, and reading the HIS's ACKs.

Original mode (MSH-15 and MSH-16 empty): one ACK with AA, AE or AR.
Enhanced mode: a commit ACK (CA/CE/CR) as MSH-15 asks and an application
ACK (AA/AE/AR) as MSH-16 asks: AL always, ER only on error, SU only on
success, NE never. Analyzers that say NE but still wait for an answer
(Snibe Maglumi) get an AA anyway when their profile says ``always_ack``.

The time and the control ID are arguments; nothing here reads a clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from .errors import AckError
from .message import Hl7Message, write_message, write_segment


class Outcome(enum.Enum):
    """What the gateway did with a received message."""

    ACCEPTED = "accepted"  #: stored: AA / CA
    ERROR = "error"  #: could not be processed now, may be sent again: AE / CE
    REJECTED = "rejected"  #: will never be accepted (wrong type, unparsable): AR / CR


_ORIGINAL = {Outcome.ACCEPTED: "AA", Outcome.ERROR: "AE", Outcome.REJECTED: "AR"}
_COMMIT = {Outcome.ACCEPTED: "CA", Outcome.ERROR: "CE", Outcome.REJECTED: "CR"}


def _wanted(condition: str, outcome: Outcome) -> bool:
    condition = condition.strip().upper()
    if condition in ("", "AL"):
        return True
    if condition == "ER":
        return outcome is not Outcome.ACCEPTED
    if condition == "SU":
        return outcome is Outcome.ACCEPTED
    return False  # NE, and anything unknown


def plan_acks(msg: Hl7Message, outcome: Outcome, *, always_ack: bool = True) -> list[str]:
    """The acknowledgement codes to send for ``msg``, in order.

    Args:
        msg: the received message.
        outcome: what the gateway did with it.
        always_ack: send AA/AE/AR even when the message asks for none.
    """
    accept, application = msg.msh[15], msg.msh[16]
    if not accept and not application:
        return [_ORIGINAL[outcome]]
    codes = []
    if accept and _wanted(accept, outcome):
        codes.append(_COMMIT[outcome])
    if _wanted(application, outcome) and application.upper() in ("AL", "ER", "SU"):
        codes.append(_ORIGINAL[outcome])
    if not codes and always_ack:
        codes.append(_ORIGINAL[outcome])
    return codes


def hl7_timestamp(when: datetime) -> str:
    """``YYYYMMDDHHMMSS`` plus ``+ZZZZ`` when ``when`` carries a time zone."""
    stamp = when.strftime("%Y%m%d%H%M%S")
    return stamp + when.strftime("%z") if when.tzinfo is not None else stamp


def build_ack(msg: Hl7Message, code: str, *, control_id: str, now: datetime,
              text: str = "", error_code: str = "", application: str = "LIS-GATEWAY",
              facility: str = "") -> bytes:
    """Build the ACK answering ``msg``.

    The ACK uses the sender's delimiters, version and character set, swaps
    sender and receiver, and echoes MSH-10 in MSA-2. On AE/AR/CE/CR an ERR
    segment carries ``error_code`` (HL7 table 0357, e.g. 100 segment sequence
    error, 101 required field missing, 200 unsupported message type, 207
    application internal error) in the form the message's version expects.

    Args:
        msg: the received message.
        code: AA, AE, AR, CA, CE or CR.
        control_id: MSH-10 of the ACK.
        now: MSH-7.
        text: a human-readable reason (MSA-3; ERR on error).
        error_code: the 0357 code for errors (207 if empty).
        application, facility: our MSH-3/4 when the message did not name us in MSH-5/6.

    Returns:
        The ACK (segments ending in CR), encoded like the message.
    """
    if code not in ("AA", "AE", "AR", "CA", "CE", "CR"):
        raise AckError(f"not an acknowledgement code: {code!r}")
    d = msg.delimiters
    msh = msg.msh
    version = d.component_at(msh[12], 1) or "2.5.1"
    trigger = d.component_at(msh[9], 2)
    mtype = ["ACK", trigger] + (["ACK"] if _at_least(version, "2.4") else [])
    esc = d.escape_text
    segments = [write_segment([
        "MSH", d.field, d.encoding_characters,
        msh[5] or esc(application), msh[6] or esc(facility), msh[3], msh[4],
        hl7_timestamp(now), "", d.component.join(c for c in mtype if c), esc(control_id),
        msh[11] or "P", msh[12] or version, "", "", "", "", "", msh[18]], d)]
    segments.append(write_segment(["MSA", code, msh[10], esc(text)], d))
    if code not in ("AA", "CA"):
        err = error_code or "207"
        reason = esc(text or "application error")
        if _at_least(version, "2.5"):
            severity = "E"
            segments.append(write_segment(
                ["ERR", "", "", d.component.join([err, reason, "HL70357"]), severity], d))
        else:
            segments.append(write_segment(["ERR", d.component.join(["", "", "", err])], d))
    return write_message(segments, msg.encoding)


def _at_least(version: str, minimum: str) -> bool:
    def key(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in v.split(".") if p.isascii() and p.isdigit())
    return key(version) >= key(minimum) if version else True


@dataclass(frozen=True, slots=True)
class AckResult:
    """What an acknowledgement from the HIS says.

    Attributes:
        code: MSA-1.
        acknowledges: MSA-2, the control ID of the message acknowledged.
        text: MSA-3 and ERR text joined, for the dead-letter list.
        error_code: the first error code found in ERR, if any.
    """

    code: str
    acknowledges: str
    text: str
    error_code: str

    @property
    def accepted(self) -> bool:
        """AA or CA: delivered."""
        return self.code in ("AA", "CA")

    @property
    def retry(self) -> bool:
        """AE or CE: the receiver had a problem; sending again later may work."""
        return self.code in ("AE", "CE")

    @property
    def rejected(self) -> bool:
        """AR or CR (or anything unknown): sending again will not help."""
        return not (self.accepted or self.retry)


def interpret_ack(msg: Hl7Message) -> AckResult:
    """Read an ACK (any message with an MSA segment).

    Raises:
        AckError: the message has no MSA segment.
    """
    msa = msg.first("MSA")
    if msa is None:
        raise AckError(f"{msg.message_type or 'message'} has no MSA segment")
    d = msg.delimiters
    texts = [d.text(msa[3])] if msa[3] else []
    error_code = ""
    for err in msg.named("ERR"):
        code3 = d.component_at(err[3], 1)
        code1 = d.component_at(err[1], 4)
        error_code = error_code or code3 or code1
        detail = d.component_at(err[3], 2) or d.text(err[8]) or d.component_at(err[1], 1)
        if detail:
            texts.append(detail)
    if msa[6] and not error_code:  # Mindray puts an error code in MSA-6
        error_code = d.component_at(msa[6], 1)
    return AckResult(msa[1].strip().upper(), msa[2], "; ".join(texts), error_code)
