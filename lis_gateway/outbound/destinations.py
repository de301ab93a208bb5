"""One channel per configured destination type (the only place that knows them all)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from structlog.typing import FilteringBoundLogger
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint

from lis_gateway.hl7.datatypes import HierarchicDesignator, MessageRoute
from lis_gateway.linkspec import DestinationSpec
from lis_gateway.outbound.channel import Channel, MllpChannel
from lis_gateway.outbound.compose import compose_oru
from lis_gateway.outbound.file_drop import FileChannel
from lis_gateway.outbound.http_push import HttpChannel, tls_policy
from lis_gateway.outbound.sender import HisClient
from lis_gateway.store.outbox import OutboundResult


def _route(destination: DestinationSpec) -> MessageRoute:
    return MessageRoute(
        sending_application=HierarchicDesignator("LIS_GATEWAY"),
        sending_facility=HierarchicDesignator(destination.sending_facility),
        receiving_application=HierarchicDesignator(destination.receiving_application),
        receiving_facility=HierarchicDesignator(destination.receiving_facility))


def _hospital(destination: DestinationSpec) -> HierarchicDesignator | None:
    return HierarchicDesignator(destination.hospital) if destination.hospital else None


def mllp_endpoint(destination: DestinationSpec, reactor: Any) -> IStreamClientEndpoint:
    """TCP to the HIS, wrapped in TLS when configured (the HIS's name is verified)."""
    endpoint: IStreamClientEndpoint = HostnameEndpoint(reactor, destination.host,
                                                       destination.port)
    if not destination.tls:
        return endpoint
    from twisted.internet.ssl import (
        Certificate,
        PrivateCertificate,
        optionsForClientTLS,
        platformTrust,
    )

    trust: Any = (Certificate.loadPEM(Path(destination.ca_file).read_bytes())
                  if destination.ca_file else platformTrust())
    mine = (PrivateCertificate.loadPEM(Path(destination.client_cert).read_bytes())
            if destination.client_cert else None)
    options = optionsForClientTLS(destination.host, trustRoot=trust, clientCertificate=mine)
    return wrapClientTLS(options, endpoint)


def _fhir_build(destination: DestinationSpec) -> Any:
    from lis_gateway.outbound.fhir import FhirIdentity, compose_bundle

    # Site-local systems carry the hospital's code, so two sites' control IDs
    # (LG17 in both) never meet in one EMR.
    base = f"urn:lis-gateway:{destination.hospital}"
    identity = FhirIdentity(
        hospital_patient_system=destination.patient_system or f"{base}:patient",
        accession_system=f"{base}:accession", result_system=f"{base}:result",
        local_code_system=f"{base}:test-code", practitioner_system=f"{base}:user",
        device_system=f"{base}:analyzer", order_system=f"{base}:placer-order")

    def build(item: OutboundResult, now: datetime) -> bytes:
        return compose_bundle(item, now, identity)
    return build


def _json_build(destination: DestinationSpec) -> Any:
    from lis_gateway.outbound.rest_json import DEFAULT, BodyTemplate

    template = BodyTemplate.parse(destination.template) if destination.template else DEFAULT

    def build(item: OutboundResult, now: datetime) -> bytes:
        return template.render(item)
    return build


def _hl7_build(destination: DestinationSpec) -> Any:
    route, hospital = _route(destination), _hospital(destination)

    def build(item: OutboundResult, now: datetime) -> bytes:
        return compose_oru(item, route, now, hospital)
    return build


def make_channel(destination: DestinationSpec, reactor: Any, log: FilteringBoundLogger
                 ) -> Channel:
    """The channel a ``[[destinations]]`` entry describes."""
    if destination.type == "rest-json":
        from lis_gateway.outbound.rest_json import interpret_response
        return HttpChannel(destination.url, _json_build(destination), interpret_response,
                           reactor, token=destination.token, timeout=destination.ack_timeout,
                           tls=tls_policy(destination.ca_file))
    if destination.type == "fhir":
        from lis_gateway.outbound.fhir import interpret_response as fhir_answer
        return HttpChannel(destination.url, _fhir_build(destination), fhir_answer, reactor,
                           content_type="application/fhir+json", token=destination.token,
                           timeout=destination.ack_timeout,
                           tls=tls_policy(destination.ca_file))
    if destination.type == "file":
        builds = {"hl7": _hl7_build, "json": _json_build, "fhir": _fhir_build}
        extension = "hl7" if destination.format == "hl7" else "json"
        return FileChannel(Path(destination.directory), extension,
                           builds[destination.format](destination), reactor)
    client = HisClient(mllp_endpoint(destination, reactor), reactor,
                       ack_timeout=destination.ack_timeout, log=log)
    return MllpChannel(client, _route(destination), _hospital(destination))
