"""One configured analyzer link, as plain data (no Twisted here).

The configuration (:mod:`lis_gateway.config`) builds these; the composition
root (:mod:`lis_gateway.service`) turns each into a running link.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from drivers import DriverSpec, Framing, SerialDefaults

#: The transports a link may use.
TRANSPORTS = ("tcp-server", "tcp-client", "serial")

@dataclass(frozen=True, slots=True)
class LinkSpec:
    """One configured analyzer link.

    Attributes:
        name: unique link name (logs, recordings, service name).
        driver: the analyzer family.
        transport: ``tcp-server`` (analyzer connects in), ``tcp-client``
            (gateway connects out) or ``serial``.
        host, port: listen address (server) or analyzer address (client);
            port 0 listens on an ephemeral port.
        device: serial device path.
        baudrate, bytesize, parity, stopbits: serial settings; ``None`` takes
            the driver's default.
        record_dir: where wire recordings go; ``None`` records nothing.
        unsolicited: results need no HIS order (with ``[orders]`` configured,
            other analyzers' results without an order are held "no order").
    """

    name: str
    driver: DriverSpec
    transport: str
    host: str = "127.0.0.1"
    port: int = 0
    device: str = ""
    baudrate: int | None = None
    bytesize: int | None = None
    parity: str | None = None
    stopbits: float | None = None
    record_dir: Path | None = None
    unsolicited: bool = False
    #: orders and reruns are pushed to the analyzer (:mod:`lis_gateway.order_download`)
    order_download: bool = False
    #: the lab section its results belong to ("" none; :mod:`lis_gateway.sections`)
    section: str = ""

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ValueError(f"link {self.name!r}: transport {self.transport!r} is not one "
                             f"of {', '.join(TRANSPORTS)}")
        if self.transport == "serial" and not self.device:
            raise ValueError(f"link {self.name!r}: a serial link needs a device")
        if self.transport == "serial" and self.driver.framing is Framing.BARE:
            raise ValueError(f"link {self.name!r}: bare-record framing is TCP only")
        if self.driver.framing is Framing.CUSTOM and self.driver.custom_decoder is None:
            raise ValueError(f"link {self.name!r}: a vendor byte protocol (AU online) link "
                             "needs the driver's decoder")

    def serial_settings(self) -> SerialDefaults:
        """The serial settings, with the driver's defaults for those left ``None``."""
        d = self.driver.serial
        return SerialDefaults(
            baudrate=d.baudrate if self.baudrate is None else self.baudrate,
            bytesize=d.bytesize if self.bytesize is None else self.bytesize,
            parity=d.parity if self.parity is None else self.parity,
            stopbits=d.stopbits if self.stopbits is None else self.stopbits,
        )


#: The destination types the configuration accepts.
DESTINATION_TYPES = ("hl7-mllp", "rest-json", "fhir", "file")
#: The formats a ``file`` destination writes.
FILE_FORMATS = ("hl7", "json", "fhir")


@dataclass(frozen=True, slots=True)
class DestinationSpec:
    """One configured destination of released results (``[[destinations]]``).

    Attributes:
        name: unique name; the outbox key (renaming a destination re-sends everything).
        type: one of :data:`DESTINATION_TYPES`.
        host, port: where the HIS listens for MLLP (``hl7-mllp``).
        tls: MLLP over TLS; ``ca_file`` (PEM) is then the HIS's CA (default: the
            system's) and ``client_cert`` a PEM with this gateway's certificate and key.
        url: where ``rest-json`` and ``fhir`` POST.
        token: bearer token for ``url`` (read from ``token_file``; never printed).
        template: the ``rest-json`` body template (JSON text, checked).
        directory, format: where a ``file`` destination writes, and in what form.
        ack_timeout: seconds the destination has to answer each message.
        hospital: PID-3 CX.4 namespace of hospital patient IDs (the hospital's code).
        patient_system: FHIR identifier system of hospital patient IDs.
        sending_facility: MSH-4 namespace.
        receiving_application, receiving_facility: MSH-5 and MSH-6 namespaces.
        retry_first, retry_cap: seconds of the first retry delay and the longest one.
    """

    name: str
    type: str
    host: str = ""
    port: int = 0
    ack_timeout: float = 30.0
    hospital: str = ""
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    retry_first: float = 5.0
    retry_cap: float = 900.0
    tls: bool = False
    ca_file: str = ""
    client_cert: str = ""
    url: str = ""
    token: str = field(default="", repr=False)
    template: str = ""
    directory: str = ""
    format: str = ""
    patient_system: str = ""

    def __post_init__(self) -> None:
        if self.type not in DESTINATION_TYPES:
            raise ValueError(f"destination {self.name!r}: type {self.type!r} is not one of "
                             f"{', '.join(DESTINATION_TYPES)}")
