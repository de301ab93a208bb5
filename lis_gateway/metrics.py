"""Every Prometheus metric of lis-gateway, in one registry (served at ``/metrics``).

Only the edges record them (the Twisted adapters, the store sink, the outbox
and download workers), like logging: the sans-IO cores never import this
module. Labels are configuration names and fixed outcome words, never
barcodes, codes or anything from a patient, so the label sets stay small
and the scrape carries no patient data.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

#: The one registry (not the library's global one: tests and two gateways in one
#: process stay apart, and nothing else registers into it by accident).
REGISTRY = CollectorRegistry(auto_describe=True)

FRAMES = Counter("lis_gateway_frames", "ASTM frames (and Beckman AU blocks) received, by "
                 "analyzer and outcome (accepted, rejected, duplicate)", ["analyzer", "outcome"],
                 registry=REGISTRY)
FRAME_REJECTIONS = Counter("lis_gateway_frame_rejections", "ASTM frames and AU blocks (and ENQs: "
                           "enq-busy) answered NAK, by analyzer and reason (checksum, "
                           "frame-number, enq-busy, ...)",
                           ["analyzer", "reason"], registry=REGISTRY)
MESSAGES = Counter("lis_gateway_messages", "Messages from analyzers, by analyzer and outcome "
                   "(stored, repeat, failed, incomplete)", ["analyzer", "outcome"],
                   registry=REGISTRY)
LINKS_UP = Gauge("lis_gateway_link_connections", "Open connections (or open serial ports) "
                 "per analyzer link", ["analyzer"], registry=REGISTRY)
COMMIT_ACK = Histogram("lis_gateway_commit_ack_seconds", "From the frame that completes a "
                       "message to its ACK/AA (the store commit in between)", ["analyzer"],
                       buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                                5, 10), registry=REGISTRY)
RULE_DECISIONS = Counter("lis_gateway_rule_decisions", "Autoverification decisions "
                         "(autoverified, held)", ["decision"], registry=REGISTRY)
OUTBOX_DEPTH = Gauge("lis_gateway_outbox_pending", "Outbox entries not yet delivered, per "
                     "destination and state (pending, dead)", ["destination", "state"],
                     registry=REGISTRY)
OUTBOX_OLDEST = Gauge("lis_gateway_outbox_oldest_pending_seconds", "Age of the oldest "
                      "undelivered entry per destination (0 when none)", ["destination"],
                      registry=REGISTRY)
DELIVERY = Counter("lis_gateway_deliveries", "Delivery attempts per destination and status "
                   "(acked, retry, rejected, timeout, ...)", ["destination", "status"],
                   registry=REGISTRY)
HIS_ACK = Histogram("lis_gateway_his_ack_seconds", "From sending a message to the "
                    "destination's answer", ["destination"],
                    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                    registry=REGISTRY)
END_TO_END = Histogram("lis_gateway_end_to_end_seconds", "From the analyzer's message being "
                       "stored to the destination acknowledging its result",
                       ["destination"], buckets=(0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
                                                 60, 300, 900, 3600, 14400, 86400),
                       registry=REGISTRY)
RESULTS = Gauge("lis_gateway_results", "Patient results by lifecycle state now (held, "
                "autoverified, released, delivered, ...), sampled from the store",
                ["state"], registry=REGISTRY)
DOWNLOADS = Counter("lis_gateway_downloads", "Rows pushed to analyzers, by analyzer and state "
                    "(sent, pending, not-sent)", ["analyzer", "state"], registry=REGISTRY)


def exposition() -> bytes:
    """The registry in the Prometheus text format."""
    return generate_latest(REGISTRY)
