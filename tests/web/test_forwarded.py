"""Behind a reverse proxy: the client named by a trusted proxy's X-Forwarded-For, no one else's."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet.address import IPv4Address
from twisted.web.test.requesthelper import DummyRequest

from lis_gateway.config import ConfigError, parse_config
from lis_gateway.web.site import build_site

from ..test_config import analyzer


def request_from(peer: str, forwarded: str | None) -> DummyRequest:
    request = DummyRequest([b"healthz"])
    request.client = IPv4Address("TCP", peer, 41000)
    if forwarded is not None:
        request.requestHeaders.setRawHeaders(b"x-forwarded-for", [forwarded.encode()])
    return request


def client_seen(peer: str, forwarded: str | None, trusted: tuple[str, ...]) -> str:
    site = build_site(trusted_proxies=trusted)
    request = request_from(peer, forwarded)
    site.getResourceFor(request)
    return str(request.getClientAddress().host)


def test_a_trusted_proxy_names_the_workstation() -> None:
    """The last address is the one the proxy appended; earlier ones came from the browser."""
    assert client_seen("127.0.0.1", "10.1.2.3", ("127.0.0.1",)) == "10.1.2.3"
    assert client_seen("127.0.0.1", "6.6.6.6, 10.1.2.3", ("127.0.0.1",)) == "10.1.2.3"


def test_the_header_is_ignored_from_others_and_when_malformed() -> None:
    assert client_seen("10.9.9.9", "10.1.2.3", ("127.0.0.1",)) == "10.9.9.9"
    assert client_seen("127.0.0.1", "10.1.2.3", ()) == "127.0.0.1"
    assert client_seen("127.0.0.1", "not-an-address", ("127.0.0.1",)) == "127.0.0.1"
    assert client_seen("127.0.0.1", None, ("127.0.0.1",)) == "127.0.0.1"


def test_trusted_proxies_are_checked_in_the_configuration(tmp_path: Path) -> None:
    link = analyzer('name = "a"\ndriver = "sysmex-xn"\ntransport = "tcp-server"\n'
                    'listen = "127.0.0.1:15001"\n')
    good = parse_config(link + b'[web]\nlisten = "127.0.0.1:8080"\n'
                        b'trusted_proxies = ["127.0.0.1", "::1"]\n', tmp_path / "gw.toml")
    assert good.web_trusted_proxies == ("127.0.0.1", "::1")
    with pytest.raises(ConfigError, match=r"web\.trusted_proxies\[0\]: .*'nginx'"):
        parse_config(link + b'[web]\nlisten = "127.0.0.1:8080"\n'
                     b'trusted_proxies = ["nginx"]\n', tmp_path / "gw.toml")
