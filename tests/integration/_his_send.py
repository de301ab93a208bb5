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
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from twisted.internet.endpoints import HostnameEndpoint

from lis_gateway import logconfig
from lis_gateway.hl7.datatypes import (
    EntityIdentifier,
    HierarchicDesignator,
    MessageRoute,
    ObservationCode,
)
from lis_gateway.hl7.oru import (
    NumericValue,
    Observation,
    ObservationStatus,
    Order,
    ReportStatus,
    build_oru_r01,
)
from lis_gateway.hl7.patient import PatientIdentity, Sex
from lis_gateway.outbound.sender import DeliveryReport, HisClient

SAFETY_TIMEOUT = 60.0


def oru(control_id: str) -> bytes:
    """The ORU^R01 v2.5.1 the gateway sends to an HIS, built by our own builder."""
    ict = timezone(timedelta(hours=7))
    lab, hosp = HierarchicDesignator("LAB"), HierarchicDesignator("HOSP")
    route = MessageRoute(HierarchicDesignator("LIS-GATEWAY"), lab,
                         HierarchicDesignator("HIS"), hosp)
    patient = PatientIdentity(hospital_id="P100201", hospital=hosp, family_name="Roe",
                              given_name="Richard", sex=Sex.MALE)
    when = datetime(2024, 5, 6, 7, 8, 9, tzinfo=ict)
    observations = (
        Observation(ObservationCode("6690-2", "Leukocytes", "WBC", "WBC"),
                    NumericValue(Decimal("7.52")), ObservationStatus.FINAL, unit="10*3/uL",
                    reference_range="4.00-10.00", abnormal_flags=("N",), analyzed_at=when),
        Observation(ObservationCode("718-7", "Hemoglobin", "HGB", "HGB"),
                    NumericValue(Decimal("11.2")), ObservationStatus.FINAL, unit="g/dL",
                    reference_range="12.0-16.0", abnormal_flags=("L",), analyzed_at=when),
    )
    order = Order(EntityIdentifier("S1", "LAB"),
                  ObservationCode("58410-2", "CBC panel", "CBC", "CBC"), ReportStatus.FINAL,
                  observations, collected_at=when, received_at=when)
    return build_oru_r01(route, patient, (order,), control_id=control_id, now=when)


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
