"""Released results reach a REST/JSON HIS, a FHIR server, a drop folder and an MLLP-over-TLS
HIS at once, through HTTP errors, silence, a dropped connection, a refusal and a restart.

Real parts: ``lis-gateway run --config`` in a subprocess on SQLite; the
analyzer over loopback TCP; two HTTP servers written here on the standard
library's ``http.server`` (no code shared with the gateway); an MLLP
receiver behind the standard library's ``ssl`` with a certificate made for
the test; fhir.resources (R4B models), not our code, reads the Bundles the
FHIR server receives.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from lis_gateway.outbound.delivery import EntryState
from lis_gateway.simulator import CHEMISTRY, chemistry_message
from tests.mllp_his import MllpHis

from .test_crash import Gateway, send_recording_acks
from .test_outbox_delivery import (
    MAPPING,
    ORDER,
    SAMPLE,
    WHEN,
    cli,
    order_port,
    send_order,
    wait_until,
)


class ScriptedHttp:
    """An HTTP server answering the n-th POST with ``script[n]`` (then ``default``).

    Answers: a status code (``"200"``, ``"503"``, ``"422"``), ``"silence"``
    (hold the request past the gateway's timeout, then close) or ``"drop"``
    (close without an answer). ``respond`` makes a 2xx body from the request.
    """

    def __init__(self, script: list[str], respond: Any = None) -> None:
        self.script, self.respond = script, respond
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with owner.lock:
                    index = len(owner.requests)
                    owner.requests.append(({k.lower(): v for k, v in self.headers.items()},
                                           body))
                answer = owner.script[index] if index < len(owner.script) else "200"
                if answer == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if answer == "silence":
                    time.sleep(2.5)  # past the gateway's 1 s timeout; it gave up already
                    self.close_connection = True
                    return
                status = int(answer)
                text = (owner.respond(body) if owner.respond and status < 300
                        else f'{{"loi": "HTTP {status} tu HIS"}}'.encode())
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, *args: Any) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def transaction_response(body: bytes) -> bytes:
    """What a FHIR server answers a transaction: one 201 per entry."""
    bundle = json.loads(body)
    return json.dumps({"resourceType": "Bundle", "type": "transaction-response",
                       "entry": [{"response": {"status": "201 Created"}}
                                 for _ in bundle["entry"]]}).encode()


def certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for ``localhost`` and its key (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "his-cert.pem", directory / "his-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def by_destination(got: list[Any], name: str) -> list[Any]:
    return [e for e in got if e.destination == name]


@pytest.mark.integration
def test_results_reach_rest_fhir_file_and_tls_destinations(tmp_path: Path) -> None:
    """Each destination gets every result; the REST one through 503, silence, drop and 422
    (dead-lettered, retried by a person after a restart); a retracted result reaches all
    four as a deletion; the reconciliation is exact."""
    api = ScriptedHttp(["503", "silence", "drop", "200", "200", "200", "200", "200", "422"])
    fhir = ScriptedHttp([], respond=transaction_response)
    cert_file, key_file = certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    mllp = MllpHis([], tls=context)
    (tmp_path / "api.token").write_text("t0k3n\n", encoding="utf-8")
    (tmp_path / "body.json").write_text(json.dumps({
        "maPhieu": "{{accession}}", "maBN": "{{hospital_id}}", "hoTen": "{{patient_name}}",
        "xetNghiem": "{{code}}", "ketQua": "{{number}}", "donVi": "{{unit}}",
        "trangThai": "{{status}}"}), encoding="utf-8")
    (tmp_path / "drop").mkdir()
    url = f"sqlite:///{tmp_path / 'lis.db'}"
    config = tmp_path / "lis-gateway.toml"
    retry = "ack_timeout = 1\nretry_first = 1\nretry_cap = 2\n"
    config.write_text(f"""
[database]
url = "{url}"
[mappings]
directories = ["site-mappings"]
[lifecycle]
require_approval = false
[orders]
mllp_listen = "127.0.0.1:0"
hospital = "BV_TEST"
[[analyzers]]
name = "chem1"
driver = "generic-astm"
transport = "tcp-server"
listen = "127.0.0.1:0"
[[destinations]]
name = "api"
type = "rest-json"
url = "http://127.0.0.1:{api.port}/api/ket-qua"
token_file = "api.token"
template = "body.json"
{retry}
[[destinations]]
name = "emr"
type = "fhir"
url = "http://127.0.0.1:{fhir.port}/fhir"
hospital = "BV_TEST"
{retry}
[[destinations]]
name = "drop"
type = "file"
directory = "drop"
format = "json"
[[destinations]]
name = "his-tls"
type = "hl7-mllp"
host = "localhost"
port = {mllp.port}
tls = true
ca_file = "{cert_file}"
hospital = "BV_TEST"
{retry}
""", encoding="utf-8")
    log = tmp_path / "gateway.log"
    (tmp_path / "site-mappings").mkdir()
    (tmp_path / "site-mappings" / "generic-astm.csv").write_text(MAPPING, encoding="utf-8")
    gateway = Gateway(config, log)
    try:
        port = gateway.port()
        assert str(send_order(order_port(log), ORDER).segment("MSA")[1]) == "AA"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            assert send_recording_acks([chemistry_message(1, WHEN)], sock) == {0}
        cli(config, "user", "add", "lan", "--roles", "technician")
        cli(config, "validate", SAMPLE, "--user", "lan", "--json")
        n = len(CHEMISTRY)

        def settled(es: list[Any]) -> bool:
            return len(es) == 4 * n and all(e.state is not EntryState.PENDING for e in es)

        got = wait_until(url, settled, "delivery to all four destinations")
    finally:
        assert gateway.stop() == 0, log.read_text("utf-8")

    rest = by_destination(got, "api")
    assert [(e.state, e.attempts) for e in rest] == [
        (EntryState.DELIVERED, 4), *[(EntryState.DELIVERED, 1)] * (n - 2), (EntryState.DEAD, 1)]
    assert [(e.last_status, e.last_error) for e in rest[:1] + rest[-1:]] == [
        ("delivered", "HTTP 200"), ("rejected", 'HTTP 422: {"loi": "HTTP 422 tu HIS"}')]
    for other in ("emr", "drop", "his-tls"):
        assert [(e.state, e.attempts) for e in by_destination(got, other)] == [
            (EntryState.DELIVERED, 1)] * n, other

    # a person fixes the cause in the HIS and retries the dead entry; the gateway restarts
    cli(config, "outbox", "retry", str(rest[-1].id), "--user", "lan")
    gateway = Gateway(config, log)
    try:
        gateway.port()
        got = wait_until(url, lambda es: all(e.state is EntryState.DELIVERED for e in es),
                       "delivery after the retry")
        # the lab doctor withdraws the glucose (a sample of another patient)
        cli(config, "user", "add", "dr_minh", "--roles", "doctor")
        cli(config, "retract", SAMPLE, "GLU", "--user", "dr_minh", "--reason",
            "mẫu của bệnh nhân khác")
        got = wait_until(url, lambda es: len(es) == 4 * n + 4 and all(
            e.state is EntryState.DELIVERED for e in es), "delivery of the retractions")
    finally:
        assert gateway.stop() == 0, log.read_text("utf-8")
        api.close()
        fhir.close()
        mllp.close()

    retractions = [e for e in got if e.kind == "retraction"]
    got = [e for e in got if e.kind == "result"]
    assert sorted(e.destination for e in retractions) == ["api", "drop", "emr", "his-tls"]
    retracted = {e.destination: e.control_id for e in retractions}
    # REST: same Idempotency-Key on every resend, the token, the site's template
    deletion = json.loads(api.requests.pop()[1])
    assert deletion["trangThai"] == "D"
    ids = [e.control_id for e in by_destination(got, "api")]
    keys = [headers["idempotency-key"] for headers, _ in api.requests]
    assert keys == [ids[0]] * 4 + ids[1:] + [ids[-1]]
    assert {headers["authorization"] for headers, _ in api.requests} == {"Bearer t0k3n"}
    first = json.loads(api.requests[3][1], parse_float=Decimal)
    assert (first["maPhieu"], first["maBN"], first["hoTen"], first["trangThai"]) == (
        SAMPLE, "BN0001", "Tran Thi Binh", "F")  # PID-5 Tran^Binh^Thi: family, given, middle
    assert isinstance(first["ketQua"], Decimal)

    # FHIR: every Bundle is valid for an independent model and carries its control ID
    from fhir.resources.R4B.bundle import Bundle

    last = json.loads(fhir.requests.pop()[1])
    assert [(e["request"]["method"], e["resource"].get("status")) for e in last["entry"][2:]] \
        == [("PUT", "entered-in-error")] * 2
    assert last["identifier"]["value"] == retracted["emr"]
    observations = []
    for _, body in fhir.requests:
        bundle = Bundle.model_validate_json(body)
        assert bundle.type == "transaction"
        [obs] = [e.resource for e in bundle.entry if e.resource.get_resource_type()
                 == "Observation"]
        observations.append(obs)
    assert sorted(o.identifier[0].value for o in observations) == sorted(
        e.control_id for e in by_destination(got, "emr"))
    assert {o.status for o in observations} == {"final"}

    # file drop: one JSON file per entry, named by its control ID
    files = sorted(p.name for p in (tmp_path / "drop").iterdir())
    assert files == sorted([f"{e.control_id}.json" for e in by_destination(got, "drop")]
                           + [f"{retracted['drop']}.json"])

    # MLLP over TLS: n ORU^R01, one per entry, then the deletion (OBX-11 D)
    deleted = mllp.received.pop()
    assert b"|D|" in deleted.split(b"\rOBX|", 1)[1] and retracted["his-tls"].encode() in deleted
    assert sorted(m.split(b"\r", 1)[0].split(b"|")[9].decode() for m in mllp.received) == \
        sorted(e.control_id for e in by_destination(got, "his-tls"))

    rows = [json.loads(line) for line in cli(config, "reconcile", "--json").stdout.splitlines()]
    assert len(rows) == n
    where = {(row["test"], d["destination"], d["where"]) for row in rows
             for d in row["destinations"]}
    names = ("api", "emr", "drop", "his-tls")
    assert where == {(code, name, "retracted" if code == "GLU" else "delivered")
                     for code, *_ in CHEMISTRY for name in names}
