"""The gateway's configuration: one TOML file, checked completely before anything starts.

The accepted shape::

    [database]
    url = "sqlite:///var/lis.db"          # or postgresql+psycopg://...

    [mappings]                            # optional
    directories = ["site-mappings"]       # searched before the shipped tables

    [wire]                                # optional
    record_dir = "var/wire"               # wire recordings of every connection

    [rules]                               # optional: autoverification
    file = "rules.toml"                   # without it every result is held

    [lifecycle]                           # optional; the defaults are shown
    require_approval = true               # a lab doctor approves before release
    autoverified_skips_technician = false
    distinct_approver = true              # the approver is not the validator
    release_autoverified = false          # the gateway releases autoverified results
                                          # (needs the two-step rules above relaxed)

    [[destinations]]                      # optional: where released results go
    name = "his"                          # the outbox key; keep it stable
    type = "hl7-mllp"                     # ORU^R01 v2.5.1 over MLLP
    host = "127.0.0.1"
    port = 2575
    # ack_timeout = 30                    # seconds the HIS has to answer
    # retry_first = 5  retry_cap = 900    # back-off: first delay, longest delay (s)
    hospital = "BV_BACHMAI"               # PID-3 CX.4 of hospital patient IDs
    # sending_facility, receiving_application, receiving_facility  (MSH-4..6)
    # tls = true  ca_file = "his-ca.pem"  client_cert = "gateway.pem"  # MLLP over TLS

    # [[destinations]]                    # an HIS with a REST API
    # name = "his-api"  type = "rest-json"
    # url = "https://his.example/api/lab-results"
    # token_file = "/etc/lis-gateway/his-api.token"   # Authorization: Bearer ...
    # template = "his-api-body.json"      # JSON with "{{field}}" placeholders
    # [[destinations]]                    # a FHIR R4 server (transaction Bundle)
    # name = "emr-fhir"  type = "fhir"  url = "https://emr.example/fhir"
    # hospital = "BV_BACHMAI"  # patient_system = "https://bv.example/patient-id"
    # [[destinations]]                    # files for an HIS that polls a folder
    # name = "drop"  type = "file"  directory = "/var/lib/lis-gateway/drop"
    # format = "hl7"                      # hl7 | json | fhir

    [orders]                              # optional: orders from the HIS
    mllp_listen = "127.0.0.1:2576"        # ORM^O01 / OML^O21 over MLLP
    hospital = "BV_BACHMAI"               # PID-3 CX.4 in host-query replies
    # time_zone = "Asia/Ho_Chi_Minh"      # for HIS times without an offset
    # api_token_file = "his-orders.token" # POST /api/orders (JSON) with this bearer token

    [web]                                 # optional: the HTTP side
    listen = "127.0.0.1:8080"             # /healthz, /api/orders
    # secure_cookies = true               # behind a TLS proxy
    # trusted_proxies = ["127.0.0.1"]     # whose X-Forwarded-For names the client

    [[analyzers]]
    name = "chem1"
    driver = "roche-cobas"
    transport = "tcp-server"              # tcp-server | tcp-client | serial
    listen = "127.0.0.1:15001"            # tcp-server
    # unsolicited = true                  # results need no HIS order (with [orders])
    # order_download = true               # push orders and reruns to it (ASTM E1381)
    # section = "haematology"             # its lab section: only people holding it see
    #                                     # and act on its results (all analyzers or none)
    # host = "10.0.0.5"  port = 5000      # tcp-client
    # device = "/dev/ttyUSB0"  baudrate = 9600  (bytesize, parity, stopbits)  # serial

Relative paths (mapping directories, record directory) are read from the
configuration file's directory. Every problem is reported with its key path
(``analyzers[1].transport: expected tcp-server, tcp-client or serial``) and
all problems are reported at once; unknown keys are problems too, so a typo
never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import drivers
from lis_gateway.lifecycle import GroupPolicy, Policies, Policy
from lis_gateway.linkspec import DestinationSpec, LinkSpec
from lis_gateway.rules import RuleSet

if TYPE_CHECKING:
    from lis_gateway.service import LinkSpec

#: The mapping tables shipped with the gateway (searched after the site's directories).
def shipped_mappings(checkout: Path, prefix: Path) -> Path:
    """Where the shipped mapping tables are: beside the package in a checkout (or an
    editable install), else where ``pip install`` put them (``<prefix>/share/lis-gateway/
    mappings``, from setup.cfg's data files); the checkout's path when neither has them."""
    installed = prefix / "share" / "lis-gateway" / "mappings"
    for candidate in (checkout, installed):
        if (candidate / "README.md").is_file():
            return candidate
    return checkout


SHIPPED_MAPPINGS = shipped_mappings(Path(__file__).resolve().parent.parent / "mappings",
                                    Path(sys.prefix))

#: The environment variable naming the configuration file.
CONFIG_ENV = "LIS_GATEWAY_CONFIG"

#: The file used when neither ``--config`` nor :data:`CONFIG_ENV` names one.
DEFAULT_CONFIG_FILE = "lis-gateway.toml"

_TRANSPORT_KEYS: Mapping[str, frozenset[str]] = {
    "tcp-server": frozenset({"listen"}),
    "tcp-client": frozenset({"host", "port"}),
    "serial": frozenset({"device", "baudrate", "bytesize", "parity", "stopbits"}),
}
_COMMON_KEYS = frozenset({"name", "driver", "transport", "unsolicited", "order_download",
                          "section"})
_ALL_LINK_KEYS = _COMMON_KEYS.union(*_TRANSPORT_KEYS.values())
_PARITIES = ("N", "E", "O", "M", "S")


#: A parsed ``[[...]]`` table with a unique name (an analyzer link or a destination).
_Named = TypeVar("_Named", LinkSpec, DestinationSpec)


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` lists every one with its key path."""

    def __init__(self, file: str, problems: list[str]) -> None:
        super().__init__("\n".join(f"{file}: {p}" for p in problems))
        self.file = file
        self.problems = tuple(problems)


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """The whole configuration file.

    Attributes:
        file: where it was read from.
        database_url: the SQLAlchemy URL of the store.
        analyzers: the links, in file order.
        mapping_directories: site directories, then :data:`SHIPPED_MAPPINGS`.
        record_dir: where wire recordings go (None: no recordings).
        rules_file: the autoverification rules file (None: every result is held).
        rule_set: the rules read from it (checked when the configuration is loaded).
        policy: the validation steps the lab requires (``[lifecycle]``), per test group
            (``[[lifecycle.groups]]``) with a default for the other tests.
        destinations: where released results are delivered (``[[destinations]]``).
        orders: the HIS's order link (``[orders] mllp_listen``), None without one.
        orders_time_zone: the zone of HIS times sent without an offset.
        orders_hospital: the assigning authority of hospital patient IDs in host-query
            replies (``[orders] hospital``, required with ``mllp_listen``).
        web_listen: where the HTTP side listens (``[web] listen``; None: none).
        log_format, log_level: ``[logging]``; the command-line options win when given.
        orders_api_token: the HIS's bearer token for ``POST /api/orders`` (read from
            ``[orders] api_token_file``; "" leaves the endpoint out).
    """

    file: Path
    database_url: str
    analyzers: tuple[LinkSpec, ...]
    mapping_directories: tuple[Path, ...] = (SHIPPED_MAPPINGS,)
    record_dir: Path | None = None
    rules_file: Path | None = None
    rule_set: RuleSet | None = None
    policy: Policies = field(default_factory=Policies)
    destinations: tuple[DestinationSpec, ...] = ()
    orders: LinkSpec | None = None
    orders_time_zone: str = "Asia/Ho_Chi_Minh"
    orders_hospital: str = ""
    web_listen: tuple[str, int] | None = None
    orders_api_token: str = field(default="", repr=False)
    #: ``[web] secure_cookies``: session cookies only over HTTPS (a TLS proxy in front)
    web_secure_cookies: bool = False
    #: ``[web] trusted_proxies``: reverse proxies whose X-Forwarded-For names the client
    web_trusted_proxies: tuple[str, ...] = ()
    log_format: str | None = None  #: ``[logging] format``; None: the command line decides
    log_level: str | None = None  #: ``[logging] level``

    def links(self) -> list[LinkSpec]:
        """The analyzers as :class:`lis_gateway.service.LinkSpec` objects."""
        return [dataclasses.replace(a, record_dir=self.record_dir) for a in self.analyzers]


def default_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$LIS_GATEWAY_CONFIG`` if set (and not empty), else ``./lis-gateway.toml``."""
    env = os.environ if environ is None else environ
    return Path(env.get(CONFIG_ENV) or DEFAULT_CONFIG_FILE)


def load_config(path: Path) -> GatewayConfig:
    """Read and check the configuration file at ``path``.

    Raises:
        ConfigError: the file cannot be read, is not TOML, or has problems
            (every problem is listed, each with its key path).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror}"]) from None
    return parse_config(data, path)


def parse_config(data: bytes, path: Path) -> GatewayConfig:
    """Check configuration text (``path`` names it and anchors relative paths).

    Raises:
        ConfigError: with every problem found.
    """
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), [f"not UTF-8 text (byte {exc.start})"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"not valid TOML: {exc}"]) from None
    checker = _Checker(path.parent)
    config = checker.config(doc, path)
    if checker.problems or config is None:
        raise ConfigError(str(path), checker.problems)
    return config


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class _Checker:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.problems: list[str] = []
        self.orders_hospital = ""
        self.web_secure_cookies = False
        self.web_trusted_proxies: tuple[str, ...] = ()

    def problem(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def unknown(self, where: str, table: Mapping[str, Any], known: frozenset[str]) -> None:
        for key in table:
            if key not in known:
                prefix = f"{where}." if where else ""
                self.problem(f"{prefix}{key}", "unknown key (expected one of "
                             f"{', '.join(sorted(known))})")

    def table(self, doc: Mapping[str, Any], key: str, required: bool) -> Mapping[str, Any]:
        value = doc.get(key)
        if value is None:
            if required:
                self.problem(key, "missing (expected a table)")
            return {}
        if not isinstance(value, dict):
            self.problem(key, f"expected a table, got {_kind(value)}")
            return {}
        return value

    def string(self, where: str, table: Mapping[str, Any], key: str, *,
               required: bool) -> str | None:
        value = table.get(key)
        if value is None:
            if required:
                self.problem(f"{where}.{key}", "missing (expected a string)")
            return None
        if not isinstance(value, str) or not value.strip():
            self.problem(f"{where}.{key}", f"expected a non-empty string, got {_kind(value)}")
            return None
        return value

    def integer(self, where: str, table: Mapping[str, Any], key: str, low: int, high: int,
                ) -> int | None:
        value = table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.problem(f"{where}.{key}", f"expected an integer from {low} to {high}, "
                         f"got {value!r}")
            return None
        return value

    def path(self, text: str) -> Path:
        path = Path(text).expanduser()
        return path if path.is_absolute() else self.base / path

    def config(self, doc: Mapping[str, Any], file: Path) -> GatewayConfig | None:
        self.unknown("", doc, frozenset({"database", "analyzers", "mappings", "wire", "rules",
                                           "lifecycle", "destinations", "orders", "web",
                                           "logging"}))
        database = self.table(doc, "database", required=True)
        self.unknown("database", database, frozenset({"url"}))
        url = (self.string("database", database, "url", required=True) if "database" in doc
               else None)  # a missing [database] is already reported
        if url is not None and not _looks_like_url(url):
            self.problem("database.url", f"expected an SQLAlchemy URL such as "
                         f"sqlite:///var/lis.db, got {url!r}")
        mappings = self.table(doc, "mappings", required=False)
        self.unknown("mappings", mappings, frozenset({"directories"}))
        directories = self.directories(mappings.get("directories"))
        wire = self.table(doc, "wire", required=False)
        self.unknown("wire", wire, frozenset({"record_dir"}))
        record = self.string("wire", wire, "record_dir", required=False)
        rules_file, rule_set = self.rules(self.table(doc, "rules", required=False))
        policy = self.policy(self.table(doc, "lifecycle", required=False))
        analyzers = self.analyzers(doc.get("analyzers"))
        destinations = self.destinations(doc.get("destinations"))
        orders_table = self.table(doc, "orders", required=False)
        orders, zone = self.orders(orders_table, analyzers)
        web = self.web(self.table(doc, "web", required=False))
        token = self.api_token(orders_table, web)
        log_format, log_level = self.logging(self.table(doc, "logging", required=False))
        if url is None or analyzers is None or destinations is None:
            return None
        return GatewayConfig(file=file, database_url=url, analyzers=analyzers,
                             mapping_directories=(*directories, SHIPPED_MAPPINGS),
                             record_dir=None if record is None else self.path(record),
                             rules_file=rules_file, rule_set=rule_set, policy=policy,
                             destinations=destinations, orders=orders, orders_time_zone=zone,
                             orders_hospital=self.orders_hospital, web_listen=web,
                             orders_api_token=token, log_format=log_format,
                             log_level=log_level,
                             web_secure_cookies=self.web_secure_cookies,
                             web_trusted_proxies=self.web_trusted_proxies)

    def logging(self, table: Mapping[str, Any]) -> tuple[str | None, str | None]:
        """``[logging] format`` (console, json) and ``level``; None: the command line's."""
        self.unknown("logging", table, frozenset({"format", "level"}))
        found: list[str | None] = []
        for key, allowed in (("format", ("console", "json")),
                             ("level", ("debug", "info", "warning", "error"))):
            value = self.string("logging", table, key, required=False)
            if value is not None and value not in allowed:
                self.problem(f"logging.{key}", f"expected {' or '.join(allowed)}, got {value!r}")
                value = None
            found.append(value)
        return found[0], found[1]

    def web(self, table: Mapping[str, Any]) -> tuple[str, int] | None:
        """``[web] listen``: where the HTTP side listens (None: no HTTP side)."""
        self.unknown("web", table, frozenset({"listen", "secure_cookies", "trusted_proxies"}))
        proxies = table.get("trusted_proxies", [])
        if not isinstance(proxies, list):
            self.problem("web.trusted_proxies", f"expected a list of IP addresses, got "
                         f"{_kind(proxies)}")
            proxies = []
        for i, proxy in enumerate(proxies):
            try:
                ipaddress.ip_address(proxy if isinstance(proxy, str) else "")
            except ValueError:
                self.problem(f"web.trusted_proxies[{i}]", f"expected an IP address (the "
                             f"proxy's, as the gateway sees it), got {proxy!r}")
        self.web_trusted_proxies = tuple(str(ipaddress.ip_address(p)) for p in proxies
                                         if isinstance(p, str) and _is_ip(p))
        listen = self.string("web", table, "listen", required=bool(table))
        secure = table.get("secure_cookies", False)
        if not isinstance(secure, bool):
            self.problem("web.secure_cookies", f"expected true or false, got {_kind(secure)}")
        self.web_secure_cookies = secure is True
        if listen is None:
            return None
        parsed = _host_port(listen)
        if parsed is None:
            self.problem("web.listen", f"expected HOST:PORT with a port from 0 to 65535, "
                         f"got {listen!r}")
        return parsed

    def api_token(self, orders: Mapping[str, Any], web: tuple[str, int] | None) -> str:
        """``[orders] api_token_file``: the HIS's bearer token for ``POST /api/orders``."""
        name = self.string("orders", orders, "api_token_file", required=False)
        if name is None:
            return ""
        if web is None:
            self.problem("orders.api_token_file", "the order API needs [web] listen")
        path = self.path(name)
        try:
            token = path.read_text("utf-8").strip()
        except OSError as exc:
            self.problem("orders.api_token_file", f"cannot read the token file {str(path)!r}: "
                         f"{exc.strerror}")
            return ""
        except UnicodeDecodeError:
            self.problem("orders.api_token_file", f"the token file {str(path)!r} is not UTF-8")
            return ""
        if len(token) < 16 or any(c.isspace() or not c.isprintable() for c in token):
            self.problem("orders.api_token_file", "the token must be one line of at least "
                         "16 characters without spaces")
            return ""
        return token

    def rules(self, table: Mapping[str, Any]) -> tuple[Path | None, RuleSet | None]:
        from lis_gateway.rules_file import RulesError, load_rules

        self.unknown("rules", table, frozenset({"file"}))
        name = self.string("rules", table, "file", required=False)
        if name is None:
            return None, None
        path = self.path(name)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.problem("rules.file", f"cannot read {str(path)!r}: {exc}")
            return path, None
        try:
            return path, load_rules(text)
        except RulesError as exc:
            self.problem("rules.file", f"{path}: {exc}")
            return path, None

    def policy(self, table: Mapping[str, Any]) -> Policies:
        """``[lifecycle]``: the default policy and ``[[lifecycle.groups]]``."""
        keys = ("require_approval", "autoverified_skips_technician", "distinct_approver",
                "release_autoverified")
        self.unknown("lifecycle", table, frozenset((*keys, "groups")))
        default = self._policy_values("lifecycle", table, keys, Policy())
        groups: list[GroupPolicy] = []
        raw_groups = table.get("groups", [])
        if not isinstance(raw_groups, list):
            self.problem("lifecycle.groups", f"expected [[lifecycle.groups]] tables, got "
                         f"{_kind(raw_groups)}")
            raw_groups = []
        seen: dict[str, str] = {}
        for i, group in enumerate(raw_groups):
            path = f"lifecycle.groups[{i}]"
            if not isinstance(group, dict):
                self.problem(path, f"expected a table, got {_kind(group)}")
                continue
            self.unknown(path, group, frozenset((*keys, "name", "tests")))
            name = group.get("name")
            if not isinstance(name, str) or not name.strip():
                self.problem(f"{path}.name", "expected the group's name")
                name = f"group {i}"
            tests = group.get("tests")
            if not isinstance(tests, list) or not tests or not all(
                    isinstance(t, str) and t.strip() for t in tests):
                self.problem(f"{path}.tests", "expected a list of local test codes")
                tests = []
            for code in tests:
                if code in seen:
                    self.problem(f"{path}.tests", f"{code!r} is already in group {seen[code]!r}")
                seen.setdefault(code, name)
            policy = self._policy_values(path, group, keys, default)
            groups.append(GroupPolicy(name, frozenset(tests), policy))
        return Policies(default, tuple(groups))

    def _policy_values(self, path: str, table: Mapping[str, Any], keys: tuple[str, ...],
                       base: Policy) -> Policy:
        values: dict[str, bool] = {}
        for key in keys:
            if key in table:
                if isinstance(table[key], bool):
                    values[key] = table[key]
                else:
                    self.problem(f"{path}.{key}", f"expected true or false, got "
                                 f"{_kind(table[key])}")
        policy = dataclasses.replace(base, **values)
        if policy.release_autoverified and (policy.require_approval
                                            or not policy.autoverified_skips_technician):
            self.problem(f"{path}.release_autoverified",
                         "needs require_approval = false and autoverified_skips_technician "
                         "= true (an autoverified result is then released by the gateway)")
        return policy

    def directories(self, value: object) -> list[Path]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem("mappings.directories", f"expected a list of paths, got {_kind(value)}")
            return []
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                self.problem(f"mappings.directories[{i}]", f"expected a path, got {_kind(item)}")
                continue
            directory = self.path(item)
            if not directory.is_dir():
                self.problem(f"mappings.directories[{i}]", f"{str(directory)!r} is not a directory")
            out.append(directory)
        return out

    def analyzers(self, value: object) -> tuple[LinkSpec, ...] | None:
        if value is None:
            self.problem("analyzers", "missing (expected at least one [[analyzers]] table)")
            return None
        if not isinstance(value, list) or not value:
            self.problem("analyzers", "expected at least one [[analyzers]] table, got "
                         f"{_kind(value)}")
            return None
        found = self.named_tables("analyzers", value, self.analyzer)
        with_section = [a.name for a in found or () if a.section]
        if found is not None and with_section and len(with_section) < len(found):
            for i, a in enumerate(found):
                if not a.section:
                    self.problem(f"analyzers[{i}].section", "missing: other analyzers have a "
                                 f"section ({', '.join(with_section)}), so every analyzer needs "
                                 "one (its results are seen only by people holding it)")
            return None
        return found

    def named_tables(self, key: str, value: list[Any],
                     parse: Callable[[str, Mapping[str, Any]], _Named | None]
                     ) -> tuple[_Named, ...] | None:
        """Each table of ``[[key]]`` parsed, names unique; None when any has a problem."""
        out: list[_Named] = []
        names: dict[str, int] = {}
        for i, item in enumerate(value):
            where = f"{key}[{i}]"
            if not isinstance(item, dict):
                self.problem(where, f"expected a table, got {_kind(item)}")
                continue
            parsed = parse(where, item)
            if parsed is None:
                continue
            if parsed.name in names:
                self.problem(f"{where}.name", f"{parsed.name!r} is already the name of "
                             f"{key}[{names[parsed.name]}]")
                continue
            names[parsed.name] = i
            out.append(parsed)
        return tuple(out) if len(out) == len(value) else None

    def analyzer(self, where: str, item: Mapping[str, Any]) -> LinkSpec | None:
        before = len(self.problems)
        self.unknown(where, item, _ALL_LINK_KEYS)
        name = self.string(where, item, "name", required=True)
        driver_name = self.string(where, item, "driver", required=True)
        transport = self.string(where, item, "transport", required=True)
        spec = None
        if driver_name is not None:
            try:
                spec = drivers.get(driver_name)
            except KeyError:
                self.problem(f"{where}.driver", f"unknown driver {driver_name!r}; known: "
                             f"{', '.join(sorted(drivers.REGISTRY))}")
        if transport is not None and transport not in _TRANSPORT_KEYS:
            self.problem(f"{where}.transport", "expected tcp-server, tcp-client or serial, "
                         f"got {transport!r}")
            transport = None
        if transport is None:
            return None
        for key in sorted(_ALL_LINK_KEYS - _COMMON_KEYS - _TRANSPORT_KEYS[transport]):
            if key in item:
                self.problem(f"{where}.{key}", f"not used by transport {transport} (it "
                             f"takes {', '.join(sorted(_TRANSPORT_KEYS[transport]))})")
        fields: dict[str, Any] = {}
        if transport == "tcp-server":
            listen = self.string(where, item, "listen", required=True)
            if listen is not None:
                parsed = _host_port(listen)
                if parsed is None:
                    self.problem(f"{where}.listen", f"expected HOST:PORT with a port from "
                                 f"0 to 65535, got {listen!r}")
                else:
                    fields["host"], fields["port"] = parsed
        elif transport == "tcp-client":
            host = self.string(where, item, "host", required=True)
            port = self.integer(where, item, "port", 1, 65535)
            if "port" not in item:
                self.problem(f"{where}.port", "missing (expected an integer from 1 to 65535)")
            if host is not None and port is not None:
                fields["host"], fields["port"] = host, port
        else:
            fields["device"] = self.string(where, item, "device", required=True)
            fields["baudrate"] = self.integer(where, item, "baudrate", 50, 4_000_000)
            fields["bytesize"] = self.integer(where, item, "bytesize", 5, 8)
            parity = item.get("parity")
            if parity is not None and parity not in _PARITIES:
                self.problem(f"{where}.parity", f"expected one of {', '.join(_PARITIES)}, "
                             f"got {parity!r}")
            fields["parity"] = parity
            stopbits = item.get("stopbits")
            if stopbits is not None and (isinstance(stopbits, bool)
                                         or stopbits not in (1, 1.5, 2)):
                self.problem(f"{where}.stopbits", f"expected 1, 1.5 or 2, got {stopbits!r}")
            fields["stopbits"] = None if stopbits is None else float(stopbits)
        if len(self.problems) > before or name is None or spec is None:
            return None
        if transport == "serial" and spec.framing is drivers.Framing.BARE:
            self.problem(f"{where}.transport", f"driver {spec.name} sends bare records, "
                         "which only work over TCP")
            return None
        # Framing.CUSTOM is the Beckman AU online link: serial, or TCP either way
        # round (the gateway listens by default; the link is the same once connected).
        if spec.framing is drivers.Framing.CUSTOM and spec.custom_decoder is None:
            self.problem(f"{where}.driver", f"driver {spec.name} uses a vendor byte protocol "
                         "but has no decoder for its texts")
            return None
        unsolicited = item.get("unsolicited", False)
        if not isinstance(unsolicited, bool):
            self.problem(f"{where}.unsolicited",
                         f"expected true or false, got {_kind(unsolicited)}")
            return None
        download = item.get("order_download", False)
        if not isinstance(download, bool):
            self.problem(f"{where}.order_download",
                         f"expected true or false, got {_kind(download)}")
            return None
        if download and (spec.protocol is not drivers.Protocol.ASTM
                         or spec.framing is not drivers.Framing.E1381):
            self.problem(f"{where}.order_download",
                         f"driver {spec.name} does not take pushed orders here (only ASTM "
                         "links with E1381 framing do); it can ask with host queries")
            return None
        section = self.section(where, item)
        if section is None:
            return None
        analyzer = LinkSpec(name=name, driver=spec, transport=transport,
                            unsolicited=unsolicited, order_download=download,
                            section=section, **fields)
        return analyzer


    def section(self, where: str, item: Mapping[str, Any]) -> str | None:
        """An analyzer's ``section`` ("" when absent; None after a problem)."""
        from lis_gateway.sections import section_name

        text = self.string(where, item, "section", required=False)
        if text is None:
            return None if "section" in item else ""
        try:
            return section_name(text)
        except ValueError as exc:
            self.problem(f"{where}.section", str(exc))
            return None

    def orders(self, table: Mapping[str, Any], analyzers: tuple[LinkSpec, ...] | None
               ) -> tuple[LinkSpec | None, str]:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        from lis_gateway.order_intake import ORDER_LINK_NAME

        self.unknown("orders", table, frozenset({"mllp_listen", "time_zone", "hospital",
                                                 "api_token_file"}))
        self.orders_hospital = self.string("orders", table, "hospital",
                                           required="mllp_listen" in table) or ""
        zone = self.string("orders", table, "time_zone", required=False) or "Asia/Ho_Chi_Minh"
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            self.problem("orders.time_zone", f"unknown time zone {zone!r}")
        listen = self.string("orders", table, "mllp_listen", required=False)
        if listen is None:
            return None, zone
        parsed = _host_port(listen)
        if parsed is None:
            self.problem("orders.mllp_listen", f"expected HOST:PORT with a port from 0 to "
                         f"65535, got {listen!r}")
            return None, zone
        if any(a.name == ORDER_LINK_NAME for a in analyzers or ()):
            self.problem("orders", f"an analyzer is named {ORDER_LINK_NAME!r}, the name of "
                         "the order link; rename the analyzer")
            return None, zone
        return LinkSpec(name=ORDER_LINK_NAME, driver=drivers.get("generic-hl7"),
                        transport="tcp-server", host=parsed[0], port=parsed[1]), zone

    def destinations(self, value: object) -> tuple[DestinationSpec, ...] | None:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.problem("destinations", f"expected [[destinations]] tables, got {_kind(value)}")
            return None
        return self.named_tables("destinations", value, self.destination)

    def destination(self, where: str, item: Mapping[str, Any]) -> DestinationSpec | None:
        from lis_gateway.config_destinations import check_destination

        return check_destination(self, where, item)


def _host_port(text: str) -> tuple[str, int] | None:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        return None
    return host.strip("[]") or "0.0.0.0", int(port)


def _looks_like_url(text: str) -> bool:
    scheme, sep, _rest = text.partition("://")
    return bool(sep) and bool(scheme) and all(c.isalnum() or c in "+-_." for c in scheme)


def _kind(value: object) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
             list: "a list", dict: "a table"}
    return names.get(type(value), type(value).__name__) + (
        f" ({value!r})" if isinstance(value, (str, int, float)) else "")
