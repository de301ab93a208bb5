"""Which simulated style plays which driver, or why none does (pure).

Every registered driver has a style except ``beckman-au``: the AU online
protocol is a vendor byte protocol for which the gateway has no live link
yet (its driver decodes captures only), so a simulator would have nothing
on the gateway side to talk to, and its mapping table is empty.
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
        "beckman-au speaks the Beckman AU online protocol (STX/ETX texts with a BCC, not "
        "ASTM E1381 or MLLP); the gateway has no live link for it yet, only an offline "
        "decoder of captures (lis-gateway parse --driver beckman-au), and its mapping table "
        "is empty, so there is nothing for a simulator to talk to"),
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
