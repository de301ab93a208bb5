"""An HIS for the tests: an MLLP listener on loopback, plain sockets and threads.

Independent of the gateway's own MLLP code (it splits on FS CR and answers
with bytes written here), so a defect shared by the gateway's sender and
receiver cannot hide. It keeps every message and answers the n-th with
``answers[n]``: ``AA``, ``AE``, ``AR`` (an ACK with that MSA-1), ``silence``
(no answer) or ``drop`` (close the connection); ``AA`` after the script.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Sequence


class MllpHis:
    """Args:
        answers: the scripted answers, in the order messages arrive.
        tls: serve TLS with this context.
        port: the port to listen on (0: any); the same port can be opened again
            after :meth:`close` (an HIS that comes back).
        delay: seconds before each answer (a slow HIS; widens the window a crash can hit).
    """

    def __init__(self, answers: Sequence[str] = (), *, tls: ssl.SSLContext | None = None,
                 port: int = 0, delay: float = 0.0) -> None:
        self.answers, self._tls, self.delay = list(answers), tls, delay
        self.received: list[bytes] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", port))
        self._server.listen(16)
        self.port: int = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            if self._tls is not None:
                try:
                    conn = self._tls.wrap_socket(conn, server_side=True)
                except (OSError, ssl.SSLError):
                    conn.close()
                    continue
            with self._lock:
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buffer += data
                while b"\x1c\r" in buffer:
                    block, buffer = buffer.split(b"\x1c\r", 1)
                    if not self._answer(conn, block.lstrip(b"\x0b")):
                        return

    def _answer(self, conn: socket.socket, message: bytes) -> bool:
        """Keep and answer one message; False when the connection is to end."""
        with self._lock:
            index = len(self.received)
            self.received.append(message)
        answer = self.answers[index] if index < len(self.answers) else "AA"
        if answer == "drop":
            return False
        if answer == "silence":
            return True
        if self.delay:
            time.sleep(self.delay)  # the HIS is slow; asserts nothing
        control = message.split(b"\r", 1)[0].split(b"|")[9]
        text = b"|unknown patient in HIS" if answer == "AR" else b""
        try:
            conn.sendall(b"\x0bMSH|^~\\&|HIS|HOSP|LIS_GATEWAY||20261122000000||"
                         b"ACK^R01^ACK|A" + control + b"|P|2.5.1\rMSA|" + answer.encode()
                         + b"|" + control + text + b"\r\x1c\r")
        except OSError:
            return False
        return True

    def messages(self) -> list[bytes]:
        """What arrived so far."""
        with self._lock:
            return list(self.received)

    def close(self) -> None:
        """Stop listening and drop every connection (the HIS goes down)."""
        self._server.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
