"""``lis-gateway export xml4``: the social-insurance table 4 rows of released results.

Reads the configured store and mapping tables, builds one XML4 row per
result released in the period (:mod:`lis_gateway.export.xml4_build`),
checks every row, and writes the XML body only when every row is valid;
otherwise it writes nothing and prints each problem with the sample barcode
and the test, so the lab can fix the mapping tables or the users'
certificate numbers and run it again (exit status 2). With ``--out`` the
file is written beside its final name and renamed into place, so a reader
never sees half a file. ``--json`` prints the rows and the problems instead
(for tools and, later, the web API).

Dates without an offset are local times in ``--time-zone`` (the hospital's
zone, also the zone of ``NGAY_KQ``); a bare date is its midnight. Nothing
about patients is printed or logged: XML4 carries none, only visit numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lis_gateway.cli_store import _load_config, _now, _open_store, config_option, parse_certificate

if TYPE_CHECKING:
    from lis_gateway.export.xml4_build import Xml4Export

DEFAULT_ZONE = "Asia/Ho_Chi_Minh"


def _moment(text: str) -> datetime:
    """``--since``/``--until``: an ISO date or date-time (local to ``--time-zone`` if naive)."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date such as 2026-11-01 or "
                                         f"2026-11-01T08:00, got {text!r}") from None


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown time zone {name!r}") from None


def _local(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``.

    Raises:
        OSError: the directory cannot be written; ``path`` is left as it was.
    """
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                         suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _json(export: Xml4Export, since: datetime, until: datetime, zone: ZoneInfo) -> bytes:
    document = {"since": since.isoformat(), "until": until.isoformat(), "time_zone": zone.key,
                "rows": [built.to_dict() for built in export.rows],
                "problems": [problem.to_dict() for problem in export.problems]}
    return (json.dumps(document, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


def _emit(data: bytes, out: Path | None) -> bool:
    """Write to ``out`` (atomically) or standard output; False after printing why not."""
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return True
    try:
        write_atomically(out, data)
    except OSError as exc:
        print(f"{out}: cannot write: {exc.strerror or exc}", file=sys.stderr)
        return False
    return True


def cmd_export_xml4(args: argparse.Namespace) -> int:
    """Write the XML4 rows of the results released in [--since, --until)."""
    from lis_gateway.export.xml4 import render
    from lis_gateway.export.xml4_build import build, indicators
    from lis_gateway.ingest import load_tables
    from lis_gateway.mapping import MappingTableError
    from lis_gateway.store.xml4_rows import released_rows

    zone: ZoneInfo = args.time_zone
    since = _local(args.since, zone)
    until = _now() if args.until is None else _local(args.until, zone)
    if until <= since:
        print(f"--until ({until.isoformat()}) must come after --since ({since.isoformat()})",
              file=sys.stderr)
        return 2
    config = _load_config(args)
    if config is None:
        return 2
    try:
        tables = load_tables([a.driver for a in config.analyzers], config.mapping_directories)
    except MappingTableError as exc:
        for table_problem in exc.problems:
            print(f"mapping table error: {table_problem}", file=sys.stderr)
        return 2
    engine = _open_store(config)
    if engine is None:
        return 1
    try:
        with engine.begin() as conn:
            released = released_rows(conn, since, until)
    finally:
        engine.dispose()
    export = build(released, indicators(t for t in tables.values() if t is not None), zone,
                   approver_certificate=args.approver_certificate)
    period = (f"{since.astimezone(zone):%Y-%m-%d %H:%M} to "
              f"{until.astimezone(zone):%Y-%m-%d %H:%M} ({zone.key})")
    if args.json:
        if not _emit(_json(export, since.astimezone(UTC), until.astimezone(UTC), zone),
                     args.out):
            return 1
        return 2 if export.problems else 0
    if export.problems:
        for problem in export.problems:
            print(str(problem), file=sys.stderr)
        bad = len({(p.accession, p.local_code, p.test_code) for p in export.problems})
        print(f"{len(export.problems)} problem(s) in {bad} of {len(export.rows)} row(s) "
              f"released {period}; nothing written", file=sys.stderr)
        return 2
    if not _emit(render(built.row for built in export.rows), args.out):
        return 1
    episodes = len({built.row.ma_lk for built in export.rows})
    where = f" to {args.out}" if args.out is not None else ""
    print(f"{len(export.rows)} row(s) of {episodes} episode(s) released {period} "
          f"written{where}", file=sys.stderr)
    return 0


def add_export_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``export`` subcommands."""
    p = sub.add_parser("export", help="released results in formats other systems ask for")
    export_sub = p.add_subparsers(dest="export_command", required=True, metavar="FORMAT")
    p = export_sub.add_parser(
        "xml4", help="social-insurance (BHYT) claim table 4 rows of released results",
        description=(
            "Write the XML4 body (CHITIEU_CHITIET_DICHVUCANLAMSANG, QĐ 130/4750/3176) with "
            "one row per patient result released in [--since, --until): the latest released "
            "version of each result, MA_DICH_VU from the mapping tables' service_code, "
            "MA_CHI_SO and TEN_CHI_SO from their national code and Vietnamese name, NGAY_KQ "
            "the release time, MA_BS_DOC_KQ the releasing user's practising-certificate "
            "number. Every row is checked first: with any problem nothing is written, each "
            "problem is printed with the sample and test, and the exit status is 2. The "
            "claim envelope, base64 and the facility's signature are the HIS's job."))
    p.add_argument("--since", type=_moment, required=True, metavar="DATE",
                   help="released from then on (ISO date or date-time; local time)")
    p.add_argument("--until", type=_moment, default=None, metavar="DATE",
                   help="released before then (default: now)")
    p.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help="write here (replaced whole, never half-written) instead of "
                        "standard output")
    p.add_argument("--time-zone", type=_zone, default=ZoneInfo(DEFAULT_ZONE), metavar="ZONE",
                   help=f"the hospital's time zone for dates and NGAY_KQ (default: "
                        f"{DEFAULT_ZONE})")
    p.add_argument("--approver-certificate", type=parse_certificate, default="",
                   metavar="NUMBER",
                   help="practising-certificate number for results the gateway released "
                        "without a person (autoverified); without it they are problems")
    p.add_argument("--json", action="store_true",
                   help="print the rows and the problems as JSON instead (exit 2 if any "
                        "problem)")
    config_option(p)
    p.set_defaults(func=cmd_export_xml4)
