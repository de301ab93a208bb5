"""Control characters and limits of ASTM E1381 (CLSI LIS1-A).

Numbers cite E1381 as restated in the Roche cobas e 411 / c 311 host
interface manuals (see docs/protocols.md in the project for sources).
"""

from __future__ import annotations

from typing import Final

ENQ: Final = b"\x05"  #: bid for the line (establishment phase)
ACK: Final = b"\x06"  #: positive reply to ENQ or to a frame
NAK: Final = b"\x15"  #: "busy" after ENQ, "resend" after a frame
EOT: Final = b"\x04"  #: end of transmission; as a reply to a frame: receiver interrupt
STX: Final = b"\x02"  #: start of frame
ETX: Final = b"\x03"  #: end of the last frame of a low-level message
ETB: Final = b"\x17"  #: end of an intermediate frame
CR: Final = b"\r"  #: record terminator, first byte of the frame trailer
LF: Final = b"\n"  #: last byte of the frame trailer

# Integer forms, for byte-by-byte scanning.
ENQ_B: Final = 0x05
ACK_B: Final = 0x06
NAK_B: Final = 0x15
EOT_B: Final = 0x04
STX_B: Final = 0x02
ETX_B: Final = 0x03
ETB_B: Final = 0x17
CR_B: Final = 0x0D
LF_B: Final = 0x0A

#: E1381: a frame is at most 247 characters including its 7 overhead bytes.
STANDARD_MAX_FRAME: Final = 247
#: E1381: so at most 240 characters of text per frame.
STANDARD_MAX_TEXT: Final = 240
#: Frames longer than this are refused as garbage (real analyzers send up to ~27 kB).
DEFAULT_HARD_MAX_FRAME: Final = 1 << 20

#: Characters E1381 forbids inside frame text (CR is allowed: it ends records).
RESTRICTED: Final = frozenset({0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0A, 0x10,
                               0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17})

# E1381 timers, in seconds.
ENQ_REPLY_TIMEOUT: Final = 15.0  #: sender waits this long for a reply to ENQ
FRAME_REPLY_TIMEOUT: Final = 15.0  #: sender waits this long for a reply to a frame
RECEIVE_TIMEOUT: Final = 30.0  #: receiver waits this long for the next frame or EOT
BUSY_RETRY_DELAY: Final = 10.0  #: after a NAK to ENQ, wait at least this long to bid again
CONTENTION_DELAY_COMPUTER: Final = 20.0  #: computer yields to the instrument this long
CONTENTION_DELAY_INSTRUMENT: Final = 1.0  #: instrument re-bids after this long
INTERRUPT_DELAY: Final = 15.0  #: after honouring a receiver interrupt, do not bid this long
MAX_ATTEMPTS: Final = 6  #: a frame (or a bid) is tried at most this many times
