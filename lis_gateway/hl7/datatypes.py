"""HL7 v2.5.1 composite data types the gateway writes, and the text rules they share.

Every message the gateway builds (ORU^R01 to the HIS, QCK/DSR to Mindray
analyzers, RSP^K11 and OML^O33 to IHE LAW analyzers) is written with the
default encoding characters ``|^~\\&``. All user-provided text goes through
:func:`encode_text`, which

* normalises to Unicode NFC (Vietnamese names arrive in NFC or NFD; HL7 v2.5.1
  §2.7 leaves this to the sites, and a HIS matching names byte-wise needs one form),
* escapes the delimiters (``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\``, v2.5.1 §2.7.1),
* writes control characters as ``\\Xhh\\`` (v2.5.1 §2.7.4), so a CR in a name can
  never end a segment; in FT fields (NTE-3) a line break becomes ``\\.br\\`` (§2.7.6).

Times are arguments, never read from a clock. Timestamps in v2.5.1 messages
carry the UTC offset (LRI; v2.5.1 §2.A.22 DTM ``YYYYMMDDHHMMSS+ZZZZ``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from .delimiters import DEFAULT
from .errors import BuildError
from .message import write_segment

#: HL7 table 0396 name for codes the site defines itself ("99zzz" = locally defined).
LOCAL_CODING_SYSTEM = "99LOCAL"


@dataclass(frozen=True, slots=True)
class HierarchicDesignator:
    """HD: an application, facility or assigning authority (MSH-3..6, CX.4, XCN.9)."""

    namespace: str = ""  #: HD.1 namespace ID (user-defined, e.g. "BV_BACHMAI")
    universal_id: str = ""  #: HD.2 universal ID (an OID where the site has one)
    universal_id_type: str = ""  #: HD.3 table 0301, e.g. "ISO" for an OID


@dataclass(frozen=True, slots=True)
class EntityIdentifier:
    """EI: an order number, an equipment instance or a profile (ORC-2/3, OBX-18, MSH-21)."""

    identifier: str  #: EI.1 entity identifier
    namespace: str = ""  #: EI.2 namespace ID
    universal_id: str = ""  #: EI.3 universal ID
    universal_id_type: str = ""  #: EI.4 universal ID type (table 0301)


@dataclass(frozen=True, slots=True)
class Person:
    """XCN: a validator (OBX-16) or an ordering provider (ORC-12, OBR-16)."""

    identifier: str = ""  #: XCN.1, e.g. the practising-certificate number (MA_BS_DOC_KQ)
    family_name: str = ""  #: XCN.2
    given_name: str = ""  #: XCN.3
    authority: HierarchicDesignator | None = None  #: XCN.9 assigning authority
    identifier_type: str = ""  #: XCN.13, table 0203 (e.g. "LN" licence number)


@dataclass(frozen=True, slots=True)
class Code:
    """One coded triplet (CWE.1-3): code, display text, coding system (table 0396)."""

    code: str  #: CWE.1
    text: str = ""  #: CWE.2
    system: str = ""  #: CWE.3, e.g. "SCT", "HL70487", "LN", "99LOCAL"


@dataclass(frozen=True, slots=True)
class ObservationCode:
    """OBR-4 / OBX-3: LOINC as the first triplet, the local code as the alternate.

    Without a LOINC code the local code moves to the first triplet.
    """

    loinc: str = ""  #: CE/CWE.1 with .3 = "LN"
    loinc_text: str = ""  #: CE/CWE.2
    local: str = ""  #: CE/CWE.4 (CE/CWE.1 when there is no LOINC)
    local_text: str = ""  #: CE/CWE.5 (or .2)
    local_system: str = LOCAL_CODING_SYSTEM  #: CE/CWE.6 (or .3)


@dataclass(frozen=True, slots=True)
class MessageRoute:
    """MSH-3..6: who sends and who receives."""

    sending_application: HierarchicDesignator = HierarchicDesignator()  #: MSH-3
    sending_facility: HierarchicDesignator = HierarchicDesignator()  #: MSH-4
    receiving_application: HierarchicDesignator = HierarchicDesignator()  #: MSH-5
    receiving_facility: HierarchicDesignator = HierarchicDesignator()  #: MSH-6

    def reply(self) -> MessageRoute:
        """The route of an answer: sender and receiver swapped."""
        return MessageRoute(self.receiving_application, self.receiving_facility,
                            self.sending_application, self.sending_facility)


# --- text ------------------------------------------------------------------------------

_LINE_BREAK = re.compile(r"\r\n|\n|\r")


#: Anything that needs escaping in the default delimiters: the fast path skips the rest.
_NEEDS_WORK = re.compile(r"[|^~\\&\x00-\x1f\x7f]")


def _encode_line(text: str) -> str:
    if _NEEDS_WORK.search(text) is None:
        return text
    escaped = DEFAULT.escape_text(text)
    if not any(ord(c) < 0x20 or c == "\x7f" for c in escaped):
        return escaped
    esc = DEFAULT.escape
    return "".join(f"{esc}X{ord(c):02X}{esc}" if ord(c) < 0x20 or c == "\x7f" else c
                   for c in escaped)


def encode_text(value: str, *, formatted: bool = False) -> str:
    """Encode plain text for one (sub)component.

    Args:
        value: the text as the user or the HIS gave it.
        formatted: the field is FT (NTE-3): line breaks become ``\\.br\\``.

    Returns:
        NFC text with delimiters escaped and control characters as ``\\Xhh\\``.
    """
    if value.isascii():
        if _NEEDS_WORK.search(value) is None:
            return value
        text = value
    else:
        text = unicodedata.normalize("NFC", value)
    if not formatted:
        return _encode_line(text)
    br = f"{DEFAULT.escape}.br{DEFAULT.escape}"
    return br.join(_encode_line(line) for line in _LINE_BREAK.split(text))


def join_components(parts: Sequence[str], separator: str = DEFAULT.component) -> str:
    """Join already-encoded parts, dropping trailing empty ones."""
    keep = len(parts)
    while keep and parts[keep - 1] == "":
        keep -= 1
    return separator.join(parts[:keep])


def components(*values: str) -> str:
    """Encode plain values and join them as the components of one field."""
    return join_components([encode_text(v) for v in values])


def hd_text(hd: HierarchicDesignator | None, separator: str = DEFAULT.component) -> str:
    """HD as a field (``^``) or as a component inside another type (``&``)."""
    if hd is None:
        return ""
    return join_components([encode_text(hd.namespace), encode_text(hd.universal_id),
                            encode_text(hd.universal_id_type)], separator)


def ei_text(ei: EntityIdentifier | None) -> str:
    """EI as a field."""
    if ei is None:
        return ""
    return components(ei.identifier, ei.namespace, ei.universal_id, ei.universal_id_type)


def xcn_text(person: Person | None) -> str:
    """XCN as a field: ``id^family^given^^^^^^authority^^^^type``."""
    if person is None:
        return ""
    parts = [encode_text(person.identifier), encode_text(person.family_name),
             encode_text(person.given_name), "", "", "", "", "",
             hd_text(person.authority, DEFAULT.subcomponent), "", "", "",
             encode_text(person.identifier_type)]
    return join_components(parts)


def code_text(code: Code | None) -> str:
    """One CWE triplet as a field."""
    if code is None:
        return ""
    return components(code.code, code.text, code.system)


def observation_code_text(code: ObservationCode) -> str:
    """OBR-4 / OBX-3 with LOINC first (``LN``) and the local code as the alternate.

    Raises:
        BuildError: neither a LOINC nor a local code is given.
    """
    local = (code.local, code.local_text, code.local_system if code.local else "")
    if code.loinc:
        return components(code.loinc, code.loinc_text, "LN", *local)
    if code.local:
        return components(*local)
    raise BuildError("an observation or service code needs a LOINC or a local code")


# --- time ------------------------------------------------------------------------------

def format_ts(moment: datetime) -> str:
    """DTM with seconds and UTC offset: ``20250102103000+0700``.

    Raises:
        BuildError: ``moment`` has no tzinfo (a wall time without offset is ambiguous).
    """
    offset = moment.utcoffset()
    if offset is None:
        raise BuildError(f"timestamp {moment.isoformat()} has no UTC offset")
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    return f"{moment.strftime('%Y%m%d%H%M%S')}{sign}{hours:02d}{mins:02d}"


def format_optional_ts(moment: datetime | None) -> str:
    """:func:`format_ts`, or ``""`` for None."""
    return "" if moment is None else format_ts(moment)


def format_wall_time(moment: datetime) -> str:
    """``YYYYMMDDHHMMSS`` without offset: the form legacy (v2.3.1) analyzers expect.

    The time is written as the wall time of ``moment``'s own zone.
    """
    return moment.strftime("%Y%m%d%H%M%S")


def format_date(day: date | None) -> str:
    """DT ``YYYYMMDD`` (PID-7 birth date), or ``""``."""
    return "" if day is None else day.strftime("%Y%m%d")


# --- header ----------------------------------------------------------------------------

def msh_segment(route: MessageRoute, message_type: str, *, control_id: str, timestamp: str,
                version: str = "2.5.1", accept_ack: str = "", application_ack: str = "",
                charset: str = "UNICODE UTF-8",
                profiles: Sequence[EntityIdentifier] = ()) -> str:
    """An MSH segment (MSH-1..21) with default encoding characters.

    Args:
        route: MSH-3..6.
        message_type: MSH-9 raw, e.g. ``ORU^R01^ORU_R01``.
        control_id: MSH-10.
        timestamp: MSH-7, already formatted.
        version: MSH-12.
        accept_ack: MSH-15 (table 0155).
        application_ack: MSH-16 (table 0155).
        charset: MSH-18 (table 0211).
        profiles: MSH-21 repetitions.

    Raises:
        BuildError: the control ID is empty.
    """
    if not control_id:
        raise BuildError("MSH-10 (message control ID) is empty")
    profile_field = DEFAULT.repetition.join(ei_text(p) for p in profiles)
    fields = ["MSH", DEFAULT.field, DEFAULT.encoding_characters,
              hd_text(route.sending_application), hd_text(route.sending_facility),
              hd_text(route.receiving_application), hd_text(route.receiving_facility),
              timestamp, "", message_type, encode_text(control_id), "P", version,
              "", "", accept_ack, application_ack, "", charset, "", "", profile_field]
    return write_segment(fields)
