"""Which simulated style plays which driver, or why none does (pure).

Every registered driver has a style except ``beckman-au``. The gateway runs
the AU online protocol live (:mod:`lis_gateway.au_online`), and its analyzer
end exists (:class:`lis_gateway.au_online.AuSender`, which the integration
tests play), but the simulator has no AU style: its fault cores cut E1381
frames and MLLP blocks, and the texts, the faults on AU blocks and the
session wiring would all be new; the driver's mapping table is empty too.
"""

from __future__ import annotations

from drivers import DriverSpec, Framing, Protocol

from . import astm_styles, hl7_styles
from .astm_styles import AstmStyle
from .hl7_styles import Hl7Style

Style = AstmStyle | Hl7Style


class UnsupportedDriverError(ValueError):
    """The driver cannot be simulated; the message says why."""


#: Drivers refused, with the reason given to the user.
REFUSED: dict[str, str] = {
    "beckman-au": (
        "beckman-au speaks the Beckman AU online protocol (STX/ETX texts with a BCC, each "
        "answered ACK or NAK; not ASTM E1381 or MLLP). The gateway runs it live "
        "(lis-gateway run and receive), but the simulator has no AU style yet; play an AU "
        "with lis_gateway.au_online.AuSender as tests/integration/test_au_link.py does"),
}


def style_for(driver: DriverSpec) -> Style:
    """The simulated style of ``driver``.

    Raises:
        UnsupportedDriverError: the driver has no style (the message says why).
    """
    if driver.name in REFUSED:
        raise UnsupportedDriverError(REFUSED[driver.name])
    if driver.protocol is Protocol.HL7:
        style: Style | None = hl7_styles.STYLES.get(driver.name)
    elif driver.framing is Framing.CUSTOM:
        raise UnsupportedDriverError(f"{driver.name} uses a vendor byte protocol the "
                                     "simulator does not speak")
    else:
        style = astm_styles.STYLES.get(driver.name)
    if style is None:
        raise UnsupportedDriverError(
            f"no simulated style for {driver.name} yet; simulated drivers: "
            f"{', '.join(sorted(supported()))}")
    return style


def supported() -> tuple[str, ...]:
    """Every driver name the simulator plays."""
    return tuple(sorted({*astm_styles.STYLES, *hl7_styles.STYLES}))
