"""Errors of the HL7 core. Peer faults are reported, never raised; these are for local misuse."""

from __future__ import annotations


class Hl7Error(Exception):
    """Base class of every error raised by :mod:`lis_gateway.hl7`."""


class MllpFramingError(Hl7Error):
    """A message cannot be framed (it contains the MLLP block characters)."""


class BuildError(Hl7Error):
    """A message the gateway builds is missing something it must carry."""


class AckError(Hl7Error):
    """A message given as an acknowledgement is not one."""
