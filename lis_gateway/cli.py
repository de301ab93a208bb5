"""The ``lis-gateway`` command."""

from __future__ import annotations

import argparse
import codecs
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import drivers
from lis_gateway import __version__
from lis_gateway.cli_downloads import add_downloads_commands
from lis_gateway.cli_export import add_export_commands
from lis_gateway.cli_outbox import add_outbox_commands
from lis_gateway.cli_store import (
    cmd_audit_verify,
    cmd_check_config,
    cmd_migrate,
    cmd_reprocess,
    cmd_rerun,
    cmd_results,
    cmd_retract,
    cmd_rules_test,
    cmd_run,
    cmd_user,
    cmd_validate,
    config_option,
    database_option,
    parse_certificate,
    parse_roles,
)
from lis_gateway.config import SHIPPED_MAPPINGS
from lis_gateway.normalize import NormalizedResult

if TYPE_CHECKING:
    from lis_gateway.config import GatewayConfig


def _encoding(name: str) -> str:
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise argparse.ArgumentTypeError(f"unknown character encoding {name!r}") from None


def _driver(name: str) -> drivers.DriverSpec:
    try:
        return drivers.get(name)
    except KeyError as exc:
        raise argparse.ArgumentTypeError(str(exc.args[0])) from None


_TOKENS = re.compile(rb"<(?:STX|ETX|ETB|ENQ|EOT|ACK|NAK|CR|LF|SB|EB|VT|FS)>|\[CR\]")



def _result_json(path: str, number: int, result: NormalizedResult) -> str:
    row = result.row
    return json.dumps({
        "file": path, "message": number, "sample_id": row.sample_id, "test": row.test,
        "value": row.value, "unit": row.unit, "reference_range": row.reference_range,
        "flags": list(row.flags), "status": row.status, "completed_at": row.completed_at,
        "instrument": row.instrument, "qc": row.qc,
        "code": result.code, "national_code": result.national_code, "loinc": result.loinc,
        "name": result.name_vi, "unit_ucum": result.unit_ucum,
        "number": None if result.number is None else str(result.number),
        "comparator": result.value.comparator, "text": result.value.text,
        "flags_hl7": list(result.flags), "instrument_flags": list(result.instrument_flags),
        "supplementary": [{"test": s.test, "value": s.value, "unit": s.unit}
                          for s in result.supplementary],
        "result_status": result.status, "lab_reference_range": result.reference_range,
        "critical": result.critical, "problems": list(result.problems),
        "result_time": None if result.result_time is None else result.result_time.isoformat(),
        "mapping_version": result.mapping_version[:12],
    }, ensure_ascii=False)


def cmd_parse(args: argparse.Namespace) -> int:
    """Decode wire captures and print one JSON line per reportable result."""
    from lis_gateway.capture import decode_capture, normalize_report
    from lis_gateway.mapping import MappingTableError, load_table

    spec: drivers.DriverSpec = args.driver
    directories = [*args.mapping, SHIPPED_MAPPINGS]
    try:
        table = load_table(directories, spec.table_name)
    except MappingTableError as exc:
        for table_problem in exc.problems:
            print(f"mapping table error: {table_problem}", file=sys.stderr)
        return 2
    if table is None:
        print(f"note: no mapping table {spec.table_name}.csv in "
              f"{', '.join(map(str, directories))}: results are not mapped", file=sys.stderr)
    parsed_any = False
    for path in args.files:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            print(f"{path}: cannot read: {exc.strerror}", file=sys.stderr)
            continue
        report = decode_capture(data, spec, encoding=args.encoding,
                                accept_bad_checksums=args.accept_bad_checksums,
                                repair_line_endings=args.repair_line_endings)
        parsed_any = parsed_any or report.parsed_anything
        for number, result in normalize_report(report, spec, table):
            print(_result_json(path, number, result))
        for problem in report.problems:
            print(f"{path}: {problem}", file=sys.stderr)
        if not report.parsed_anything:
            print(f"{path}: no message could be parsed", file=sys.stderr)
        if _TOKENS.search(data) and not any(c in data for c in (b"\x02", b"\x05", b"\x0b")):
            print(f"{path}: hint: the file writes control characters as text (<STX>, <CR>, "
                  "...), as manuals do; convert them to bytes first", file=sys.stderr)
    return 0 if parsed_any else 1


def _logging(args: argparse.Namespace, config: GatewayConfig | None = None) -> None:
    """Configure logs: command-line options, else ``[logging]``, else the environment."""
    from lis_gateway import logconfig

    fmt = (args.log_format or (config.log_format if config else None)
           or os.environ.get("LIS_GATEWAY_LOG_FORMAT", "console"))
    level = args.log_level or (config.log_level if config else None) or "info"
    logconfig.configure(json=fmt == "json", level=level)
    logconfig.forward_twisted_logs()


def cmd_receive(args: argparse.Namespace) -> int:
    """Run one analyzer link and print every result as a JSON line."""
    from lis_gateway import receive

    _logging(args)
    return receive.run_receive(receive.links_from_args(args), sys.stdout,
                               duration=args.duration)


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the gateway with simulated analyzers on TCP and on a serial pty."""
    from lis_gateway import demo

    _logging(args)
    return demo.run_demo(args)


def cmd_hl7_sim(args: argparse.Namespace) -> int:
    """Run a simulated HL7 analyzer against a gateway link."""
    from lis_gateway import hl7_sim

    _logging(args)
    return hl7_sim.run(args, sys.stdout)


def cmd_his_sim(args: argparse.Namespace) -> int:
    """Run a simulated HIS (results in, answers out, orders out)."""
    from lis_gateway import his_sim

    _logging(args)
    return his_sim.run(args, sys.stdout)


def cmd_simulate(args: argparse.Namespace) -> int:
    """Run a simulated analyzer of one driver's family."""
    from lis_gateway.sim import cli as sim_cli

    _logging(args)
    return sim_cli.run(args, sys.stdout, sys.stderr)


def cmd_replay(args: argparse.Namespace) -> int:
    """Replay wire recordings toward a gateway, or decode them offline."""
    from lis_gateway.sim import replay

    _logging(args)
    return replay.run(args, sys.stdout, sys.stderr)


def cmd_drivers(args: argparse.Namespace) -> int:
    """List the analyzer drivers with their defaults."""
    for name, spec in sorted(drivers.REGISTRY.items()):
        if args.json:
            print(json.dumps(_driver_facts(spec), ensure_ascii=False))
            continue
        facts = _driver_facts(spec)
        print(f"{name}: {spec.description}")
        for key in ("models", "protocol", "framing", "tcp_role", "serial", "encoding",
                    "checksum", "query_style", "default_status", "timezone", "mapping_table"):
            if facts.get(key):
                print(f"    {key.replace('_', ' ')}: {facts[key]}")
    return 0


def _driver_facts(spec: drivers.DriverSpec) -> dict[str, object]:
    s = spec.serial
    hl7 = spec.protocol is drivers.Protocol.HL7
    return {
        "name": spec.name, "description": spec.description, "models": spec.models,
        "protocol": spec.protocol.value,
        "framing": "mllp" if hl7 else spec.framing.value,
        "tcp_role": spec.tcp_role.value,
        "serial": "" if hl7 else f"{s.baudrate} {s.bytesize}{s.parity}{s.stopbits:g}",
        "encoding": (spec.hl7_encoding or "MSH-18, else " + spec.hl7_default_encoding)
        if hl7 else spec.encoding,
        "checksum": "" if hl7 else spec.checksum_mode.value,
        "query_style": spec.query_style.value, "default_status": spec.default_status,
        "timezone": spec.timezone, "mapping_table": spec.table_name,
        "tested_with": spec.tested_with,
    }


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="lis-gateway",
        description="Laboratory analyzer gateway: ASTM/HL7 analyzers in, results to the HIS.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-format", choices=("console", "json"), default=None,
                        help="log lines for people (console) or for journald/collectors "
                             "(json); default: the configuration's [logging] format, else "
                             "LIS_GATEWAY_LOG_FORMAT, else console")
    parser.add_argument("--log-level", default=None,
                        choices=("debug", "info", "warning", "error"),
                        help="default: the configuration's [logging] level, else info")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("parse", help="decode wire captures and print results as JSON lines",
                       description=(
                           "Decode captures (wire recordings, raw E1381 bytes, or bare "
                           "records one per line) and print one JSON object per result. "
                           "Problems go to standard error with their position. The exit "
                           "status is non-zero only when nothing could be parsed."))
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--driver", type=_driver, default=drivers.get("generic-astm"),
                   help="analyzer driver (default: generic-astm; see 'lis-gateway drivers')")
    p.add_argument("--encoding", type=_encoding, default=None,
                   help="character encoding (default: the driver's, usually latin-1)")
    p.add_argument("--accept-bad-checksums", action="store_true",
                   help="keep frames whose checksum fails, reporting them as warnings")
    p.add_argument("--mapping", action="append", type=Path, default=[], metavar="DIR",
                   help="a directory of mapping tables, searched before the shipped ones "
                        "(repeatable)")
    p.add_argument("--repair-line-endings", action="store_true",
                   help="undo CR/LF damage by terminal servers or capture tools before the "
                        "checksum check (reported as warnings)")
    p.set_defaults(func=cmd_parse)

    from lis_gateway import demo, his_sim, hl7_sim, receive

    p = sub.add_parser("receive", help="listen to one analyzer and print its results",
                       description=(
                           "Run one analyzer link (TCP server, TCP client or serial port) "
                           "and print one JSON line per result on standard output; status "
                           "and logs go to standard error. Stops on Ctrl-C or SIGTERM."))
    receive.add_arguments(p)
    p.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                   help="stop by itself after this many seconds")
    p.set_defaults(func=cmd_receive)

    p = sub.add_parser("demo", help="run the whole system: gateway, simulated analyzers and "
                                    "HIS, web app",
                       description=(
                           "Set up under ./var/demo and run the gateway (SQLite), three "
                           "simulated analyzers (ASTM on a serial pseudo-terminal, ASTM on TCP, "
                           "HL7 on TCP), a simulated HIS that orders each sample and receives "
                           "the results, and the web app on http://127.0.0.1:8080 (demo "
                           "accounts printed). Ctrl-C stops everything."))
    demo.add_arguments(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("his-sim", help="simulate an HIS: receive ORU^R01, answer as told, "
                                       "send orders",
                       description=(
                           "Listen for results over MLLP and answer each message AA, AE, AR, "
                           "nothing or by dropping the connection, as --answer says; with "
                           "--send-orders also send ORM^O01 orders (made-up patients) to a "
                           "gateway's order listener. Prints one line per message (samples "
                           "and counts, no patient data)."))
    his_sim.add_arguments(p)
    p.set_defaults(func=cmd_his_sim)

    p = sub.add_parser("hl7-sim", help="simulate an HL7 analyzer sending blood counts (the "
                                       "demo's; see also simulate)",
                       description=(
                           "Connect to a gateway HL7 link and send Mindray-style ORU^R01 "
                           "blood counts (made-up patients) every few seconds, waiting for "
                           "each ACK. With --json each delivery report is printed on "
                           "standard output."))
    hl7_sim.add_arguments(p)
    p.set_defaults(func=cmd_hl7_sim)

    from lis_gateway.sim import cli as sim_cli
    from lis_gateway.sim import replay as sim_replay

    p = sub.add_parser("simulate", help="simulate an analyzer of a driver's family",
                       description=sim_cli.DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    sim_cli.add_arguments(p)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("replay", help="replay wire recordings to a gateway, or decode them",
                       description=sim_replay.DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    sim_replay.add_arguments(p)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("run", help="run the configured analyzer links and store results",
                       description=(
                           "Check the configuration and the mapping tables, migrate the "
                           "database, then run every configured analyzer link; each "
                           "message is acknowledged only after it is committed. Stops on "
                           "Ctrl-C or SIGTERM."))
    config_option(p)
    p.set_defaults(func=cmd_run)

    from lis_gateway.lifecycle import ResultState

    p = sub.add_parser("results", help="print stored results",
                       description=(
                           "Print the stored results (latest version of each), one per "
                           "line, or one JSON object per line with --json, with its "
                           "lifecycle state and, when held, rejected or sent for a rerun, "
                           "the reasons."))
    config_option(p)
    p.add_argument("--sample", metavar="ID", default=None, help="only this sample (accession)")
    p.add_argument("--state", metavar="S", default=None,
                   choices=[state.value for state in ResultState],
                   help="only results in this state")
    p.add_argument("--json", action="store_true", help="one JSON object per result")
    p.set_defaults(func=cmd_results)

    p = sub.add_parser("user", help="manage the users who validate results")
    user_sub = p.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    p = user_sub.add_parser("add", help="add a user with roles",
                            description="Add a user (audited). With --password-stdin the "
                                        "password is read from the first line of standard "
                                        "input and kept as an argon2id hash.")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--roles", type=parse_roles, default=[], metavar="R1,R2",
                   help="comma-separated: technician, doctor, admin")
    p.add_argument("--display-name", default="", metavar="TEXT")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from standard input")
    p.add_argument("--certificate", type=parse_certificate, default="", metavar="NUMBER",
                   help="practising-certificate number (XML4 MA_BS_DOC_KQ)")
    from lis_gateway.cli_store import parse_section

    p.add_argument("--section", type=parse_section, action="append", default=[],
                   dest="sections", metavar="SECTION",
                   help="a lab section whose results the user may see and act on, as named "
                        "by 'section' on analyzers (repeatable)")
    config_option(p)
    p.set_defaults(func=cmd_user)
    p = user_sub.add_parser("sections", help="set the lab sections a user may see and act on",
                            description="Replace the lab sections of user NAME with "
                                        "SECTION... (none: clear them; audited). Once "
                                        "analyzers have a 'section', a person sees only the "
                                        "results of their sections; admins see all.")
    p.add_argument("name", metavar="NAME")
    p.add_argument("sections", type=parse_section, nargs="*", metavar="SECTION")
    config_option(p)
    p.set_defaults(func=cmd_user)
    p = user_sub.add_parser("certificate", help="set a user's practising-certificate number "
                                                "(an empty NUMBER clears it)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("certificate", type=parse_certificate, metavar="NUMBER")
    config_option(p)
    p.set_defaults(func=cmd_user)
    p = user_sub.add_parser("passwd", help="set a user's password (read from standard input; "
                                           "at least 10 characters)")
    p.add_argument("name", metavar="NAME")
    config_option(p)
    p.set_defaults(func=cmd_user)
    p = user_sub.add_parser("disable", help="disable a user (kept for the history)")
    p.add_argument("name", metavar="NAME")
    config_option(p)
    p.set_defaults(func=cmd_user)
    p = user_sub.add_parser("enable", help="let a disabled user log in and act again")
    p.add_argument("name", metavar="NAME")
    config_option(p)
    p.set_defaults(func=cmd_user)

    p = sub.add_parser("validate", help="validate (and approve) a sample's results",
                       description=(
                           "As USER, technically validate every result of SAMPLE that can "
                           "be validated; with --approve also approve it (lab doctors). "
                           "Results are released when the configured policy allows it and "
                           "their whole history does. Refusals are printed per result, "
                           "with the reason; every step is audited."))
    p.add_argument("sample", metavar="SAMPLE")
    p.add_argument("--user", required=True, metavar="NAME")
    p.add_argument("--approve", action="store_true", help="also approve (doctor role)")
    p.add_argument("--json", action="store_true", help="one JSON object per result")
    config_option(p)
    p.set_defaults(func=cmd_validate)

    for name, func, short, long in (
            ("retract", cmd_retract, "withdraw a released result (lab doctor)",
             "As USER (a lab doctor), withdraw the released result of TEST on SAMPLE, e.g. "
             "a sample of the wrong patient. A reason is required and audited; every "
             "destination is then sent a deletion (HL7 OBX-11 D, FHIR entered-in-error, "
             "REST status D)."),
            ("rerun", cmd_rerun, "ask for a rerun of a result (sent to the analyzer)",
             "As USER, ask for a rerun of the result of TEST on SAMPLE (not yet released; a "
             "reason is required and audited). An analyzer configured with order_download "
             "= true is sent the test again by the running gateway; for others the rerun "
             "is done at the analyzer, and the queue says so.")):
        p = sub.add_parser(name, help=short, description=long)
        p.add_argument("sample", metavar="SAMPLE")
        p.add_argument("test", metavar="TEST", help="the local or analyzer test code")
        p.add_argument("--user", required=True, metavar="NAME")
        p.add_argument("--reason", required=True)
        p.add_argument("--json", action="store_true", help="one JSON object")
        config_option(p)
        p.set_defaults(func=func)

    p = sub.add_parser("reprocess", help="re-map held results and re-evaluate the rules",
                       description=(
                           "For every held result: decode its message again, map it with "
                           "the current tables; when the content changes a new version is "
                           "stored (reason 'reprocessed after mapping/rule change') and "
                           "judged by the current rules, else the current rules' outcomes "
                           "are recorded (a held result stays held until a person "
                           "validates it). Everything is audited; one JSON line per result."))
    config_option(p)
    p.set_defaults(func=cmd_reprocess)

    p = sub.add_parser("rules", help="autoverification rule tools")
    rules_sub = p.add_subparsers(dest="rules_command", required=True, metavar="ACTION")
    p = rules_sub.add_parser("test", help="replay captures through a rule set",
                             description=(
                                 "Decode CAPTURE files with the driver, normalize them with "
                                 "its mapping table (the configured directories with "
                                 "--config, else the shipped ones) and print, per result, "
                                 "one JSON line with what the rule set FILE would decide "
                                 "and every rule's outcome. The delta check compares with "
                                 "earlier results of the same sample in the captures given. "
                                 "Nothing is stored."))
    p.add_argument("rules_file", metavar="FILE")
    p.add_argument("captures", nargs="+", metavar="CAPTURE")
    p.add_argument("--driver", type=_driver, default=drivers.get("generic-astm"),
                   help="analyzer driver (default: generic-astm)")
    p.add_argument("--config", type=Path, default=None, metavar="FILE",
                   help="take mapping directories and the policy from this configuration")
    p.set_defaults(func=cmd_rules_test)

    p = sub.add_parser("check-config", help="check a configuration file without starting",
                       description=(
                           "Read FILE as 'run' would: every problem is printed with its key "
                           "path (mapping-table problems with file, line and column) and the "
                           "exit status is 2; warnings (a serial device absent now, an "
                           "analyzer without a mapping table) do not fail the check. "
                           "Nothing is started, no database is touched."))
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("migrate", help="create or upgrade the database schema")
    database_option(p)
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("audit", help="audit log tools")
    audit_sub = p.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    p = audit_sub.add_parser("verify", help="check the audit log's hash chain (exit 1 if broken)")
    database_option(p)
    p.set_defaults(func=cmd_audit_verify)

    add_outbox_commands(sub)
    add_downloads_commands(sub)
    add_export_commands(sub)

    p = sub.add_parser("drivers", help="list the analyzer drivers with their defaults")
    p.add_argument("--json", action="store_true", help="one JSON object per driver")
    p.set_defaults(func=cmd_drivers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.func(args)
    except BrokenPipeError:  # `lis-gateway results | head`: the reader has gone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return status
