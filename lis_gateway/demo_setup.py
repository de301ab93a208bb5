"""What ``lis-gateway demo`` prepares before it starts: files, configuration, accounts.

Everything lives under one state directory (``./var/demo`` by default):

* ``lis.db``: the SQLite store (created and migrated on first start, kept
  between runs, so results, audit log and accounts survive a restart);
* ``mappings/generic-astm.csv`` and ``rules.toml``: copied from the
  package's demo data (the simulated ASTM analyzers' codes; the blood count
  analyzer speaks Mindray BC and uses the shipped ``mindray-bc`` table);
* ``lis-gateway.toml``: the configuration the demo runs, written for the
  ports of this run, so the IT person can read it and try
  ``lis-gateway check-config`` on it;
* ``wire/``: wire recordings of every connection.

The demo accounts (technician, doctor, admin) are created on first start
with the demo password; they are printed on the terminal, never logged.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection

from lis_gateway.store import repository
from lis_gateway.store.sections import set_user_sections
from lis_gateway.store.users import password_hash

DEMO_DATA = Path(__file__).resolve().parent / "demo_data"
#: The demo's password for every demo account (a demo, on 127.0.0.1 only).
DEMO_PASSWORD = "demo-lis-2026"
#: Analyzer link names.
CHEMISTRY, HAEMATOLOGY, BLOOD_COUNT = "chem-serial", "heme-tcp", "bc-hl7"
#: The blood count's local codes (mindray-bc table) and the ASTM haematology panel's.
HAEMATOLOGY_TESTS = ("WBC", "RBC", "HGB", "HCT", "MCV", "PLT", "NEUT%", "LYMPH%", "NEU#",
                     "LYM#", "MONO#", "EOS#", "BASO#", "MCH", "MCHC", "RDW-CV", "MPV")


@dataclass(frozen=True, slots=True)
class DemoAccount:
    """One demo person: user name, display name, roles, sections."""

    username: str
    display_name: str
    roles: tuple[str, ...]
    sections: tuple[str, ...] = ("biochemistry", "haematology")


ACCOUNTS = (
    DemoAccount("ktv", "Nguyễn Thị Lan (KTV)", ("technician",)),
    DemoAccount("bacsi", "BS. Trần Văn Minh", ("doctor",)),
    DemoAccount("admin", "Quản trị hệ thống", ("admin",), ()),
)


@dataclass(frozen=True, slots=True)
class DemoPorts:
    """Where each part listens (0: any free port; the HIS port must be known)."""

    web: int = 8080
    astm_tcp: int = 4001
    hl7_tcp: int = 4002
    orders: int = 2576
    his: int = 2575


def prepare(state: Path) -> None:
    """Create the state directory and copy the demo's mapping table and rules there."""
    (state / "mappings").mkdir(parents=True, exist_ok=True)
    (state / "wire").mkdir(exist_ok=True)
    shutil.copyfile(DEMO_DATA / "generic-astm.csv", state / "mappings" / "generic-astm.csv")
    shutil.copyfile(DEMO_DATA / "rules.toml", state / "rules.toml")


def config_text(state: Path, serial_device: str, ports: DemoPorts, host: str = "127.0.0.1"
                ) -> str:
    """The demo's configuration (TOML), for this run's serial device and ports."""
    tests = ", ".join(f'"{t}"' for t in HAEMATOLOGY_TESTS)
    return f"""\
# Written by `lis-gateway demo` for this run; it is rewritten at every start.
# Check it with: lis-gateway check-config {state / "lis-gateway.toml"}

[database]
url = "sqlite:///{(state / "lis.db").resolve()}"

[mappings]
directories = ["mappings"]            # the demo's generic-astm table; shipped ones after

[wire]
record_dir = "wire"

[rules]
file = "rules.toml"

[lifecycle]                           # biochemistry: technician, then doctor
require_approval = true

[[lifecycle.groups]]                  # haematology: what the rules pass goes out at once
name = "haematology"
tests = [{tests}]
require_approval = false
autoverified_skips_technician = true
release_autoverified = true

[logging]
format = "console"
level = "warning"

[[destinations]]                      # the simulated HIS
name = "his"
type = "hl7-mllp"
host = "{host}"
port = {ports.his}
hospital = "BV_DEMO"
ack_timeout = 10
retry_first = 2
retry_cap = 30

[orders]
mllp_listen = "{host}:{ports.orders}"
hospital = "BV_DEMO"

[web]
listen = "{host}:{ports.web}"

[[analyzers]]                         # chemistry, ASTM over RS-232 (a pseudo-terminal)
name = "{CHEMISTRY}"
driver = "generic-astm"
transport = "serial"
device = "{serial_device}"
section = "biochemistry"

[[analyzers]]                         # haematology, ASTM over TCP; the analyzer connects
name = "{HAEMATOLOGY}"
driver = "generic-astm"
transport = "tcp-server"
listen = "{host}:{ports.astm_tcp}"
section = "haematology"

[[analyzers]]                         # blood counts, HL7 v2.3.1 over TCP (Mindray BC style)
name = "{BLOOD_COUNT}"
driver = "mindray-bc"
transport = "tcp-server"
listen = "{host}:{ports.hl7_tcp}"
section = "haematology"
"""


def ensure_accounts(conn: Connection, now: datetime,
                    accounts: Iterable[DemoAccount] = ACCOUNTS) -> list[DemoAccount]:
    """Create the demo accounts that do not exist yet; returns the ones created."""
    created = []
    for account in accounts:
        try:
            repository.get_user(conn, account.username)
            continue
        except repository.NotFoundError:
            pass
        repository.create_user(conn, account.username, now, display_name=account.display_name,
                               roles=account.roles, actor="demo", source="demo",
                               hashed_password=password_hash(DEMO_PASSWORD))
        if account.sections:
            set_user_sections(conn, account.username, account.sections, now, actor="demo",
                              source="demo")
        created.append(account)
    return created
