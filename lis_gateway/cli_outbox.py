"""``lis-gateway outbox list|retry`` and ``reconcile``: results on their way to the HIS."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from lis_gateway.cli_store import (
    _load_config,
    _now,
    _open_store,
    _source,
    config_option,
    in_store,
)

if TYPE_CHECKING:
    from sqlalchemy import Connection


def cmd_outbox_list(args: argparse.Namespace) -> int:
    """Print outbox entries (oldest first), optionally of one destination and state."""

    from lis_gateway.outbound.delivery import EntryState
    from lis_gateway.store import outbox

    # read-only: queueing is the running gateway's job
    status, entries = in_store(args, lambda conn, _config: outbox.entries(
        conn, destination=args.destination,
        state=None if args.state is None else EntryState(args.state)))
    if entries is None:
        return status
    for entry in entries:
        if args.json:
            print(json.dumps(entry.to_dict(), ensure_ascii=False))
            continue
        when = (f"next {entry.next_attempt_at:%Y-%m-%d %H:%M:%S}Z"
                if entry.next_attempt_at is not None and entry.state is EntryState.PENDING
                else "")
        why = f"  {entry.last_status}: {entry.last_error}" if entry.last_error else (
            f"  {entry.last_status}" if entry.last_status else "")
        print(f"{entry.id}\t{entry.destination}\t{entry.accession}\t{entry.test_code}\t"
              f"{entry.control_id}\t{entry.state.value}\t{entry.attempts} attempt(s)\t"
              f"{when}{why}")
    return 0


def cmd_outbox_retry(args: argparse.Namespace) -> int:
    """Put dead-lettered entries back in line (audited under the user's name)."""
    from lis_gateway.store import outbox

    def one(conn: Connection, entry_id: int, username: str) -> str:
        entry = outbox.retry(conn, entry_id, actor=username, at=_now(), source=_source())
        return (f"outbox entry {entry.id} ({entry.accession} {entry.test_code} to "
                f"{entry.destination}) is pending again")

    return retry_each(args, args.entries, "outbox entry", one)


def retry_each(args: argparse.Namespace, ids: Sequence[int], what: str,
               one: Callable[[Connection, int, str], str]) -> int:
    """As an active user, run ``one`` on each id in its own transaction; print each
    outcome (a refusal on standard error, exit status 1)."""
    from lis_gateway.store import repository
    from lis_gateway.store._common import StoreError

    config = _load_config(args)
    if config is None:
        return 2
    engine = _open_store(config)
    if engine is None:
        return 1
    status = 0
    try:
        with engine.begin() as conn:
            try:
                user = repository.get_user(conn, args.user)
            except repository.NotFoundError:
                print(f"no user {args.user!r}", file=sys.stderr)
                return 2
            if not user.active:
                print(f"user {args.user!r} is disabled", file=sys.stderr)
                return 2
        for item in ids:
            try:
                with engine.begin() as conn:
                    print(one(conn, item, user.username))
            except StoreError as exc:
                print(f"{what} {item}: {exc}", file=sys.stderr)
                status = 1
    finally:
        engine.dispose()
    return status


def _since(text: str) -> datetime:
    """``--since``: an ISO date or date-time; without an offset it is local time."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date such as 2026-11-01 or "
                                         f"2026-11-01T08:00, got {text!r}") from None
    return moment if moment.tzinfo is not None else moment.astimezone()


def cmd_reconcile(args: argparse.Namespace) -> int:
    """Every result received, and where it is for each destination (see store/reconcile.py)."""
    from collections import Counter

    from lis_gateway.store.reconcile import reconcile

    config = _load_config(args)
    if config is None:
        return 2
    names = [d.name for d in config.destinations]
    if not names:
        print(f"{config.file}: no [[destinations]] configured; nothing to reconcile against",
              file=sys.stderr)
        return 2
    engine = _open_store(config)
    if engine is None:
        return 1
    try:
        with engine.begin() as conn:
            rows = reconcile(conn, names, args.since)
    finally:
        engine.dispose()
    counts: dict[str, Counter[str]] = {name: Counter() for name in names}
    for row in rows:
        for place in row.destinations:
            counts[place.destination][place.where] += 1
        if args.json:
            print(json.dumps(row.to_dict(), ensure_ascii=False))
            continue
        for place in row.destinations:
            if place.where == "delivered" and not args.all:
                continue
            when = f" ({place.at:%Y-%m-%d %H:%M:%S}Z)" if place.at is not None else ""
            print(f"{row.accession}\t{row.test_code}\t{row.analyzer}\tv{row.version}\t"
                  f"{place.destination}\t{place.where}{when}\t{place.detail}")
    if not args.json:
        since = f" since {args.since.isoformat()}" if args.since is not None else ""
        print(f"{len(rows)} result(s) received{since}")
        for name in names:
            parts = ", ".join(f"{n} {where}" for where, n in sorted(counts[name].items()))
            print(f"{name}: {parts or 'nothing'}")
    return 0


def add_outbox_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``outbox`` subcommands."""
    p = sub.add_parser("outbox", help="results on their way to the HIS")
    outbox_sub = p.add_subparsers(dest="outbox_command", required=True, metavar="ACTION")
    p = outbox_sub.add_parser(
        "list", help="list outbox entries, oldest first",
        description=("One line (or JSON object) per entry: destination, sample, test, "
                     "control ID (MSH-10), state (pending, delivered, dead), attempts, "
                     "next attempt and the destination's last answer. Released results "
                     "the gateway has not queued yet are listed by 'reconcile'."))
    p.add_argument("--destination", metavar="NAME")
    p.add_argument("--state", choices=("pending", "delivered", "dead"))
    p.add_argument("--json", action="store_true", help="one JSON object per entry")
    config_option(p)
    p.set_defaults(func=cmd_outbox_list)
    p = outbox_sub.add_parser(
        "retry", help="send dead-lettered entries again once the cause is fixed",
        description="Put dead entries back in line, due now; audited with the user's name.")
    p.add_argument("entries", nargs="+", type=int, metavar="ID")
    p.add_argument("--user", required=True, metavar="NAME")
    config_option(p)
    p.set_defaults(func=cmd_outbox_retry)

    p = sub.add_parser(
        "reconcile", help="prove every result received was delivered, or say where it waits",
        description=("For every patient result received (since DATE), per configured "
                     "destination: delivered, or where it waits and why (waiting for "
                     "validation, not reportable, not queued, pending with the last "
                     "answer, dead with the destination's text). Prints what is not "
                     "delivered (--all: everything) and a count per destination."))
    p.add_argument("--since", type=_since, metavar="DATE",
                   help="only results received from then on (ISO date; local time)")
    p.add_argument("--all", action="store_true", help="list delivered results too")
    p.add_argument("--json", action="store_true", help="one JSON object per result")
    config_option(p)
    p.set_defaults(func=cmd_reconcile)
