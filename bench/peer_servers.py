"""Open Python ASTM receivers run as servers for the ingest comparison (peer venv only).

    bench/.venv-peers/bin/python bench/peer_servers.py pyastm PORT
    bench/.venv-peers/bin/python bench/peer_servers.py labmcp PORT STORE.jsonl

* ``pyastm``: python-astm 0.5.0's ``astm.server.Server`` (its select() loop,
  its ``RequestHandler``) with a records dispatcher that counts what it is
  given. It stores nothing: python-astm has no storage; a user adds it in the
  dispatcher, synchronously in the same loop.
* ``labmcp``: labmcp-astm-lis 0.1.3's ``ASTMReceiver`` on its
  ``ListenTransport`` (one analyzer connection at a time, a thread reading
  byte by byte) with its ``ResultStore`` appending each message to a JSON
  lines file (no fsync), patient fields redacted as by default.

Each prints ``listening PORT`` when ready and, on SIGTERM, one JSON line with
what it received (messages, result records), then exits.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from typing import Any

import pyastm_shim


def _stop_event() -> threading.Event:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    return stop


def pyastm(port: int) -> dict[str, Any]:
    pyastm_shim.apply()
    from astm import asynclib
    from astm.server import BaseRecordsDispatcher, Server

    counts = {"records": 0, "results": 0, "terminators": 0, "unknown": 0}

    class Counting(BaseRecordsDispatcher):  # type: ignore[misc]
        def on_result(self, record: Any) -> None:
            counts["results"] += 1
            counts["records"] += 1

        def on_terminator(self, record: Any) -> None:
            counts["terminators"] += 1
            counts["records"] += 1

        def on_header(self, record: Any) -> None:
            counts["records"] += 1

        def on_patient(self, record: Any) -> None:
            counts["records"] += 1

        def on_order(self, record: Any) -> None:
            counts["records"] += 1

        def on_unknown(self, record: Any) -> None:
            counts["unknown"] += 1
            counts["records"] += 1

    server = Server("127.0.0.1", port, dispatcher=Counting, encoding="latin-1")
    server.socket.listen(1024)  # its own listen(5) would drop SYNs of 100 analyzers
    stop = _stop_event()
    print(f"listening {port}", flush=True)
    while not stop.is_set():
        asynclib.loop(timeout=0.1, count=1)
    server.close()
    return {"peer": "python-astm 0.5.0 astm.server.Server", "messages": counts["terminators"],
            **counts}


def labmcp(port: int, store: str) -> dict[str, Any]:
    from labmcp_astm_lis.driver import ASTMReceiver, ListenTransport, ResultStore

    results = ResultStore(store_path=store, max_messages=100_000)
    receiver = ASTMReceiver(lambda: ListenTransport("127.0.0.1", port), mode="listen",
                            where=f"127.0.0.1:{port}", store=results, poll_s=0.05)
    stop = _stop_event()
    print(f"listening {port}", flush=True)
    stop.wait()
    receiver.close()
    msgs, total = results.messages(limit=1_000_000)
    return {"peer": "labmcp-astm-lis 0.1.3 ASTMReceiver", "messages": total,
            "results": sum(len(m.results) for m in msgs),
            "incomplete": sum(not m.complete for m in msgs)}


def main() -> int:
    kind, port = sys.argv[1], int(sys.argv[2])
    out = pyastm(port) if kind == "pyastm" else labmcp(port, sys.argv[3])
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
