"""Send one ORU^R01 to an HIS with the gateway's HisClient and print its DeliveryReport as JSON.

Run as a script by the interop tests (the test process never runs the
global reactor)::

    python tests/integration/_his_send.py --connect 127.0.0.1:PORT --control-id X1

Exit status 0 when a report was printed (whatever it says), 2 when the
safety timeout stopped it first.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from twisted.internet.endpoints import HostnameEndpoint

from lis_gateway import logconfig
from lis_gateway.hl7.message import write_message
from lis_gateway.outbound.sender import DeliveryReport, HisClient

SAFETY_TIMEOUT = 60.0


def oru(control_id: str) -> bytes:
    """A small v2.5.1 ORU^R01 as the gateway sends it to an HIS (made-up patient)."""
    return write_message([
        f"MSH|^~\\&|LIS-GATEWAY|LAB|HIS|HOSP|20240506070809+0200||ORU^R01^ORU_R01|{control_id}"
        "|P|2.5.1|||AL|NE||UNICODE UTF-8",
        "PID|1||P100201^^^LAB^MR||ROE^RICHARD||19571103|M",
        "ORC|RE||S1^LAB",
        "OBR|1||S1^LAB|58410-2^CBC panel^LN|||20240506070000",
        "OBX|1|NM|6690-2^Leukocytes^LN||7.52|10*3/uL^^UCUM|4.00-10.00|N|||F|||20240506070809",
        "OBX|2|NM|718-7^Hemoglobin^LN||11.2|g/dL^^UCUM|12.0-16.0|L|||F|||20240506070809",
    ])


def main() -> int:
    """Parse the options, send, print, stop."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--connect", required=True)
    parser.add_argument("--control-id", required=True)
    parser.add_argument("--ack-timeout", type=float, default=10.0)
    args = parser.parse_args()
    host, _, port = args.connect.rpartition(":")
    logconfig.configure(json=True, level="debug")
    logconfig.forward_twisted_logs()

    from twisted.internet import reactor as global_reactor

    reactor: Any = global_reactor
    client = HisClient(HostnameEndpoint(reactor, host, int(port), timeout=5), reactor,
                       ack_timeout=args.ack_timeout)
    status = [2]

    def done(report: DeliveryReport) -> None:
        print(json.dumps(report.to_dict()), flush=True)
        status[0] = 0
        client.stopService().addBoth(lambda _: reactor.stop())

    def start() -> None:
        client.startService()
        client.send(oru(args.control_id)).addCallback(done)

    reactor.callWhenRunning(start)
    reactor.callLater(SAFETY_TIMEOUT, reactor.stop)
    reactor.run(installSignalHandlers=False)
    return status[0]


if __name__ == "__main__":
    sys.exit(main())
