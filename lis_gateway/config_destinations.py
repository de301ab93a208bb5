"""Checking one ``[[destinations]]`` table (split from :mod:`lis_gateway.config`).

Each type has its own keys; a key of another type is an error naming the
type it belongs to, so ``url`` on an ``hl7-mllp`` destination is not
silently ignored. Files named by the table (token, template, CA,
certificate) are read and checked now: a gateway that starts has them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lis_gateway.linkspec import DESTINATION_TYPES, FILE_FORMATS, DestinationSpec

if TYPE_CHECKING:
    from lis_gateway.config import _Checker

_COMMON = frozenset({"name", "type", "ack_timeout", "retry_first", "retry_cap", "hospital"})
_HL7_ROUTE = frozenset({"sending_facility", "receiving_application", "receiving_facility"})
_KEYS: Mapping[str, frozenset[str]] = {
    "hl7-mllp": _COMMON | _HL7_ROUTE | {"host", "port", "tls", "ca_file", "client_cert"},
    "rest-json": _COMMON | {"url", "token_file", "template", "ca_file"},
    "fhir": _COMMON | {"url", "token_file", "ca_file", "patient_system"},
    "file": _COMMON | _HL7_ROUTE | {"directory", "format", "patient_system", "template"},
}
_ALL = frozenset().union(*_KEYS.values())


def _readable(c: _Checker, where: str, text: str | None, what: str) -> Path | None:
    if text is None:
        return None
    path = c.path(text)
    try:
        path.read_bytes()
    except OSError as exc:
        c.problem(where, f"cannot read {what} {str(path)!r}: {exc.strerror or exc}")
        return None
    return path


def _template(c: _Checker, where: str, item: Mapping[str, Any]) -> str:
    from lis_gateway.outbound.rest_json import BodyTemplate, TemplateError

    path = _readable(c, f"{where}.template", c.string(where, item, "template", required=False),
                     "the body template")
    if path is None:
        return ""
    text = path.read_text("utf-8", errors="replace")
    try:
        BodyTemplate.parse(text, str(path))
    except TemplateError as exc:
        c.problem(f"{where}.template", str(exc))
        return ""
    return text


def _url(c: _Checker, where: str, item: Mapping[str, Any]) -> str:
    url = c.string(where, item, "url", required=True) or ""
    if url and not url.startswith(("http://", "https://")):
        c.problem(f"{where}.url", f"expected an http:// or https:// URL, got {url!r}")
    return url


def _token(c: _Checker, where: str, item: Mapping[str, Any]) -> str:
    path = _readable(c, f"{where}.token_file",
                     c.string(where, item, "token_file", required=False), "the token file")
    if path is None:
        return ""
    token = path.read_text("utf-8", errors="replace").strip()
    if not token or any(ch.isspace() or not ch.isprintable() for ch in token):
        c.problem(f"{where}.token_file", "the token file must hold one token on one line")
        return ""
    return token


def _tls(c: _Checker, where: str, item: Mapping[str, Any]) -> dict[str, Any]:
    tls = item.get("tls", False)
    if not isinstance(tls, bool):
        c.problem(f"{where}.tls", f"expected true or false, got {tls!r}")
        tls = False
    files = {}
    for key, what in (("ca_file", "the CA certificate"), ("client_cert", "the certificate")):
        path = _readable(c, f"{where}.{key}", c.string(where, item, key, required=False), what)
        files[key] = str(path) if path is not None else ""
    if files["client_cert"] and not tls:
        c.problem(f"{where}.client_cert", "needs tls = true")
    return {"tls": tls, **files}


def check_destination(c: _Checker, where: str, item: Mapping[str, Any]
                      ) -> DestinationSpec | None:
    """The destination a table describes, or None with its problems recorded on ``c``."""
    before = len(c.problems)
    name = c.string(where, item, "name", required=True)
    kind = c.string(where, item, "type", required=True)
    if kind is not None and kind not in DESTINATION_TYPES:
        c.problem(f"{where}.type", f"expected {', '.join(DESTINATION_TYPES)}, got {kind!r}")
        kind = None
    if kind is None:
        c.unknown(where, item, _ALL)
        return None
    for key in item:
        owners = [k for k, keys in _KEYS.items() if key in keys]
        if key in _KEYS[kind]:
            continue
        if owners:
            c.problem(f"{where}.{key}", f"not a key of {kind} destinations "
                      f"(it belongs to {', '.join(owners)})")
        else:
            c.problem(f"{where}.{key}", "unknown key (expected one of "
                      f"{', '.join(sorted(_KEYS[kind]))})")
    timeout = c.integer(where, item, "ack_timeout", 1, 3600)
    first = c.integer(where, item, "retry_first", 1, 3600)
    cap = c.integer(where, item, "retry_cap", 1, 86400)
    first_s, cap_s = float(first or 5), float(cap or 900)
    if cap_s < first_s:
        c.problem(f"{where}.retry_cap", f"must not be below retry_first ({first_s:g})")
    needs_hospital = kind in ("hl7-mllp", "fhir") or item.get("format") in ("hl7", "fhir")
    values: dict[str, Any] = {
        key: c.string(where, item, key, required=key == "hospital" and needs_hospital) or ""
        for key in ("hospital", "sending_facility", "receiving_application",
                    "receiving_facility", "patient_system") if key in _KEYS[kind]}
    if kind == "hl7-mllp":
        values["host"] = c.string(where, item, "host", required=True) or ""
        values["port"] = c.integer(where, item, "port", 1, 65535) or 0
        if "port" not in item:
            c.problem(f"{where}.port", "missing (expected an integer from 1 to 65535)")
        values.update(_tls(c, where, item))
    elif kind in ("rest-json", "fhir"):
        values["url"] = _url(c, where, item)
        values["token"] = _token(c, where, item)
        ca = _readable(c, f"{where}.ca_file", c.string(where, item, "ca_file", required=False),
                       "the CA certificate")
        values["ca_file"] = str(ca) if ca is not None else ""
        if kind == "rest-json":
            values["template"] = _template(c, where, item)
    else:
        directory = c.string(where, item, "directory", required=True)
        values["directory"] = str(c.path(directory)) if directory else ""
        fmt = c.string(where, item, "format", required=True)
        if fmt is not None and fmt not in FILE_FORMATS:
            c.problem(f"{where}.format", f"expected {', '.join(FILE_FORMATS)}, got {fmt!r}")
        values["format"] = fmt or ""
        values["template"] = _template(c, where, item)
    if len(c.problems) > before or name is None:
        return None
    return DestinationSpec(name=name, type=kind,
                           ack_timeout=30.0 if timeout is None else float(timeout),
                           retry_first=first_s, retry_cap=cap_s, **values)
