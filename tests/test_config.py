"""The TOML configuration: the documented shape loads, every mistake is named by its key path."""

from __future__ import annotations

import configparser
import dataclasses
from pathlib import Path

import pytest

import drivers
from lis_gateway.config import (
    SHIPPED_MAPPINGS,
    ConfigError,
    default_config_path,
    load_config,
    parse_config,
    shipped_mappings,
)

ISSUE_EXAMPLE = b"""
[database]
url = "sqlite:///var/lis.db"          # or postgresql+psycopg://...
[[analyzers]]
name = "chem1"
driver = "roche-cobas"
transport = "tcp-server"              # tcp-server | tcp-client | serial
listen = "127.0.0.1:15001"            # tcp-server; tcp-client uses host/port
[[analyzers]]
name = "heme1"
driver = "sysmex-xn"
transport = "serial"
device = "/dev/ttyUSB0"
baudrate = 9600
"""

BASE = b"""
[database]
url = "sqlite:///lis.db"
"""


def problems(text: bytes, tmp_path: Path) -> tuple[str, ...]:
    """The problems parse_config reports for ``text`` (it must refuse it)."""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, tmp_path / "gw.toml")
    return caught.value.problems


def analyzer(body: str) -> bytes:
    """BASE plus one ``[[analyzers]]`` table with ``body``."""
    return BASE + b"[[analyzers]]\n" + body.encode()


def test_issue_example_loads_into_link_specs(tmp_path: Path) -> None:
    """The issue's example file gives a TCP server link and a serial link with its settings."""
    config = parse_config(ISSUE_EXAMPLE, tmp_path / "gw.toml")
    assert config.database_url == "sqlite:///var/lis.db"
    assert config.mapping_directories == (SHIPPED_MAPPINGS,)
    assert config.record_dir is None
    chem, heme = config.links()
    assert (chem.name, chem.driver, chem.transport, chem.host, chem.port) == (
        "chem1", drivers.get("roche-cobas"), "tcp-server", "127.0.0.1", 15001)
    assert (heme.name, heme.driver.name, heme.transport, heme.device) == (
        "heme1", "sysmex-xn", "serial", "/dev/ttyUSB0")
    assert heme.serial_settings().baudrate == 9600


def test_tcp_client_mappings_and_wire_sections(tmp_path: Path) -> None:
    """A tcp-client link takes host and port; relative paths start at the file's directory."""
    (tmp_path / "site").mkdir()
    config = parse_config(BASE + b"""
[mappings]
directories = ["site"]
[wire]
record_dir = "wire"
[[analyzers]]
name = "imm"
driver = "generic-astm"
transport = "tcp-client"
host = "10.0.0.5"
port = 5000
""", tmp_path / "gw.toml")
    assert config.mapping_directories == (tmp_path / "site", SHIPPED_MAPPINGS)
    assert config.record_dir == tmp_path / "wire"
    (link,) = config.links()
    assert (link.transport, link.host, link.port, link.record_dir) == (
        "tcp-client", "10.0.0.5", 5000, tmp_path / "wire")


def test_bad_transport_is_named_with_its_path(tmp_path: Path) -> None:
    """A wrong transport says which analyzer and what is expected."""
    text = ISSUE_EXAMPLE.replace(b'transport = "serial"', b'transport = "usb"')
    assert problems(text, tmp_path) == (
        "analyzers[1].transport: expected tcp-server, tcp-client or serial, got 'usb'",)


def test_unknown_driver_lists_the_known_ones(tmp_path: Path) -> None:
    """An unknown driver name is reported with every registered driver."""
    (problem,) = problems(analyzer('name = "a"\ndriver = "cobas"\ntransport = "tcp-server"\n'
                                   'listen = ":1"\n'), tmp_path)
    assert problem.startswith("analyzers[0].driver: unknown driver 'cobas'; known: ")
    assert all(name in problem for name in drivers.REGISTRY)


def test_unknown_keys_are_errors_everywhere(tmp_path: Path) -> None:
    """Typos at the top, in a section or in an analyzer are refused, each with its path."""
    text = (b"databse = 1\n" + BASE + b"pool = 3\n"
            + b'[[analyzers]]\nname = "a"\ndriver = "generic-astm"\ntransport = "tcp-server"\n'
            + b'listen = ":1"\nbaud = 9600\n')
    found = problems(text, tmp_path)
    assert [p.split(":")[0] for p in found] == ["databse", "database.pool", "analyzers[0].baud"]
    assert all("unknown key" in p for p in found)


def test_keys_of_another_transport_are_errors(tmp_path: Path) -> None:
    """A serial setting on a TCP server link is refused rather than ignored."""
    assert problems(analyzer('name = "a"\ndriver = "generic-astm"\ntransport = "tcp-server"\n'
                             'listen = ":1"\nbaudrate = 9600\n'), tmp_path) == (
        "analyzers[0].baudrate: not used by transport tcp-server (it takes listen)",)


def test_missing_and_mistyped_values(tmp_path: Path) -> None:
    """A missing database, bad listen, port, device and parity are all reported at once."""
    text = (b'[[analyzers]]\nname = "a"\ndriver = "generic-astm"\ntransport = "tcp-server"\n'
            b'listen = "nowhere"\n'
            b'[[analyzers]]\nname = "b"\ndriver = "generic-astm"\ntransport = "tcp-client"\n'
            b'host = "h"\nport = "5000"\n'
            b'[[analyzers]]\nname = "c"\ndriver = "generic-astm"\ntransport = "serial"\n'
            b'parity = "X"\n')
    assert problems(text, tmp_path) == (
        "database: missing (expected a table)",
        "analyzers[0].listen: expected HOST:PORT with a port from 0 to 65535, got 'nowhere'",
        "analyzers[1].port: expected an integer from 1 to 65535, got '5000'",
        "analyzers[2].device: missing (expected a string)",
        "analyzers[2].parity: expected one of N, E, O, M, S, got 'X'",
    )


def test_duplicate_names_and_no_analyzers(tmp_path: Path) -> None:
    """Two analyzers may not share a name, and a file without analyzers is refused."""
    one = 'name = "a"\ndriver = "generic-astm"\ntransport = "tcp-server"\nlisten = ":1"\n'
    assert problems(analyzer(one) + b"[[analyzers]]\n" + one.encode(), tmp_path) == (
        "analyzers[1].name: 'a' is already the name of analyzers[0]",)
    assert problems(BASE, tmp_path) == (
        "analyzers: missing (expected at least one [[analyzers]] table)",)


def test_bad_database_url_and_missing_mapping_directory(tmp_path: Path) -> None:
    """A database URL without a scheme and a mapping directory that does not exist are named."""
    text = (b'[database]\nurl = "/var/lis.db"\n[mappings]\ndirectories = ["nope"]\n'
            + b'[[analyzers]]\nname = "a"\ndriver = "generic-astm"\ntransport = "tcp-server"\n'
            + b'listen = ":1"\n')
    found = problems(text, tmp_path)
    assert found[0].startswith("database.url: expected an SQLAlchemy URL")
    assert found[1] == f"mappings.directories[0]: {str(tmp_path / 'nope')!r} is not a directory"


def test_bare_record_driver_cannot_use_serial(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A driver that sends bare records is refused on a serial link."""
    bare = "bare-records"
    monkeypatch.setitem(drivers.REGISTRY, bare, dataclasses.replace(
        drivers.get("generic-astm"), name=bare, framing=drivers.Framing.BARE))
    (problem,) = problems(analyzer(f'name = "a"\ndriver = "{bare}"\ntransport = "serial"\n'
                                   'device = "/dev/ttyS0"\n'), tmp_path)
    assert problem.startswith("analyzers[0].transport: driver ")


def test_not_toml_and_unreadable_file(tmp_path: Path) -> None:
    """Broken TOML and a missing file are configuration errors with the file's name."""
    assert problems(b"[database\n", tmp_path)[0].startswith("not valid TOML: ")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.toml")
    assert caught.value.file == str(tmp_path / "absent.toml")
    assert caught.value.problems == ("cannot read: No such file or directory",)


def test_default_path_comes_from_the_environment_then_the_working_directory() -> None:
    """$LIS_GATEWAY_CONFIG wins; without it the file is ./lis-gateway.toml."""
    assert default_config_path({"LIS_GATEWAY_CONFIG": "/etc/lis.toml"}) == Path("/etc/lis.toml")
    assert default_config_path({}) == Path("lis-gateway.toml")


GROUPS = b"""
[lifecycle]
require_approval = true

[[lifecycle.groups]]
name = "haematology"
tests = ["WBC", "HGB"]
require_approval = false
"""


def test_lifecycle_groups_give_per_test_policies(tmp_path: Path) -> None:
    """[[lifecycle.groups]] makes haematology one-step while the default stays two-step."""
    config = parse_config(analyzer('name = "a"\ndriver = "sysmex-xn"\ntransport = "tcp-server"\n'
                                   'listen = "127.0.0.1:15001"\n') + GROUPS,
                          tmp_path / "gw.toml")
    assert config.policy.for_test("HGB").require_approval is False
    assert config.policy.for_test("GLU").require_approval is True


def test_bad_lifecycle_groups_are_located(tmp_path: Path) -> None:
    """A group without tests, a test in two groups and a non-boolean are all named."""
    bad = GROUPS + b"""
[[lifecycle.groups]]
name = "again"
tests = ["HGB"]
distinct_approver = "yes"

[[lifecycle.groups]]
name = "empty"
tests = []
"""
    found = problems(analyzer('name = "a"\ndriver = "sysmex-xn"\ntransport = "tcp-server"\n'
                              'listen = "127.0.0.1:15001"\n') + bad, tmp_path)
    text = "\n".join(found)
    assert "lifecycle.groups[1].tests" in text and "already in group 'haematology'" in text
    assert "lifecycle.groups[1].distinct_approver" in text
    assert "lifecycle.groups[2].tests" in text


def test_release_autoverified_needs_the_one_step_policy(tmp_path: Path) -> None:
    """The automatic release is accepted with approval off and the technician skipped;
    with the default two-step policy it is refused, located, instead of silently ignored."""
    link = analyzer('name = "a"\ndriver = "sysmex-xn"\ntransport = "tcp-server"\n'
                    'listen = "127.0.0.1:15001"\n')
    good = (b"[lifecycle]\nrequire_approval = false\nautoverified_skips_technician = true\n"
            b"release_autoverified = true\n")
    assert parse_config(link + good, tmp_path / "gw.toml").policy.default.release_autoverified
    found = problems(link + b"[lifecycle]\nrelease_autoverified = true\n", tmp_path)
    assert any(p.startswith("lifecycle.release_autoverified") and "require_approval = false"
               in p for p in found), found


ONE_ANALYZER = analyzer('name = "chem1"\ndriver = "roche-cobas"\ntransport = "tcp-server"\n'
                        'listen = "127.0.0.1:0"\n')


def test_destinations_load_with_their_defaults(tmp_path: Path) -> None:
    """The issue's [[destinations]] example loads; unset keys take the documented defaults."""
    config = parse_config(ONE_ANALYZER + b"""
[[destinations]]
name = "his"
type = "hl7-mllp"
host = "127.0.0.1"
port = 2575
hospital = "BV_A"
[[destinations]]
name = "his2"
type = "hl7-mllp"
host = "his.local"
port = 2576
ack_timeout = 10
retry_first = 2
retry_cap = 60
hospital = "BV_TEST"
receiving_application = "HIS"
""", tmp_path / "gw.toml")
    first, second = config.destinations
    assert (first.name, first.host, first.port, first.ack_timeout, first.retry_first,
            first.retry_cap, first.hospital) == ("his", "127.0.0.1", 2575, 30.0, 5.0, 900.0,
                                                 "BV_A")
    assert (second.ack_timeout, second.retry_first, second.retry_cap, second.hospital,
            second.receiving_application) == (10.0, 2.0, 60.0, "BV_TEST", "HIS")
    assert parse_config(ONE_ANALYZER, tmp_path / "gw.toml").destinations == ()


def test_bad_destinations_are_located(tmp_path: Path) -> None:
    """Another type's keys, unknown keys, missing port, duplicates, cap below first."""
    got = problems(ONE_ANALYZER + b"""
[[destinations]]
name = "fhir"
type = "fhir"
host = "x"
hospital = "H"
url = "https://emr.example/fhir"
[[destinations]]
name = "his"
type = "hl7-mllp"
host = "x"
hospital = "H"
colour = "red"
[[destinations]]
name = "a"
type = "hl7-mllp"
host = "x"
hospital = "H"
port = 1
retry_first = 60
retry_cap = 10
[[destinations]]
name = "b"
type = "hl7-mllp"
host = "x"
hospital = "H"
port = 1
[[destinations]]
name = "b"
type = "hl7-mllp"
host = "y"
hospital = "H"
port = 2
[[destinations]]
name = "c"
type = "database-view"
""", tmp_path)
    assert got == (
        "destinations[0].host: not a key of fhir destinations (it belongs to hl7-mllp)",
        "destinations[1].colour: unknown key (expected one of ack_timeout, ca_file, "
        "client_cert, hospital, host, name, port, receiving_application, receiving_facility, "
        "retry_cap, retry_first, sending_facility, tls, type)",
        "destinations[1].port: missing (expected an integer from 1 to 65535)",
        "destinations[2].retry_cap: must not be below retry_first (60)",
        "destinations[4].name: 'b' is already the name of destinations[3]",
        "destinations[5].type: expected hl7-mllp, rest-json, fhir, file, got 'database-view'",
    )


def test_http_file_and_tls_destinations_load_with_their_files(tmp_path: Path) -> None:
    """rest-json reads its token and template, fhir its URL, file its directory and format."""
    (tmp_path / "his.token").write_text("s3cret-token\n", encoding="utf-8")
    (tmp_path / "body.json").write_text('{"ma": "{{accession}}", "kq": "{{number}}"}',
                                        encoding="utf-8")
    (tmp_path / "ca.pem").write_text("not checked here", encoding="utf-8")
    config = parse_config(ONE_ANALYZER + b"""
[[destinations]]
name = "api"
type = "rest-json"
url = "https://his.example/api/results"
token_file = "his.token"
template = "body.json"
[[destinations]]
name = "emr"
type = "fhir"
url = "http://127.0.0.1:8081/fhir"
hospital = "BV_A"
[[destinations]]
name = "drop"
type = "file"
directory = "drop"
format = "hl7"
hospital = "BV_A"
[[destinations]]
name = "his"
type = "hl7-mllp"
host = "his.local"
port = 2575
hospital = "BV_A"
tls = true
ca_file = "ca.pem"
""", tmp_path / "gw.toml")
    api, emr, drop, his = config.destinations
    assert (api.url, api.token, api.template) == (
        "https://his.example/api/results", "s3cret-token",
        '{"ma": "{{accession}}", "kq": "{{number}}"}')
    assert "s3cret" not in repr(api)
    assert (emr.type, emr.url, emr.hospital) == ("fhir", "http://127.0.0.1:8081/fhir", "BV_A")
    assert (drop.directory, drop.format) == (str(tmp_path / "drop"), "hl7")
    assert (his.tls, his.ca_file) == (True, str(tmp_path / "ca.pem"))


def test_bad_http_and_file_destinations_say_what_is_wrong(tmp_path: Path) -> None:
    """Unreadable token, a template naming an unknown field, a bad URL, format, TLS files."""
    (tmp_path / "body.json").write_text('{"x": "{{patient_colour}}"}', encoding="utf-8")
    (tmp_path / "two.token").write_text("a b", encoding="utf-8")
    got = problems(ONE_ANALYZER + b"""
[[destinations]]
name = "api"
type = "rest-json"
url = "his.example/api"
token_file = "missing.token"
template = "body.json"
[[destinations]]
name = "api2"
type = "rest-json"
url = "http://his.example/api"
token_file = "two.token"
[[destinations]]
name = "drop"
type = "file"
directory = "drop"
format = "xml"
[[destinations]]
name = "his"
type = "hl7-mllp"
host = "h"
port = 1
hospital = "H"
client_cert = "body.json"
[[destinations]]
name = "emr"
type = "fhir"
url = "http://emr/fhir"
""", tmp_path)
    text = "\n".join(got)
    assert "destinations[0].url: expected an http:// or https:// URL, got 'his.example/api'" \
        in got
    assert "destinations[0].token_file: cannot read the token file" in text
    assert "unknown field {{patient_colour}}" in text
    assert "destinations[1].token_file: the token file must hold one token on one line" in got
    assert "destinations[2].format: expected hl7, json, fhir, got 'xml'" in got
    assert "destinations[3].client_cert: needs tls = true" in got
    assert "destinations[4].hospital: missing (expected a string)" in got


def test_orders_link_and_unsolicited_analyzers(tmp_path: Path) -> None:
    """[orders] makes the order link (generic HL7, TCP server); unsolicited is per analyzer."""
    config = parse_config(analyzer('name = "chem1"\ndriver = "roche-cobas"\n'
                                   'transport = "tcp-server"\nlisten = "127.0.0.1:0"\n'
                                   'unsolicited = true\n')
                          + b'[orders]\nmllp_listen = "127.0.0.1:2576"\n'
                            b'time_zone = "Asia/Bangkok"\nhospital = "BV_TEST"\n',
                          tmp_path / "gw.toml")
    assert config.orders is not None
    assert (config.orders.name, config.orders.driver.name, config.orders.transport,
            config.orders.host, config.orders.port, config.orders_time_zone) == (
        "his-orders", "generic-hl7", "tcp-server", "127.0.0.1", 2576, "Asia/Bangkok")
    assert config.orders_hospital == "BV_TEST"
    assert [a.unsolicited for a in config.analyzers] == [True]
    assert parse_config(ONE_ANALYZER, tmp_path / "gw.toml").orders is None


def test_bad_orders_settings_are_located(tmp_path: Path) -> None:
    """A bad address, an unknown zone, a clash with an analyzer name, a non-boolean flag."""
    got = problems(analyzer('name = "his-orders"\ndriver = "roche-cobas"\n'
                            'transport = "tcp-server"\nlisten = "127.0.0.1:0"\n'
                            'unsolicited = "yes"\n')
                   + b'[orders]\nmllp_listen = "2576"\ntime_zone = "Mars/Olympus"\n', tmp_path)
    assert got == (
        "analyzers[0].unsolicited: expected true or false, got a string ('yes')",
        "orders.hospital: missing (expected a string)",
        "orders.time_zone: unknown time zone 'Mars/Olympus'",
        "orders.mllp_listen: expected HOST:PORT with a port from 0 to 65535, got '2576'",
    )
    clash = problems(analyzer('name = "his-orders"\ndriver = "roche-cobas"\n'
                              'transport = "tcp-server"\nlisten = "127.0.0.1:0"\n')
                     + b'[orders]\nmllp_listen = "127.0.0.1:2576"\nhospital = "H"\n',
                     tmp_path)
    assert clash == ("orders: an analyzer is named 'his-orders', the name of the order "
                     "link; rename the analyzer",)


def test_order_download_is_for_astm_links_with_e1381_framing(tmp_path: Path) -> None:
    """order_download = true on an ASTM link; an HL7 link or a non-boolean is located."""
    config = parse_config(analyzer('name = "chem1"\ndriver = "roche-cobas"\n'
                                   'transport = "tcp-server"\nlisten = "127.0.0.1:0"\n'
                                   'order_download = true\n'), tmp_path / "gw.toml")
    assert [a.order_download for a in config.analyzers] == [True]
    assert problems(analyzer('name = "bs1"\ndriver = "mindray-bs"\n'
                             'transport = "tcp-server"\nlisten = "127.0.0.1:0"\n'
                             'order_download = true\n'), tmp_path) == (
        "analyzers[0].order_download: driver mindray-bs does not take pushed orders here "
        "(only ASTM links with E1381 framing do); it can ask with host queries",)
    assert problems(analyzer('name = "chem1"\ndriver = "roche-cobas"\n'
                             'transport = "tcp-server"\nlisten = "127.0.0.1:0"\n'
                             'order_download = 1\n'), tmp_path) == (
        "analyzers[0].order_download: expected true or false, got an integer (1)",)


def test_shipped_mappings_are_found_in_a_checkout_or_where_pip_put_them(tmp_path: Path) -> None:
    """A checkout's mappings/ first; a wheel's data files (<prefix>/share/lis-gateway/
    mappings, as setup.cfg installs them) otherwise; and the data files name every table."""
    checkout, prefix = tmp_path / "src" / "mappings", tmp_path / "venv"
    installed = prefix / "share" / "lis-gateway" / "mappings"
    assert shipped_mappings(checkout, prefix) == checkout  # neither: the checkout's path
    installed.mkdir(parents=True)
    (installed / "README.md").write_text("tables", "utf-8")
    assert shipped_mappings(checkout, prefix) == installed
    checkout.mkdir(parents=True)
    (checkout / "README.md").write_text("tables", "utf-8")
    assert shipped_mappings(checkout, prefix) == checkout
    setup = configparser.ConfigParser()
    setup.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    patterns = setup["options.data_files"]["share/lis-gateway/mappings"]
    assert {p.strip() for p in patterns.split(",")} == {"mappings/*.csv", "mappings/README.md"}
    assert SHIPPED_MAPPINGS.name == "mappings" and any(SHIPPED_MAPPINGS.glob("*.csv"))
