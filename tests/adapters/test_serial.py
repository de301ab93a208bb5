"""SerialSupervisor with a fake SerialPort constructor and a task.Clock."""

from __future__ import annotations

from typing import Any

import serial
from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from lis_gateway.adapters.serial import SerialSupervisor


class RecordingProtocol(Protocol):
    """A link protocol stand-in that remembers what happened to it."""

    def __init__(self, session: str) -> None:
        self.session = session
        self.received: list[bytes] = []
        self.lost: list[Failure] = []

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.append(reason)


class FakePort:
    """What SerialPort does that matters here: connect the protocol, lose it later."""

    def __init__(self, protocol: Protocol, device: str, settings: dict[str, Any]) -> None:
        self.protocol = protocol
        self.device = device
        self.settings = settings
        self.transport = StringTransport()
        protocol.makeConnection(self.transport)

    def loseConnection(self) -> None:
        self.protocol.connectionLost(Failure(ConnectionDone()))

    def vanish(self) -> None:
        """The USB adapter was unplugged."""
        self.protocol.connectionLost(Failure(ConnectionLost("device gone")))


class FakePortFactory:
    """Fails ``failures`` times with pyserial's exception, then opens FakePorts."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.ports: list[FakePort] = []

    def __call__(self, protocol: Protocol, device: str, reactor: object,
                 **settings: Any) -> FakePort:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise serial.SerialException(f"could not open port {device}")
        port = FakePort(protocol, device, settings)
        self.ports.append(port)
        return port


def supervisor(factory: FakePortFactory, clock: Clock,
               built: list[RecordingProtocol]) -> SerialSupervisor:
    """A supervisor whose retry delay is the attempt number in seconds."""
    def build(session: str) -> RecordingProtocol:
        built.append(RecordingProtocol(session))
        return built[-1]

    return SerialSupervisor(build, "/dev/ttyUSB7", object(), clock, baudrate=19200,
                            parity="E", retry_policy=float, port_factory=factory)


def test_open_failures_are_retried_with_backoff_until_the_device_opens() -> None:
    """Two failed opens are retried after 1 s then 2 s; the third opens the device."""
    clock, factory, built = Clock(), FakePortFactory(failures=2), []
    svc = supervisor(factory, clock, built)
    opened = svc.when_opened()
    svc.startService()
    assert factory.calls == 1 and svc.failed_attempts == 1
    clock.advance(0.99)
    assert factory.calls == 1
    clock.advance(0.01)
    assert factory.calls == 2 and svc.failed_attempts == 2
    clock.advance(1.99)
    assert factory.calls == 2
    clock.advance(0.01)
    assert factory.calls == 3 and svc.failed_attempts == 0
    assert [p.session for p in built] == ["3"]  # no protocol (no recorder) for failures
    assert opened.called and opened.result is built[0]
    assert factory.ports[0].settings == {"baudrate": 19200, "bytesize": 8, "parity": "E",
                                         "stopbits": 1}


def test_lost_device_is_reopened_after_backoff_with_a_fresh_protocol() -> None:
    """When the port goes away the link protocol hears of it and a new one opens later."""
    clock, factory, built = Clock(), FakePortFactory(failures=0), []
    svc = supervisor(factory, clock, built)
    svc.startService()
    first = factory.ports[0]
    first.protocol.dataReceived(b"\x05")
    assert built[0].received == [b"\x05"]
    first.vanish()
    assert built[0].lost[0].check(ConnectionLost)
    assert factory.calls == 1
    clock.advance(1)
    assert factory.calls == 2
    assert [p.session for p in built] == ["1", "2"]
    assert svc.when_opened().result is built[1]


def test_stop_closes_the_port_and_stops_reopening() -> None:
    """stopService closes the open port, fires once closed, and schedules nothing."""
    clock, factory, built = Clock(), FakePortFactory(failures=0), []
    svc = supervisor(factory, clock, built)
    svc.startService()
    stopped = svc.stopService()
    assert stopped is not None and stopped.called
    assert built[0].lost and clock.getDelayedCalls() == []
    clock.advance(100)
    assert factory.calls == 1


def test_stop_while_waiting_cancels_the_retry() -> None:
    """Stopping between failed attempts cancels the pending reopen."""
    clock, factory, built = Clock(), FakePortFactory(failures=5), []
    svc = supervisor(factory, clock, built)
    waiting = svc.when_opened()
    svc.startService()
    assert svc.stopService() is None
    assert clock.getDelayedCalls() == []
    failures: list[Failure] = []
    waiting.addErrback(failures.append)
    assert failures[0].check(CancelledError)
    clock.advance(100)
    assert factory.calls == 1
