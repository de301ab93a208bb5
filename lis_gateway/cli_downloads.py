"""``lis-gateway downloads list|retry``: work pushed to analyzers (order_download)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from lis_gateway.cli_outbox import retry_each
from lis_gateway.cli_store import _now, _source, config_option, in_store

if TYPE_CHECKING:
    from sqlalchemy import Connection


def cmd_downloads_list(args: argparse.Namespace) -> int:
    """Print the downloads queue, oldest first (optionally one state)."""
    from lis_gateway.store import downloads

    status, rows = in_store(args, lambda conn, _config: downloads.listing(conn, args.state))
    if rows is None:
        return status
    for row in rows:
        if args.json:
            print(json.dumps(row.to_dict(), ensure_ascii=False))
            continue
        why = f"  {row.last_error}" if row.last_error else ""
        print(f"{row.id}\t{row.analyzer}\t{row.accession}\t{row.action}\t{row.test_code}\t"
              f"{row.state}\t{row.attempts} attempt(s){why}")
    return 0


def cmd_downloads_retry(args: argparse.Namespace) -> int:
    """Put not-sent rows back in line (audited under the user's name)."""
    from lis_gateway.store import downloads

    def one(conn: Connection, download_id: int, username: str) -> str:
        row = downloads.retry(conn, download_id, actor=username, at=_now(), source=_source())
        return (f"download {row.id} ({row.accession} {row.test_code} to {row.analyzer}) "
                "is pending again")

    return retry_each(args, args.ids, "download", one)


def add_downloads_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``downloads`` subcommands."""
    p = sub.add_parser("downloads", help="orders and reruns pushed to analyzers")
    down_sub = p.add_subparsers(dest="downloads_command", required=True, metavar="ACTION")
    p = down_sub.add_parser(
        "list", help="list the downloads queue, oldest first",
        description=("One line (or JSON object) per queued test: analyzer, sample, action "
                     "(new, cancel, rerun), test code, state (pending, sent, not-sent), "
                     "attempts and the last error. Only analyzers with order_download = "
                     "true are sent anything; the running gateway does the sending."))
    p.add_argument("--state", choices=("pending", "sent", "not-sent"))
    p.add_argument("--json", action="store_true", help="one JSON object per row")
    config_option(p)
    p.set_defaults(func=cmd_downloads_list)
    p = down_sub.add_parser(
        "retry", help="send not-sent rows again once the cause is fixed",
        description="Put not-sent rows back in line; audited with the user's name.")
    p.add_argument("ids", nargs="+", type=int, metavar="ID")
    p.add_argument("--user", required=True, metavar="NAME")
    config_option(p)
    p.set_defaults(func=cmd_downloads_retry)
