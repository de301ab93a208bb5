"""The ``lis-gateway`` commands that work on the configuration and the store.

``run``, ``results``, ``user``, ``validate``, ``reprocess``, ``rules test``,
``migrate`` and ``audit verify``; :mod:`lis_gateway.cli` builds the parser.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import drivers
from lis_gateway.config import SHIPPED_MAPPINGS
from lis_gateway.progress import Progress

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine
    from twisted.application.service import MultiService
    from twisted.internet.defer import Deferred

    from lis_gateway.config import GatewayConfig
    from lis_gateway.validation import Outcome

_T = TypeVar("_T")


def _load_config(args: argparse.Namespace) -> GatewayConfig | None:
    """The configuration named by ``--config``, or None after printing its problems."""
    from lis_gateway.config import ConfigError, load_config

    try:
        return load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{exc.file}: {problem}", file=sys.stderr)
        return None


def cmd_run(args: argparse.Namespace) -> int:
    """Run every configured analyzer link and store everything received."""
    from lis_gateway import receive, service

    config = _load_config(args)
    if config is None:
        return 2
    from lis_gateway.cli import _logging

    _logging(args, config)
    links = [*config.links(), *([config.orders] if config.orders is not None else [])]

    def on_running(root: MultiService, _reactor: object) -> Deferred[object] | None:
        return receive.announce(root, links, sys.stderr)

    return service.run_gateway(config, on_running=on_running)


def cmd_results(args: argparse.Namespace) -> int:
    """Print stored results (latest version) with their state, optionally of one sample or state."""
    from sqlalchemy.exc import SQLAlchemyError

    from lis_gateway.store import judgements, repository
    from lis_gateway.store.engine import make_engine

    config = _load_config(args)
    if config is None:
        return 2
    engine = make_engine(config.database_url)
    try:
        with engine.begin() as conn:
            infos = repository.list_results(conn, args.sample)
            statuses = {info.id: judgements.result_status(conn, info.id) for info in infos}
    except SQLAlchemyError as exc:
        print(f"cannot read results from {_safe_url(config.database_url)}: {exc}",
              file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    for info in infos:
        status = statuses[info.id]
        state = "qc" if info.qc else status.state.value
        if args.state is not None and args.state != state:
            continue
        c = info.latest.content
        analyzer = info.analyzer
        if args.json:
            print(json.dumps({
                "result_id": info.id, "sample_id": info.accession, "analyzer": analyzer,
                "test": info.test_code, "code": c.code, "value": c.value_raw,
                "unit": c.unit_raw, "number": None if c.number is None else str(c.number),
                "unit_ucum": c.unit_ucum, "loinc": c.loinc, "flags": list(c.flags),
                "instrument_flags": list(c.instrument_flags),
                "reference_range": c.reference_range, "status": c.status,
                "critical": c.critical, "state": state, "reasons": list(status.reasons),
                "version": info.latest.version, "completed_at": info.completed_at_raw,
                "result_time": None if c.result_time is None else c.result_time.isoformat(),
                "message_id": info.message_id, "rerun_of": info.rerun_of_id,
                "mapping_version": c.mapping_version[:12],
            }, ensure_ascii=False))
        else:
            reasons = f"  ({'; '.join(status.reasons)})" if status.reasons else ""
            print(f"{info.accession}\t{analyzer}\t{info.test_code}\t{c.code or '-'}\t"
                  f"{c.value_raw} {c.unit_raw}\t{state}{reasons}")
    return 0


def _source() -> str:
    """Where a command-line change comes from, for the audit log."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _now() -> datetime:
    from datetime import UTC

    return datetime.now(UTC)


def _store(config: GatewayConfig) -> Engine:
    """An engine on the configured database, migrated to the newest schema."""
    from lis_gateway.store.engine import make_engine
    from lis_gateway.store.migrations import migrate

    engine = make_engine(config.database_url)
    migrate(config.database_url, engine=engine)
    return engine


def _open_store(config: GatewayConfig) -> Engine | None:
    """:func:`_store`, or None after printing why the database cannot be opened."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return _store(config)
    except SQLAlchemyError as exc:
        print(f"cannot open {_safe_url(config.database_url)}: {exc}", file=sys.stderr)
        return None


def _read_password() -> str | None:
    """One line of standard input without its line ending; None (after a message) if empty."""
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("no password on standard input", file=sys.stderr)
        return None
    return password


def parse_roles(text: str) -> list[str]:
    from lis_gateway.lifecycle import Role

    names = sorted({r.strip() for r in text.split(",") if r.strip()})
    known = {r.value for r in Role}
    for name in names:
        if name not in known:
            raise argparse.ArgumentTypeError(
                f"unknown role {name!r}; known: {', '.join(sorted(known))}")
    return names


def parse_certificate(text: str) -> str:
    """``--certificate``: a practising-certificate number as the store keeps it."""
    from lis_gateway.store.users import certificate_number

    try:
        return certificate_number(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_section(text: str) -> str:
    """``--section`` and ``user sections``: a lab section name as the store keeps it."""
    from lis_gateway.sections import section_name

    try:
        return section_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_user(args: argparse.Namespace) -> int:
    """Add a user, set a password, certificate number or sections, disable or enable a
    user (each audited)."""
    from sqlalchemy.exc import IntegrityError

    from lis_gateway.store import repository
    from lis_gateway.store.sections import set_user_sections
    from lis_gateway.store.users import enable_user, password_problem, set_certificate

    config = _load_config(args)
    if config is None:
        return 2
    hashed = None
    if args.user_command == "passwd" or getattr(args, "password_stdin", False):
        password = _read_password()
        if password is None:
            return 2
        problem = password_problem(args.name, password)
        if problem:
            print(f"refused: {problem}", file=sys.stderr)
            return 2
        hashed = repository.password_hash(password)
    engine = _open_store(config)
    if engine is None:
        return 1
    source, now = _source(), _now()
    try:
        with engine.begin() as conn:
            if args.user_command == "add":
                user = repository.create_user(conn, args.name, now, roles=args.roles,
                                              display_name=args.display_name,
                                              actor=source, source=source,
                                              hashed_password=hashed,
                                              certificate=args.certificate)
                held = set_user_sections(conn, args.name, args.sections, now, actor=source,
                                         source=source) if args.sections else ()
                print(f"user {user.username} added with roles {', '.join(user.roles) or '-'}"
                      + (f" and sections {', '.join(held)}" if held else ""))
            elif args.user_command == "passwd":
                assert hashed is not None
                repository.set_password(conn, args.name, hashed, now, actor=source,
                                        source=source)
                print(f"password of {args.name} changed")
            elif args.user_command == "certificate":
                user = set_certificate(conn, args.name, args.certificate, now, actor=source,
                                       source=source)
                print(f"certificate number of {user.username}: "
                      f"{user.certificate_number or '(none)'}")
            elif args.user_command == "sections":
                held = set_user_sections(conn, args.name, args.sections, now, actor=source,
                                         source=source)
                print(f"sections of {args.name}: {', '.join(held) or '(none)'}")
            elif args.user_command == "enable":
                enable_user(conn, args.name, now, actor=source, source=source)
                print(f"user {args.name} enabled")
            else:
                repository.disable_user(conn, args.name, now, actor=source, source=source)
                print(f"user {args.name} disabled")
    except IntegrityError:
        print(f"user {args.name!r} already exists", file=sys.stderr)
        return 1
    except repository.NotFoundError as exc:
        print(f"not found: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0


def _as_user(args: argparse.Namespace, work: Callable[[Connection, GatewayConfig], _T]
             ) -> tuple[int, _T | None]:
    """Run one person's action in one transaction: (0, its result), or a status after
    printing why not (configuration, store, unknown user or sample)."""
    from lis_gateway.store import repository
    from lis_gateway.validation import UserRefusedError

    try:
        return in_store(args, work)
    except (UserRefusedError, repository.NotFoundError) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1, None


def in_store(args: argparse.Namespace, work: Callable[[Connection, GatewayConfig], _T]
             ) -> tuple[int, _T | None]:
    """Run ``work`` in one transaction of the configured store: (0, its result), or a
    status after printing why not (2: configuration, 1: store)."""
    config = _load_config(args)
    if config is None:
        return 2, None
    engine = _open_store(config)
    if engine is None:
        return 1, None
    try:
        with engine.begin() as conn:
            return 0, work(conn, config)
    finally:
        engine.dispose()


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate (and approve) a sample's results as a user; one line per result."""
    from lis_gateway.validation import validate_sample

    status, outcomes = _as_user(args, lambda conn, config: validate_sample(
        conn, args.sample, args.user, config.policy, approve=args.approve, at=_now(),
        source=_source()))
    if outcomes is None:
        return status
    for o in outcomes:
        if args.json:
            print(json.dumps({"result_id": o.result_id, "test": o.test,
                              "before": o.before.value, "after": o.after.value,
                              "done": [a.value for a in o.done], "refused": o.refused},
                             ensure_ascii=False))
        else:
            done = ", ".join(a.value for a in o.done) or "-"
            refused = f"  REFUSED: {o.refused}" if o.refused else ""
            print(f"{args.sample}\t{o.test}\t{o.before.value} -> {o.after.value}\t"
                  f"{done}{refused}")
    return 1 if outcomes and all(o.refused and not o.done for o in outcomes) else 0


def cmd_retract(args: argparse.Namespace) -> int:
    """Withdraw a released result as a lab doctor; the destinations are told to delete it."""
    from lis_gateway.validation import retract_result

    status, o = _as_user(args, lambda conn, _config: retract_result(
        conn, args.sample, args.test, args.user, args.reason, at=_now(), source=_source()))
    return _print_outcome(args, status, o)


def cmd_rerun(args: argparse.Namespace) -> int:
    """Ask for a rerun; analyzers with ``order_download`` get the test again."""
    from lis_gateway.validation import request_rerun

    status, o = _as_user(args, lambda conn, config: request_rerun(
        conn, args.sample, args.test, args.user, args.reason, config.policy, at=_now(),
        source=_source()))
    return _print_outcome(args, status, o)


def _print_outcome(args: argparse.Namespace, status: int, o: Outcome | None) -> int:
    """One result's outcome as a line (or JSON); the exit status."""
    if o is None:
        return status
    if args.json:
        print(json.dumps({"result_id": o.result_id, "test": o.test, "before": o.before.value,
                          "after": o.after.value, "refused": o.refused}, ensure_ascii=False))
    else:
        refused = f"  REFUSED: {o.refused}" if o.refused else ""
        print(f"{args.sample}\t{o.test}\t{o.before.value} -> {o.after.value}{refused}")
    return 1 if o.refused else 0


def cmd_reprocess(args: argparse.Namespace) -> int:
    """Re-map held results with the current tables and re-evaluate the rules."""

    from lis_gateway.ingest import load_tables
    from lis_gateway.mapping import MappingTableError
    from lis_gateway.reprocess import reprocess_held

    config = _load_config(args)
    if config is None:
        return 2
    specs = {a.name: a.driver for a in config.analyzers}
    try:
        tables = load_tables(specs.values(), config.mapping_directories)
    except MappingTableError as exc:
        for table_problem in exc.problems:
            print(f"mapping table error: {table_problem}", file=sys.stderr)
        return 2
    engine = _open_store(config)
    if engine is None:
        return 1
    try:
        with engine.begin() as conn:
            needs_order = {a.name: config.orders is not None and not a.unsolicited
                           for a in config.analyzers}
            done = reprocess_held(conn, specs, tables, config.rule_set, config.policy, _now(),
                                  needs_order=needs_order, source=_source(),
                                  progress=Progress("reprocess"))
    finally:
        engine.dispose()
    for item in done:
        print(json.dumps({"result_id": item.result_id, "test": item.test,
                          "new_version": item.new_version, "state": item.state.value,
                          "note": item.note}, ensure_ascii=False))
    print(f"{len(done)} held result(s) reprocessed, "
          f"{sum(1 for d in done if d.new_version is not None)} new version(s)",
          file=sys.stderr)
    return 0


def cmd_rules_test(args: argparse.Namespace) -> int:
    """Replay captures through a rule set; one JSON line per result with the decision."""
    from lis_gateway.autoverify import decide, decision_transition
    from lis_gateway.capture import decode_capture, normalize_report
    from lis_gateway.config import ConfigError, load_config
    from lis_gateway.lifecycle import Policies, policy_for
    from lis_gateway.mapping import MappingTableError, load_table
    from lis_gateway.rules import Previous
    from lis_gateway.rules_file import RulesError, load_rules

    try:
        rules = load_rules(Path(args.rules_file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        print(f"{args.rules_file}: cannot read: {exc}", file=sys.stderr)
        return 2
    except RulesError as exc:
        print(f"{args.rules_file}: {exc}", file=sys.stderr)
        return 2
    directories: list[Path] = [SHIPPED_MAPPINGS]
    policy = Policies()
    if args.config is not None:
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            for problem in exc.problems:
                print(f"{exc.file}: {problem}", file=sys.stderr)
            return 2
        directories, policy = list(config.mapping_directories), config.policy
    spec: drivers.DriverSpec = args.driver
    try:
        table = load_table(directories, spec.table_name)
    except MappingTableError as exc:
        for table_problem in exc.problems:
            print(f"mapping table error: {table_problem}", file=sys.stderr)
        return 2
    previous: dict[tuple[str, str], Previous] = {}  # earlier results in these captures
    decided_any = False
    for path in args.captures:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            print(f"{path}: cannot read: {exc.strerror}", file=sys.stderr)
            continue
        report = decode_capture(data, spec)
        for problem in report.problems:
            print(f"{path}: {problem}", file=sys.stderr)
        for number, result in normalize_report(report, spec, table):
            key = (result.row.sample_id, result.code or result.row.test)
            decision = decide(rules, result, driver=spec.name, table=table,
                              previous=previous.get(key), received_at=None)
            transition, reasons = decision_transition(decision, result,
                                                      policy_for(policy, result.code))
            if result.number is not None and result.result_time is not None:
                previous[key] = Previous(result.number, result.result_time)
            decided_any = True
            print(json.dumps({
                "file": path, "message": number, "sample_id": result.row.sample_id,
                "test": result.row.test, "code": result.code, "value": result.row.value,
                "unit": result.row.unit, "rule_set_version": rules.version,
                "shadow": rules.shadow, "would_autoverify": decision.autoverify,
                "state": transition.to_state.value, "decided_by": decision.decided_by,
                "reasons": list(reasons) if transition.to_state.value == "held" else [],
                "outcomes": [{"rule": o.rule_id, "kind": o.kind, "outcome": o.verdict.value,
                              "detail": o.detail} for o in decision.outcomes],
            }, ensure_ascii=False))
    return 0 if decided_any else 1


def config_option(p: argparse.ArgumentParser) -> None:
    from lis_gateway.config import CONFIG_ENV, DEFAULT_CONFIG_FILE, default_config_path

    p.add_argument("--config", type=Path, default=default_config_path(), metavar="FILE",
                   help=f"the TOML configuration (default: ${CONFIG_ENV}, else "
                        f"./{DEFAULT_CONFIG_FILE})")


def cmd_migrate(args: argparse.Namespace) -> int:
    """Create or upgrade the database schema."""
    from lis_gateway.store.maintenance import migrate_database

    migrate_database(args.database)
    print(f"database at {_safe_url(args.database)} is at the newest schema")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Verify the hash chain of the audit log."""
    from lis_gateway.store.maintenance import verify_audit_log

    broken = verify_audit_log(args.database, Progress("audit verify"))
    if broken:
        print(f"audit log BROKEN at row(s): {', '.join(map(str, broken))}", file=sys.stderr)
        return 1
    print("audit log intact")
    return 0


def _safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def database_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--database", metavar="URL",
                   default=os.environ.get("LIS_GATEWAY_DATABASE", "sqlite:///var/lis.db"),
                   help="SQLAlchemy URL (default: $LIS_GATEWAY_DATABASE, else "
                        "sqlite:///var/lis.db)")


def cmd_check_config(args: argparse.Namespace) -> int:
    """Check a configuration as ``run`` would, without starting anything.

    Every problem is printed with its key path (and mapping-table problems with
    file, line and column); exit 2 when there is any. Warnings (a serial device
    not present now, an analyzer without a mapping table) do not fail the check.
    """
    from lis_gateway.config import ConfigError, load_config
    from lis_gateway.ingest import load_tables
    from lis_gateway.mapping import MappingTableError

    path = Path(args.file)
    try:
        config = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{exc.file}: {problem}", file=sys.stderr)
        print(f"{path}: {len(exc.problems)} problem(s); the gateway would not start",
              file=sys.stderr)
        return 2
    problems: list[str] = []
    for link in config.analyzers:
        try:
            tables = load_tables([link.driver], config.mapping_directories)
        except MappingTableError as exc:
            problems.extend(f"analyzers[{link.name}]: mapping table: {p}" for p in exc.problems)
            continue
        if tables[link.driver.table_name] is None:
            print(f"{path}: warning: analyzer {link.name}: no mapping table "
                  f"{link.driver.table_name}.csv; its results will be stored as not mapped",
                  file=sys.stderr)
        if link.transport == "serial" and link.device and not Path(link.device).exists():
            print(f"{path}: warning: analyzer {link.name}: {link.device} does not exist now "
                  "(the gateway keeps trying to open it)", file=sys.stderr)
    if problems:
        for problem in dict.fromkeys(problems):
            print(f"{path}: {problem}", file=sys.stderr)
        print(f"{path}: {len(problems)} problem(s); the gateway would not start",
              file=sys.stderr)
        return 2
    parts = [f"{len(config.analyzers)} analyzer(s)",
             f"{len(config.destinations)} destination(s)",
             "orders over MLLP" if config.orders is not None else "",
             "orders over REST" if config.orders_api_token else "",
             f"web on {config.web_listen[0]}:{config.web_listen[1]}"
             if config.web_listen is not None else "",
             f"database {_safe_url(config.database_url)}"]
    print(f"{path}: ok: " + ", ".join(p for p in parts if p))
    return 0
