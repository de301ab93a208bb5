"""python-astm 0.5.0 side of the benchmark; runs only in ``bench/.venv-peers``.

``bench/run.py`` starts this script with the peer interpreter and sends the
workload (built with our encoder) as JSON on stdin:

* ``python bench/pyastm_peer.py check`` prints what python-astm produces from
  the workload (decoded fields, result rows, ACK replies, encoded frames);
  ``run.py`` compares that with our code's output before anything is timed.
* ``python bench/pyastm_peer.py time`` prints the timings.

Standard library plus ``astm`` only; ``collections.Iterable`` is restored by
:mod:`pyastm_shim` before ``astm`` is imported.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pyastm_shim
import timing

ENCODING = "latin-1"


def _load() -> tuple[Any, Any, Any]:
    pyastm_shim.apply()
    import astm
    import astm.codec
    import astm.server
    return astm, astm.codec, astm.server


astm, codec, server = _load()


# ------------------------------------------------------------------ helpers

def flatten(value: Any) -> str:
    """A decoded python-astm field back to its raw text (None -> '')."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if value and isinstance(value[0], list):  # repeats of components
        return "\\".join(flatten(rep) for rep in value)
    return "^".join(flatten(comp) for comp in value)


def first_component(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if value and isinstance(value[0], list):
        value = value[0]
    return (value[0] or "").strip()


def components(value: Any) -> list[str]:
    if value is None:
        return [""]
    if isinstance(value, str):
        return [value]
    if value and isinstance(value[0], list):
        value = value[0]
    return [c or "" for c in value]


def field(rec: list[Any], index: int) -> Any:
    return rec[index] if index < len(rec) else None


def sample_id(order: list[Any] | None) -> str:
    """generic-astm's rule: O-3 first component, else first non-empty of O-4."""
    if order is None:
        return ""
    sid = first_component(field(order, 2))
    if sid:
        return sid
    for comp in components(field(order, 3)):
        if comp.strip():
            return comp.strip()
    return ""


def test_code(value: Any) -> str:
    """generic-astm's rule: first non-empty component of R-3 from the fourth on."""
    comps = components(value)
    if len(comps) == 1:
        return comps[0].strip()
    for comp in comps[3:] + comps:
        if comp.strip():
            return comp.strip()
    return ""


def flags(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list) and value and isinstance(value[0], list):
        return [flatten(rep) for rep in value if flatten(rep)]
    return [flatten(value)]


def result_row(order: list[Any] | None, rec: list[Any]) -> list[Any]:
    """The same 9 values as our ResultRow (minus record_index)."""
    return [sample_id(order), test_code(field(rec, 2)), flatten(field(rec, 3)),
            flatten(field(rec, 4)), flatten(field(rec, 5)), flags(field(rec, 6)),
            flatten(field(rec, 8)), flatten(field(rec, 12)), flatten(field(rec, 13))]


class Collector(server.BaseRecordsDispatcher):  # type: ignore[misc]
    """A records dispatcher (python-astm's extension point) that extracts results."""

    def __init__(self) -> None:
        super().__init__(ENCODING)
        self.order: list[Any] | None = None
        self.rows: list[list[Any]] = []
        self.done: list[list[list[Any]]] = []
        self.record_types: list[str] = []

    def on_header(self, record: list[Any]) -> None:
        self.record_types.append("H")

    def on_patient(self, record: list[Any]) -> None:
        self.record_types.append("P")
        self.order = None

    def on_order(self, record: list[Any]) -> None:
        self.record_types.append("O")
        self.order = record

    def on_result(self, record: list[Any]) -> None:
        self.record_types.append("R")
        self.rows.append(result_row(self.order, record))

    def on_terminator(self, record: list[Any]) -> None:
        self.record_types.append("L")
        self.done.append(self.rows)
        self.rows = []
        self.order = None

    def on_unknown(self, record: list[Any]) -> None:
        self.record_types.append("?" + str(record[0])[:12])

    def take(self) -> list[list[Any]]:
        rows = [row for message in self.done for row in message]
        self.done = []
        self.record_types = []
        return rows


class CodecReceiver:
    """python-astm's receive logic built from ``astm.codec``, one frame per read.

    Same steps as ``astm.server.RequestHandler`` (ENQ -> ACK; per frame
    ``is_chunked_message``, collect ETB chunks, ``join`` them at the ETX frame,
    ``decode_message`` with its checksum check, hand the records to the
    dispatcher; EOT ends the transfer), except that the chunked/not-chunked
    decision is made per frame. RequestHandler latches it on the first frame
    of a connection, which truncates ETB-continued records (measured separately).
    """

    def __init__(self) -> None:
        self.dispatcher = Collector()
        self.chunks: list[bytes] = []
        self.in_transfer = False

    def feed(self, data: bytes) -> bytes:
        if data == b"\x05":
            self.in_transfer = True
            return b"\x06"
        if data == b"\x04":
            self.in_transfer = False
            return b""
        if not (self.in_transfer and data.startswith(b"\x02")):
            return b"\x15"
        if codec.is_chunked_message(data):
            self.chunks.append(data)
        elif self.chunks:
            self.chunks.append(data)
            self.dispatcher(codec.join(self.chunks))
            self.chunks = []
        else:
            self.dispatcher(data)
        return b"\x06"


class MemoryHandler(server.RequestHandler):  # type: ignore[misc]
    """``astm.server.RequestHandler`` with its socket replaced by an in-memory read.

    ``handle_read`` runs python-astm's own buffering (asynclib terminators) and
    dispatch; replies stay in ``outbox`` (no socket, so nothing is flushed).
    """

    def __init__(self) -> None:
        super().__init__(None, Collector())
        self._next = b""

    def recv(self, buffer_size: int) -> bytes:
        data, self._next = self._next, b""
        return data

    def feed(self, data: bytes) -> bytes:
        self._next = data
        self.handle_read()
        out = b"".join(self.outbox)
        self.outbox.clear()
        return out


# ----------------------------------------------------------------- workload

def load_workload() -> dict[str, Any]:
    spec = json.load(sys.stdin)
    text = spec["text"].encode(ENCODING)
    return {
        "text": text,
        "lines": [line for line in text.split(b"\r") if line],
        "packed": spec["packed_frame"].encode(ENCODING),
        "chunks": [c.encode(ENCODING) for c in spec["chunks"]],
        "frame_size": spec["frame_size"],
        "reps": spec["reps"],
        "target": spec["target"],
    }


def cases(w: dict[str, Any]) -> dict[str, Any]:
    """name -> zero-argument function doing one message's worth of work."""
    lines, packed, chunks, size = w["lines"], w["packed"], w["chunks"], w["frame_size"]
    records = [codec.decode_record(line, ENCODING) for line in lines]
    codec_rx = CodecReceiver()
    handler_rx = MemoryHandler()

    def decode_record_each() -> list[Any]:
        return [codec.decode_record(line, ENCODING) for line in lines]

    def decode_message_packed() -> list[Any]:
        return codec.decode_message(packed, ENCODING)[1]  # type: ignore[no-any-return]

    def receive(rx: CodecReceiver | MemoryHandler) -> Any:
        def run() -> tuple[list[list[Any]], bytes]:
            replies = b"".join([rx.feed(c) for c in chunks])
            return rx.dispatcher.take(), replies
        return run

    def iter_encode() -> list[bytes]:
        return list(codec.iter_encode(records, ENCODING, size=size))

    return {
        "decode.pyastm.decode_record": decode_record_each,
        "decode.pyastm.decode_message": decode_message_packed,
        "receive.pyastm.codec": receive(codec_rx),
        "receive.pyastm.request_handler": receive(handler_rx),
        "encode.pyastm.iter_encode": iter_encode,
        "_receivers": (codec_rx, handler_rx),
    }


def check(w: dict[str, Any]) -> dict[str, Any]:
    c = cases(w)
    codec_rx, handler_rx = c["_receivers"]
    out: dict[str, Any] = {"astm_version": astm.__version__}
    for name in ("decode.pyastm.decode_record", "decode.pyastm.decode_message"):
        records = c[name]()
        out[name] = {"flat": [[flatten(f) for f in rec] for rec in records],
                     "nested": records}
    for name, rx in (("receive.pyastm.codec", codec_rx),
                     ("receive.pyastm.request_handler", handler_rx)):
        for _ in range(2):  # a second transmission on the same connection, as timed
            types_before = len(rx.dispatcher.record_types)
            replies = b"".join([rx.feed(ch) for ch in w["chunks"]])
            types = rx.dispatcher.record_types[types_before:]
            rows = rx.dispatcher.take()
        out[name] = {"rows": rows, "replies": replies.decode(ENCODING),
                     "record_types": types}
    out["encode.pyastm.iter_encode"] = [
        f.decode(ENCODING) for f in c["encode.pyastm.iter_encode"]()]
    return out


def time_all(w: dict[str, Any], only: str) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, fn in cases(w).items():
        if name.startswith("_") or not name.startswith(only):
            continue
        results[name] = timing.measure(fn, reps=w["reps"], target=w["target"])
    return results


def main() -> int:
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    only = sys.argv[2] if len(sys.argv) > 2 else ""
    if mode not in ("check", "time"):
        print("usage: pyastm_peer.py check|time [CASE-PREFIX] < workload.json", file=sys.stderr)
        return 2
    w = load_workload()
    result = check(w) if mode == "check" else time_all(w, only)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
