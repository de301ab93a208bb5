"""beckman-au links in the configuration: serial and TCP (either role); what cannot run."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import drivers
from drivers import Framing
from lis_gateway.config import parse_config
from lis_gateway.linkspec import LinkSpec

from .test_config import analyzer, problems

SPEC = drivers.get("beckman-au")


@pytest.mark.parametrize("where", [
    'transport = "serial"\ndevice = "/dev/ttyS0"\n',
    'transport = "tcp-server"\nlisten = "0.0.0.0:5001"\n',
    'transport = "tcp-client"\nhost = "10.0.0.9"\nport = 4001\n',
])
def test_beckman_au_runs_on_serial_and_tcp(where: str, tmp_path: Path) -> None:
    """The AU online link is accepted on a serial line and on TCP in either role."""
    config = parse_config(analyzer(f'name = "au1"\ndriver = "beckman-au"\n{where}'),
                          tmp_path / "gw.toml")
    (link,) = config.analyzers
    assert link.driver is SPEC and link.driver.framing is Framing.CUSTOM


def test_serial_defaults_come_from_the_driver(tmp_path: Path) -> None:
    """Unset serial settings are the driver's 9600 8N1."""
    config = parse_config(analyzer('name = "au1"\ndriver = "beckman-au"\ntransport = "serial"\n'
                                   'device = "/dev/ttyS0"\n'), tmp_path / "gw.toml")
    s = config.analyzers[0].serial_settings()
    assert (s.baudrate, s.bytesize, s.parity, s.stopbits) == (9600, 8, "N", 1)


def test_order_download_is_refused_for_the_au_link(tmp_path: Path) -> None:
    """The gateway sends nothing on an AU link, so pushed orders are refused by name."""
    found = problems(analyzer('name = "au1"\ndriver = "beckman-au"\ntransport = "serial"\n'
                              'device = "/dev/ttyS0"\norder_download = true\n'), tmp_path)
    assert any(p.startswith("analyzers[0].order_download") for p in found)


def test_a_vendor_protocol_driver_without_decoder_cannot_make_a_link() -> None:
    """A CUSTOM framing needs the driver's decoder; the link spec refuses it otherwise."""
    broken = dataclasses.replace(SPEC, custom_decoder=None)
    with pytest.raises(ValueError, match="needs the driver's decoder"):
        LinkSpec(name="au1", driver=broken, transport="serial", device="/dev/ttyS0")
