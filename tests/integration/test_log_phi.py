"""Patient data never reaches the logs: PHI fed through every path, then searched for.

Real parts: ``lis-gateway --log-format json --log-level debug run`` in a
subprocess on SQLite. The same made-up patient travels as a REST order and
an MLLP order (ORM^O01), as the P record of ASTM results (an ordered
analyzer with order download and an ``unsolicited`` one), as the reply to a
host query, as a pushed download, and as the PID of the ORU^R01 the HIS
receives after validation from the command line. Then the whole log (and the
commands' output) is searched for every name, identifier and birth date, in
each spelling the gateway could have written.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lis_gateway.text import strip_diacritics
from tests.mllp_his import MllpHis

from .test_astm_host_query import MAPPING, ask, tcp_reader
from .test_crash import Gateway
from .test_order_download import Instrument, rows, wait_for
from .test_outbox_delivery import order_port, send_order
from .test_rest_orders import TOKEN, post, web_port

FAMILY, MIDDLE, GIVEN = "Phạm", "Thị", "Zuyên"
HOSPITAL_ID, NATIONAL_ID, CARD = "BNPHI7731", "079345678912", "DN4797900077312"
BIRTH = ("1961-07-15", "19610715")
UNSOLICITED = ("Quýt", "PTX-55117", "19550203")  # the unsolicited analyzer's own patient

ORDER = {
    "message_id": "HIS-PHI-1",
    "patient": {"hospital_id": HOSPITAL_ID, "national_id": NATIONAL_ID,
                "insurance_card": CARD, "family_name": FAMILY, "middle_name": MIDDLE,
                "given_name": GIVEN, "birth_date": BIRTH[0], "sex": "F", "visit_number": "VV77"},
    "orders": [{"barcode": "PHI001", "placer_order": "PP1", "tests": ["GLU", "K"]}],
}
ORM = (f"MSH|^~\\&|HIS|BV_TEST|LIS||20261122080000||ORM^O01|ORD-PHI|P|2.3.1||||||UNICODE UTF-8\r"
       f"PID|1||{HOSPITAL_ID}^^^BV_TEST^PI~{NATIONAL_ID}^^^BCA^NNVNM||"
       f"{FAMILY}^{GIVEN}^{MIDDLE}||{BIRTH[1]}|F\r"
       f"ORC|NW|PHI002\rOBR|1|PHI002||GLU^Glucose^L\r").encode()


class DebugGateway(Gateway):
    """The gateway with every debug line logged, as JSON."""

    def __init__(self, config: Path, log: Path) -> None:
        self.log = log
        self._out = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "lis_gateway", "--log-format", "json",
             "--log-level", "debug", "run", "--config", str(config)],
            stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT)
        self._start = log.stat().st_size


def spellings() -> set[str]:
    """Every way the patient could appear in text the gateway writes."""
    words = {FAMILY, MIDDLE, GIVEN, HOSPITAL_ID, NATIONAL_ID, CARD, *BIRTH, *UNSOLICITED}
    return words | {strip_diacritics(w) for w in words} | {w.upper() for w in words}


@pytest.mark.integration
def test_no_patient_data_in_the_logs_whatever_path_it_takes(tmp_path: Path) -> None:
    receiver = MllpHis([])
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "generic-astm.csv").write_text(MAPPING, encoding="utf-8")
    (tmp_path / "orders.token").write_text(TOKEN + "\n", encoding="utf-8")
    db = tmp_path / "lis.db"
    config = tmp_path / "lis-gateway.toml"
    config.write_text(f"""
[database]
url = "sqlite:///{db}"
[mappings]
directories = ["maps"]
[lifecycle]
require_approval = false
[orders]
mllp_listen = "127.0.0.1:0"
hospital = "BV_TEST"
api_token_file = "orders.token"
[web]
listen = "127.0.0.1:0"
[[destinations]]
name = "his"
type = "hl7-mllp"
host = "127.0.0.1"
port = {receiver.port}
hospital = "BV_TEST"
[[analyzers]]
name = "chem1"
driver = "generic-astm"
transport = "tcp-server"
listen = "127.0.0.1:0"
order_download = true
[[analyzers]]
name = "chem2"
driver = "generic-astm"
transport = "tcp-server"
listen = "127.0.0.1:0"
unsolicited = true
""", encoding="utf-8")
    log = tmp_path / "gateway.log"
    gateway = DebugGateway(config, log)
    outputs: list[str] = []
    try:
        assert post(web_port(log), json.dumps(ORDER).encode())[0] == 201
        assert str(send_order(order_port(log), ORM).segment("MSA")[1]) == "AA"
        with socket.create_connection(("127.0.0.1", gateway.port("chem1")), timeout=5) as sock:
            analyzer = Instrument(sock)
            assert analyzer.download()[1].startswith("P|1|" + HOSPITAL_ID)  # pushed
            analyzer.send((f"H|\\^&|||SIM^1\rP|1|{HOSPITAL_ID}|||Pham^Zuyen^Thi||"
                           f"{BIRTH[1]}|F\rO|1|PHI001||^^^G1\r"
                           f"R|1|^^^G1|5.1|mmol/L||N||F||||20261122081000\rL|1|N\r"
                           ).encode("latin-1"))
        with socket.create_connection(("127.0.0.1", gateway.port("chem1")), timeout=5) as sock:
            reply = ask(sock.sendall, tcp_reader(sock), "PHI002")  # a host query
            assert reply[1].startswith("P|1|" + HOSPITAL_ID)
        with socket.create_connection(("127.0.0.1", gateway.port("chem2")), timeout=5) as sock:
            Instrument(sock).send((f"H|\\^&|||SIM^2\rP|1|{UNSOLICITED[1]}|||Le^Quyt||"
                                   f"{UNSOLICITED[2]}|M\rO|1|PHI003||^^^G1\r"
                                   f"R|1|^^^G1|6.2|mmol/L||N||F||||20261122081500\rL|1|N\r"
                                   ).encode("latin-1"))
        for command in (["user", "add", "lan", "--roles", "technician"],
                        ["validate", "PHI001", "--user", "lan"],
                        ["validate", "PHI003", "--user", "lan"],
                        ["results", "--sample", "PHI001", "--json"],
                        ["reconcile"], ["outbox", "list"], ["downloads", "list"]):
            done = subprocess.run([sys.executable, "-m", "lis_gateway", *command,
                                   "--config", str(config)], capture_output=True, text=True,
                                  timeout=60, check=False)
            assert done.returncode in (0, 1), done.stderr
            outputs += [done.stdout, done.stderr]
        wait_for(lambda: len(receiver.received) >= 2, "the ORU^R01s did not reach the HIS")
        wait_for(lambda: any(r[3] == "sent" for r in rows(db)), "no download recorded sent")
    finally:
        assert gateway.stop() == 0, log.read_text("utf-8")
        receiver.close()
    delivered = b"".join(receiver.received).decode("utf-8")
    assert HOSPITAL_ID in delivered and "PTX-55117^^^chem2^PT" in delivered  # it did travel
    text = log.read_text("utf-8") + "\n".join(outputs)
    assert text.count("\n") > 50  # debug logs were written
    leaked = sorted(w for w in spellings() if w in text)
    assert leaked == [], f"patient data in the logs or command output: {leaked}"
