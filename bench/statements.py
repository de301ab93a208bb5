"""What one message costs the store: SQL statements and time per step, in process.

    .venv/bin/python bench/statements.py            # SQLite (WAL, synchronous=FULL)

Runs the work the gateway's database thread does for one 20-result message
(``lis_gateway.ingest.store_for_analyzer`` with the bench's mapping table and
rules, in one transaction, exactly as ``StoreSink`` calls it) on a fresh
SQLite file, counts the statements SQLAlchemy sends to the driver
(``before_cursor_execute``) by their first words, and times 50 messages with
and without the rules (autoverification) to split the cost. It explains
where ``bench/system.py``'s gateway CPU per message goes; it is not a figure
for the table of targets.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import workload  # noqa: E402
from procs import Analyzer, GatewaySetup  # noqa: E402
from sqlalchemy import event  # noqa: E402

from drivers.extract import extract_results  # noqa: E402
from lis_gateway.astm.assembler import AstmMessage, MessageAssembler  # noqa: E402
from lis_gateway.autoverify import Autoverification  # noqa: E402
from lis_gateway.config import load_config  # noqa: E402
from lis_gateway.ingest import load_tables, normalize_rows, store_for_analyzer  # noqa: E402
from lis_gateway.store.engine import make_engine  # noqa: E402
from lis_gateway.store.migrations import migrate  # noqa: E402

N = 50


def astm_message(msg: workload.Message) -> AstmMessage:
    assembler = MessageAssembler(workload.ENCODING)
    items: list[Any] = []
    for frame in msg.frames:
        items += assembler.add_text(frame[2:-5], block_end=frame[-5] == 0x03)
    return next(i for i in items if isinstance(i, AstmMessage))


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="lis-bench-stmt-") as tmp:
        directory = Path(tmp)
        url = f"sqlite:///{directory / 'lis.db'}"
        setup = GatewaySetup(url, [Analyzer("a000")])
        (directory / "mappings").mkdir()
        (directory / "mappings" / "generic-astm.csv").write_text(workload.mapping_csv())
        (directory / "rules.toml").write_text(workload.RULES_TOML)
        (directory / "lis-gateway.toml").write_text(setup.toml(directory))
        config = load_config(directory / "lis-gateway.toml")
        link = config.links()[0]
        table = load_tables([link.driver], config.mapping_directories)[link.driver.table_name]
        judging = replace(Autoverification(config.rule_set, config.policy), table=table,
                          driver=link.driver.name)
        engine = make_engine(url)
        migrate(url, engine=engine)
        counts: Counter[str] = Counter()
        counting = [False]

        @event.listens_for(engine, "before_cursor_execute")
        def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if counting[0]:
                words = statement.split()
                kind = " ".join(words[:3]) if words[0] in ("INSERT", "UPDATE") else words[0]
                counts[kind] += 1

        def store(i: int, rules: bool) -> float:
            msg = astm_message(workload.message(f"ST{i:06d}{int(rules)}", 100 + i))
            rows = extract_results(msg, link.driver)
            results = normalize_rows(rows, link.driver, table)
            t0 = time.perf_counter()
            with engine.begin() as conn:
                store_for_analyzer(conn, analyzer="a000", family=link.driver.name,
                                   protocol="astm", raw=msg.raw, received_at=datetime.now(UTC),
                                   results=results, autoverification=judging if rules else None,
                                   problems=[])
            return time.perf_counter() - t0

        for i in range(5):  # warm-up: statement caches
            store(10_000 + i, True)
        counting[0] = True
        store(20_000, True)
        counting[0] = False
        with_rules = [store(i, True) for i in range(N)]
        without = [store(1000 + i, False) for i in range(N)]
        engine.dispose()
    total = sum(counts.values())
    out = {"statements_per_message": total, "by_kind": dict(counts.most_common()),
           "ms_per_message_with_rules": statistics.median(with_rules) * 1e3,
           "ms_per_message_without_rules": statistics.median(without) * 1e3,
           "messages_timed": N}
    print(f"one 20-result message, rules on: {total} SQL statements "
          f"({total / 20:.1f} per result)")
    for kind, n in counts.most_common():
        print(f"  {n:4d}  {kind}")
    print(f"median of {N}: {out['ms_per_message_with_rules']:.1f} ms per message with the "
          f"rules, {out['ms_per_message_without_rules']:.1f} ms without (results stay "
          "received)")
    path = BENCH / "results" / "statements.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"written {path.relative_to(BENCH.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
