"""Issue 9's targets that ``bench/system.py`` does not cover, on the real gateway process.

Run from the repository root with the project's interpreter::

    .venv/bin/python bench/targets.py              # about 7 minutes
    .venv/bin/python bench/targets.py --quick      # about 2 minutes
    .venv/bin/python bench/targets.py --only soak --soak-messages 1000000   # the full soak

Scenarios (every sample in ``bench/results/targets.json``; the gateway launcher,
the analyzers, the HIS and the statistics are ``bench/system.py``'s):

* ``paced``: T2 and T3 as the targets define them: 100 analyzers together sending
  100 messages/s (each a 20-result message about once a second), frame ACK,
  final-frame ACK and ENQ latency, and the gateway's CPU share; the flat-out
  runs of ``bench/system.py`` measure the same latencies at saturation instead.
* ``stall``: frame ACK latency (p50, p99, max) of 100 analyzers sending while
  (a) another process holds SQLite's write lock for a few seconds, (b) the HIS
  stops answering (accepts and reads, never ACKs); each against the 1 s bound.
  The store must hold exactly the acknowledged results afterwards.
* ``outage-drain``: results queued through the real gateway (analyzers sending,
  autoverified results released) while the HIS is down (nothing listens on its
  port), then the HIS starts: the drain rate (ORU^R01 acknowledged by the HIS per
  second) and every result delivered once (control IDs and sample/test counted).
* ``logging``: the same ingest with logging at the production setting (JSON at
  INFO to a file) and with logging above everything (``error``); gateway CPU per
  message of each, alternated; plus the cost of one log line and of the metric
  updates of one message timed in this process (metrics cannot be switched off).
* ``links-256``: 256 analyzers configured and all sending at once: start-up time,
  RSS per active link and in all, frame ACK latency.
* ``soak``: RSS of the gateway sampled while it takes a long stream of messages;
  growth slope per message and the extrapolation to a million messages.

The machine is shared: the load average before and after each run is kept
with its samples.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import itertools
import re
import statistics
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import analyzers  # noqa: E402
import procs  # noqa: E402
import system  # noqa: E402
import timing  # noqa: E402
import workload  # noqa: E402
from his import His  # noqa: E402
from procs import Analyzer, BenchError, Gateway, GatewaySetup  # noqa: E402
from system import Bench, Runner, latency, spread, stored_counts  # noqa: E402

RESULTS = BENCH / "results" / "targets.json"
SENDER_TIMER_S = 15.0  # E1381's sender timer (analyzers.REPLY_TIMEOUT)
BOUND_S = 1.0  # issue 9: no frame ACK over 1 s, even while the database or the HIS stalls
MIB = 2**20

#: Holds SQLite's write lock from another process: BEGIN IMMEDIATE, sleep, ROLLBACK.
LOCKER = """\
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
print("released", flush=True)
"""


def stream(run: str, link: int, results: int, count: int | None = None
           ) -> Iterator[workload.Message]:
    """Messages built as they are sent (a soak's million would not fit in memory)."""
    seqs = itertools.count() if count is None else range(count)
    for seq in seqs:
        yield workload.message(workload.sample_id(run, link, seq),
                               (link + 1) * 10_000_000 + seq, results)


def warm_up(runner: Runner, ports: Sequence[int], run: str) -> int:
    """Two messages on each of (up to) ten links, not recorded; the results sent."""
    links = min(10, len(ports))
    runner.run(ports[:links], [list(stream(run, i, 20, 2)) for i in range(links)])
    return links * 2 * 20


def window(stats: Sequence[analyzers.LinkStats], kind: str, lo: float, hi: float
           ) -> list[float]:
    """Latencies of ``kind`` (enq, frames, finals) whose request was written in [lo, hi]."""
    return [dt for s in stats for t0, dt in zip(getattr(s, kind + "_t0"), getattr(s, kind),
                                                strict=True) if lo <= t0 <= hi]


def over(stats: Sequence[analyzers.LinkStats], kind: str, bound: float) -> int:
    return sum(dt > bound for s in stats for dt in getattr(s, kind))


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys over xs (NaN with fewer than two points)."""
    if len(xs) < 2:
        return float("nan")
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


@contextlib.contextmanager
def patient_senders(seconds: float = 120.0) -> Iterator[float]:
    """Let the analyzers wait ``seconds`` for a reply instead of E1381's 15 s (yields 15 s).

    A final frame whose commit waits behind many others may take longer than the
    sender timer; these scenarios count such replies instead of failing on them.
    """
    timer, analyzers.REPLY_TIMEOUT = analyzers.REPLY_TIMEOUT, seconds
    bids, analyzers.BUSY_TRIES = analyzers.BUSY_TRIES, int(seconds / 0.05)
    try:
        yield timer
    finally:
        analyzers.REPLY_TIMEOUT, analyzers.BUSY_TRIES = timer, bids


def soak_growth(trace: Sequence[dict[str, Any]], rss0_mib: float) -> dict[str, Any]:
    """RSS growth of a soak from its samples (taken while the links sent).

    The first sample comes after the caches warmed a little (SQLite's page cache,
    SQLAlchemy's statement cache, the allocator's arenas); the slopes are least-squares
    fits over the samples after the first one and over the second half, in bytes per
    message, and extrapolated linearly to a million messages. RSS also falls back now
    and then (a sawtooth of a few MiB in a 150,000-message run), which a line fits
    badly: the floor (the lowest sample) of the last third against that of the first
    third is the steadier sign of a leak, extrapolated the same way.
    """
    if not trace:
        return {}
    total = trace[-1]["messages"]
    after = list(trace[1:])
    half = [t for t in trace if t["messages"] >= total / 2]

    def fit(points: Sequence[dict[str, Any]]) -> float:
        return slope([t["messages"] for t in points], [t["rss_mib"] * MIB for t in points])

    out = {"rss_first_sample_mib": trace[0]["rss_mib"], "rss_last_sample_mib": trace[-1]["rss_mib"],
           "growth_mib": trace[-1]["rss_mib"] - rss0_mib,
           "growth_after_first_sample_mib": trace[-1]["rss_mib"] - trace[0]["rss_mib"],
           "slope_bytes_per_message_after_first": fit(after),
           "slope_bytes_per_message_second_half": fit(half)}
    for key in ("after_first", "second_half"):
        out[f"extrapolated_1m_mib_{key}_slope"] = (
            out[f"slope_bytes_per_message_{key}"] * 1e6 / MIB)
    third = max(1, len(trace) // 3)
    floor0 = min(trace[:third], key=lambda t: t["rss_mib"])
    floor1 = min(trace[-third:], key=lambda t: t["rss_mib"])
    out["rss_floor_first_third_mib"] = floor0["rss_mib"]
    out["rss_floor_last_third_mib"] = floor1["rss_mib"]
    out["rss_max_sample_mib"] = max(t["rss_mib"] for t in trace)
    span = floor1["messages"] - floor0["messages"]
    out["floor_growth_bytes_per_message"] = (
        (floor1["rss_mib"] - floor0["rss_mib"]) * MIB / span if span > 0 else float("nan"))
    out["extrapolated_1m_mib_floor"] = out["floor_growth_bytes_per_message"] * 1e6 / MIB
    return out


class RssSampler:
    """Samples a process's RSS every ``interval`` seconds in a thread (the peak and a trace)."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, BenchError):
                self.samples.append((time.perf_counter(), procs.rss_bytes(self.pid)))
            self._stop.wait(self.interval)

    @property
    def peak(self) -> int:
        return max((rss for _t, rss in self.samples), default=0)


class Targets(Bench):
    """The scenarios; sizes from the command line (``--quick`` makes them small)."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        super().__init__(args.quick, work, profile=False)
        self.args = args
        self.reps = 2 if args.quick else 3

    def gateway(self, name: str, analyzers_: Sequence[Analyzer], *, check: bool = True,
                **setup: Any) -> Gateway:
        directory = self.directory(name)
        return Gateway(GatewaySetup(f"sqlite:///{directory / 'lis.db'}", analyzers_, **setup),
                       directory, workload.mapping_csv(), workload.RULES_TOML, check=check)

    def check_stored(self, gateway: Gateway, acknowledged: int) -> dict[str, int]:
        """After the gateway stopped: the store holds exactly the acknowledged results."""
        counts = stored_counts(gateway.setup.database_url)
        if counts["results"] != acknowledged:
            raise BenchError(f"{acknowledged} results acknowledged, {counts['results']} stored")
        return counts

    # -- paced: 100 links at an aggregate 100 messages/s (T2's and T3's condition)

    def paced(self) -> dict[str, Any]:
        with patient_senders():
            return asyncio.run(self._paced())

    async def _paced(self) -> dict[str, Any]:
        links, rate = 100, 100.0
        duration = 8.0 if self.quick else 20.0
        names = [f"p{i:03d}" for i in range(links)]
        gw = self.gateway("paced", [Analyzer(n) for n in names])
        loop = asyncio.get_running_loop()
        runs: list[dict[str, Any]] = []
        try:
            await loop.run_in_executor(None, gw.start)
            runner = Runner(gw.pid)
            ports = [gw.ports[n] for n in names]
            sent = await loop.run_in_executor(None, warm_up, runner, ports, "PW")
            for rep in range(self.reps):
                # each link: one message a second (links / rate), the links spread over it
                run = await runner.arun(ports, [stream(f"P{rep}", i, 20) for i in range(links)],
                                        period=links / rate, duration=duration)
                run.pop("eot_at")
                run["server_cpu_share"] = run["server_cpu_s"] / run["wall_s"]
                runs.append(run)
                sent += run["results"]
                print(f"   rep {rep + 1}: {run['messages_per_s']:.0f} msgs/s from {links} "
                      f"links; frame ACK p50 {run['frame_ack']['p50_ms']:.3f} ms p99 "
                      f"{run['frame_ack']['p99_ms']:.2f} ms max {run['max_ms']['frame']:.1f} "
                      f"ms; final p50 {run['final_frame_ack']['p50_ms']:.1f} ms p99 "
                      f"{run['final_frame_ack']['p99_ms']:.1f} ms; ENQ p99 "
                      f"{run['enq_ack']['p99_ms']:.2f} ms; gateway CPU "
                      f"{run['server_cpu_share'] * 100:.0f}% of a core; load "
                      f"{run['loadavg_before'][0]:.2f}->{run['loadavg_after'][0]:.2f}",
                      flush=True)
            status = await loop.run_in_executor(None, gw.stop)
            stored = self.check_stored(gw, sent)
        finally:
            await loop.run_in_executor(None, gw.stop)
        summary = system.summarize_runs(runs)
        summary["server_cpu_share"] = spread([r["server_cpu_share"] for r in runs])
        return {"links": links, "target_messages_per_s": rate, "duration_s": duration,
                "exit_status": status, "stored": stored, "summary": summary, "runs": runs}

    # -- stall: the database locked, the HIS silent

    def stall(self) -> dict[str, Any]:
        with patient_senders():
            return asyncio.run(self._stall())

    async def _stall(self) -> dict[str, Any]:
        links = self.args.stall_links or (50 if self.quick else 100)
        duration, at, hold = (3.0, 0.8, 1.5) if self.quick else (8.0, 2.0, 3.0)
        hold = self.args.lock_seconds or hold
        duration = max(duration, at + hold + 1.0)
        names = [f"s{i:03d}" for i in range(links)]
        his = His()
        his_port = await his.start()
        db_gw = self.gateway("stall-db", [Analyzer(n) for n in names])
        his_gw = self.gateway("stall-his", [Analyzer(n, unsolicited=True) for n in names],
                              his_port=his_port, release_autoverified=True)
        loop = asyncio.get_running_loop()
        out: dict[str, Any] = {"links": links, "duration_s": duration, "stall_at_s": at,
                               "lock_seconds": hold, "bound_ms": BOUND_S * 1e3}
        try:
            for gw in (db_gw, his_gw):
                await loop.run_in_executor(None, gw.start)
            sent = {}
            runners = {}
            for key, gw in (("db", db_gw), ("his", his_gw)):
                runners[key] = Runner(gw.pid)
                sent[key] = await loop.run_in_executor(None, warm_up, runners[key],
                                                       [gw.ports[n] for n in names], f"W{key}")
            phases: dict[str, list[dict[str, Any]]] = {"db-lock": [], "his-silent": []}
            for rep in range(self.reps):
                # (a) another process holds the write lock from `at` for `hold` seconds
                db_path = db_gw.directory / "lis.db"
                lock = asyncio.ensure_future(self._lock(db_path, 0.3 + at, hold))
                run = await runners["db"].arun(
                    [db_gw.ports[n] for n in names],
                    [stream(f"D{rep}", i, 20) for i in range(links)], duration=duration)
                lo, hi = await lock
                phases["db-lock"].append(self._stall_run(run, runners["db"].last_stats, lo, hi))
                sent["db"] += run["results"]
                # (b) the HIS answers, then from `at` on reads and answers nothing
                his.silent = False
                silence = asyncio.ensure_future(self._silence(his, 0.3 + at))
                run = await runners["his"].arun(
                    [his_gw.ports[n] for n in names],
                    [stream(f"H{rep}", i, 20) for i in range(links)], duration=duration)
                lo = await silence
                phases["his-silent"].append(self._stall_run(run, runners["his"].last_stats, lo,
                                                            time.perf_counter()))
                sent["his"] += run["results"]
                for phase in phases:
                    self._print_stall(f"rep {rep + 1} {phase:10s}", phases[phase][-1])
                print(f"      the HIS has read {his.unanswered} ORU^R01 it never answered",
                      flush=True)
            his.silent = False
            long_hold = 0.0 if self.quick else self.args.long_lock_seconds
            if long_hold:
                # (c) once: a lock longer than the gateway's busy_timeout (10 s), so its
                # store transaction fails and the final frame is NAKed
                lock = asyncio.ensure_future(self._lock(db_gw.directory / "lis.db", 0.3 + at,
                                                        long_hold))
                run = await runners["db"].arun(
                    [db_gw.ports[n] for n in names],
                    [stream("DL", i, 20) for i in range(links)],
                    duration=at + long_hold + 1.0)
                lo, hi = await lock
                r = self._stall_run(run, runners["db"].last_stats, lo, hi)
                sent["db"] += run["results"]
                out["db-lock-long"] = r
                self._print_stall(f"db lock of {long_hold:.0f} s", r)
            for key, gw in (("db", db_gw), ("his", his_gw)):
                out[f"exit_status_{key}"] = await loop.run_in_executor(None, gw.stop)
                out[f"stored_{key}"] = self.check_stored(gw, sent[key])
            out["his_unanswered"] = his.unanswered
            for phase, runs in phases.items():
                out[phase] = {"summary": self._stall_summary(runs), "runs": runs}
            return out
        finally:
            for gw in (db_gw, his_gw):
                await loop.run_in_executor(None, gw.stop)
            await his.stop()

    @staticmethod
    def _print_stall(label: str, r: dict[str, Any]) -> None:
        during = r["during"]
        print(f"   {label}: {r['messages']} msgs; during the stall frame ACK p50 "
              f"{during['frame_ack']['p50_ms']:.2f} ms p99 {during['frame_ack']['p99_ms']:.1f}"
              f" ms max {during['frame_ack']['max_ms']:.0f} ms, final frame max "
              f"{during['final_frame_ack']['max_ms']:.0f} ms, ENQ max "
              f"{during['enq_ack']['max_ms']:.0f} ms; over 1 s: {r['over_bound']}, over 15 s: "
              f"{r['over_sender_timer']}; NAK {r['naks']} busy {r['busy']}; load "
              f"{r['loadavg_before'][0]:.2f}->{r['loadavg_after'][0]:.2f}", flush=True)

    @staticmethod
    async def _lock(db: Path, delay: float, hold: float) -> tuple[float, float]:
        """Hold SQLite's write lock on ``db`` from another process; when it was held."""
        await asyncio.sleep(delay)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", LOCKER, str(db), str(hold),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        line = await proc.stdout.readline()
        held = time.perf_counter()
        if line.strip() != b"locked":
            raise BenchError(f"the lock could not be taken: {line!r} "
                             f"{(await proc.stderr.read())!r}")  # type: ignore[union-attr]
        await proc.stdout.readline()
        released = time.perf_counter()
        await proc.wait()
        return held, released

    @staticmethod
    async def _silence(his: His, delay: float) -> float:
        await asyncio.sleep(delay)
        his.silent = True
        return time.perf_counter()

    @staticmethod
    def _stall_run(run: dict[str, Any], stats: Sequence[analyzers.LinkStats], lo: float,
                   hi: float) -> dict[str, Any]:
        run.pop("eot_at")
        # a request written during the stall, or in the second before it (its reply can
        # be held up by it too)
        kinds = (("frame", "frames"), ("final_frame", "finals"), ("enq", "enq"))
        during = {f"{name}_ack": latency(window(stats, kind, lo - 1.0, hi))
                  for name, kind in kinds}
        before = {f"{name}_ack": latency(window(stats, kind, 0.0, lo - 1.0))
                  for name, kind in kinds}
        return {**run, "stall_s": hi - lo, "during": during, "before": before,
                "over_bound": {k: over(stats, k, BOUND_S) for k in ("frames", "finals", "enq")},
                "over_sender_timer": {k: over(stats, k, SENDER_TIMER_S)
                                      for k in ("frames", "finals", "enq")}}

    @staticmethod
    def _stall_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {"reps": len(runs)}
        for key in ("frame_ack", "final_frame_ack", "enq_ack"):
            for stat in ("p50_ms", "p99_ms"):
                out[f"{key}_{stat}"] = spread([r[key][stat] for r in runs])
                out[f"during_{key}_{stat}"] = spread([r["during"][key][stat] for r in runs])
                out[f"before_{key}_{stat}"] = spread([r["before"][key][stat] for r in runs])
            out[f"{key}_max_ms"] = max(r[key]["max_ms"] for r in runs)
            out[f"before_{key}_max_ms"] = max(r["before"][key]["max_ms"] for r in runs)
        for key in ("over_bound", "over_sender_timer"):
            out[key] = {k: sum(r[key][k] for r in runs) for k in ("frames", "finals", "enq")}
        out["naks"] = sum(r["naks"] for r in runs)
        out["busy"] = sum(r["busy"] for r in runs)
        out["messages_per_s"] = spread([r["messages_per_s"] for r in runs])
        return out

    # -- an HIS outage and the drain after it

    def outage_drain(self) -> dict[str, Any]:
        return asyncio.run(self._outage_drain())

    async def _outage_drain(self) -> dict[str, Any]:
        total = self.args.drain_results or (600 if self.quick else 150_000)
        links, per_message = 10, 20
        messages = -(-total // per_message)
        his_port = procs.free_port()  # nothing listens there until the HIS "comes back"
        names = [f"o{i:02d}" for i in range(links)]
        gw = self.gateway("outage", [Analyzer(n, unsolicited=True) for n in names],
                          his_port=his_port, release_autoverified=True)
        loop = asyncio.get_running_loop()
        his = His()
        try:
            await loop.run_in_executor(None, gw.start)
            runner = Runner(gw.pid)
            plan = [stream("O", i, per_message, messages // links + (i < messages % links))
                    for i in range(links)]
            load0 = procs.loadavg()
            outage_from = time.perf_counter()
            with patient_senders():
                run = await runner.arun([gw.ports[n] for n in names], plan)
            run.pop("eot_at")
            queued = run["results"]
            print(f"   {run['messages']} messages ({queued} results) ingested with the HIS "
                  f"down in {run['wall_s']:.1f} s ({run['results_per_s']:.0f} results/s)",
                  flush=True)
            t0 = time.perf_counter()
            pending = await loop.run_in_executor(None, self._wait_queued, gw, queued, 30.0)
            queue_s = time.perf_counter() - t0
            print(f"   outbox: {pending} entries for the HIS {queue_s:.1f} s after the last "
                  f"ACK to the analyzers (the rest released, not queued yet)", flush=True)
            cpu0 = procs.cpu_seconds(gw.pid)
            await his.start(his_port)
            his_up = time.perf_counter()
            # the wait is bounded: a drain slower than this is reported as incomplete
            limit = max(60.0, min(queued / 200, 600.0))
            complete = await his.wait_for(queued, limit)
            cpu = procs.cpu_seconds(gw.pid) - cpu0
            got = his.deliveries
            done = got[-1].acked_at if got else his_up
            ids = Counter(d.control_id for d in got)
            pairs = Counter((d.sample, d.test) for d in got)
            deciles = self._deciles([d.acked_at for d in got])
            drained = {
                "results_queued": queued, "outbox_pending": pending,
                "outage_s": his_up - outage_from,
                "queued_after_last_ack_s": queue_s, "delivered": len(got),
                "all_delivered": complete, "time_limit_s": limit,
                "distinct_control_ids": len(ids),
                "duplicate_deliveries": len(got) - len(ids),
                "distinct_results": len(pairs), "not_delivered": queued - len(pairs),
                "first_delivery_after_his_up_s": (got[0].acked_at - his_up) if got else None,
                "drain_s": done - his_up,
                "oru_per_s_since_his_up": len(got) / (done - his_up) if got else 0.0,
                "oru_per_s_first_to_last": ((len(got) - 1) / (done - got[0].acked_at)
                                            if len(got) > 1 else 0.0),
                "oru_per_s_by_tenth": spread(deciles), "gateway_cpu_s": cpu,
                "gateway_cpu_ms_per_oru": cpu / len(got) * 1e3 if got else None,
                "his_malformed": his.malformed, "loadavg_before": load0,
                "loadavg_after": procs.loadavg()}
            hours = 150_000 / drained["oru_per_s_first_to_last"] / 3600 if len(got) > 1 else None
            ingest_h = 150_000 / run["results_per_s"] / 3600
            print(f"   HIS up after an outage of {drained['outage_s']:.0f} s: first ORU^R01 "
                  f"{drained['first_delivery_after_his_up_s'] or 0:.1f} s later; "
                  f"{len(got)}/{queued} delivered in {drained['drain_s']:.1f} s "
                  f"({drained['oru_per_s_since_his_up']:.0f} ORU/s since the HIS came up, "
                  f"{drained['oru_per_s_first_to_last']:.0f} first to last; by tenths "
                  f"{min(deciles, default=0):.0f}-{max(deciles, default=0):.0f}); duplicates "
                  f"{drained['duplicate_deliveries']}, not delivered "
                  f"{drained['not_delivered']}; load "
                  f"{load0[0]:.2f}->{drained['loadavg_after'][0]:.2f}", flush=True)
            status = await loop.run_in_executor(None, gw.stop)
            return {"ingest": run, "drain": drained, "exit_status": status,
                    "stored": self.check_stored(gw, queued),
                    "extrapolated_150k": {"ingest_hours": ingest_h, "drain_hours": hours}}
        finally:
            await loop.run_in_executor(None, gw.stop)
            await his.stop()

    @staticmethod
    def _wait_queued(gw: Gateway, want: int, limit: float) -> int:
        """Poll the outbox until ``want`` entries wait for the HIS, or the count stays the
        same for 3 s (the worker queues new releases only between its attempts, and an
        attempt waits for the HIS connection), or ``limit`` s; the count seen last."""
        from lis_gateway.store import outbox
        from lis_gateway.store.engine import make_engine

        engine = make_engine(gw.setup.database_url)
        deadline = time.monotonic() + limit
        pending, since = -1, time.monotonic()
        try:
            while time.monotonic() < deadline and time.monotonic() - since < 3.0:
                with engine.connect() as conn:
                    depth = outbox.depth(conn, "his", datetime.now(UTC))
                if depth.pending + depth.dead != pending:
                    pending, since = depth.pending + depth.dead, time.monotonic()
                if pending >= want:
                    break
                time.sleep(0.25)
        finally:
            engine.dispose()
        return pending

    @staticmethod
    def _deciles(times: Sequence[float]) -> list[float]:
        """Deliveries per second in each tenth of the drain (by count)."""
        if len(times) < 20:
            return []
        step = len(times) // 10
        return [step / (times[k + step - 1] - times[k - 1] or 1e-9)
                for k in range(1, len(times) - step + 1, step)][:10]

    # -- logging and metrics overhead

    def logging(self) -> dict[str, Any]:
        links = 10
        # enough CPU per run that /proc's 10 ms ticks are < 0.5% of it at ~10 ms/message
        per_link = 10 if self.quick else 40
        names = [f"l{i:02d}" for i in range(links)]
        web = '[web]\nlisten = "127.0.0.1:0"'
        prod = self.gateway("log-info", [Analyzer(n) for n in names], extra=web)
        quiet = self.gateway("log-error", [Analyzer(n) for n in names], log_level="error",
                             extra=web)
        gws = {"info": prod, "error": quiet}
        sent = {}
        try:
            for gw in gws.values():
                gw.start()
            runners = {k: Runner(gw.pid) for k, gw in gws.items()}
            for k, gw in gws.items():
                sent[k] = warm_up(runners[k], [gw.ports[n] for n in names], f"W{k}")
            metrics0 = {k: self._scrape(gw) for k, gw in gws.items()}
            runs: dict[str, list[dict[str, Any]]] = {"info": [], "error": []}
            for rep in range(self.reps):
                order = ("info", "error") if rep % 2 == 0 else ("error", "info")
                for k in order:
                    gw = gws[k]
                    log0 = gw.log.stat().st_size
                    lines0 = gw.log.read_bytes().count(b"\n")
                    run = runners[k].run([gw.ports[n] for n in names],
                                         [list(stream(f"L{rep}{k}", i, 20, per_link))
                                          for i in range(links)])
                    run.pop("eot_at")
                    run["log_bytes_per_message"] = (gw.log.stat().st_size - log0) / run["messages"]
                    run["log_lines_per_message"] = (gw.log.read_bytes().count(b"\n")
                                                    - lines0) / run["messages"]
                    sent[k] += run["results"]
                    runs[k].append(run)
                    print(f"   rep {rep + 1} log level {k:5s}: gateway CPU "
                          f"{run['server_cpu_ms_per_message']:.2f} ms/msg, "
                          f"{run['log_lines_per_message']:.1f} log lines "
                          f"({run['log_bytes_per_message']:.0f} bytes) per message; load "
                          f"{run['loadavg_before'][0]:.2f}->{run['loadavg_after'][0]:.2f}",
                          flush=True)
            messages = sum(r["messages"] for r in runs["info"])
            ops = {m: v - metrics0["info"].get(m, 0.0)
                   for m, v in self._scrape(prod).items()}
            stored = {}
            for k, gw in gws.items():
                gw.stop()
                stored[k] = self.check_stored(gw, sent[k])
        finally:
            for gw in gws.values():
                gw.stop()
        cpu = {k: [r["server_cpu_ms_per_message"] for r in v] for k, v in runs.items()}
        # paired by repetition, so drift of the machine hits both alike
        pairs = [(a - b) / a * 100 for a, b in zip(cpu["info"], cpu["error"], strict=True)]
        lines = statistics.median(r["log_lines_per_message"] for r in runs["info"])
        micro = self._micro_costs(lines, ops, messages)
        micro.update(self._gauge_cost(prod, runs["info"]))
        per_msg = statistics.median(cpu["info"])
        micro["logging_share_percent"] = micro["logging_us_per_message"] / 1e3 / per_msg * 100
        micro["metrics_share_percent"] = micro["metrics_us_per_message"] / 1e3 / per_msg * 100
        print(f"   logging on vs off: {statistics.median(pairs):+.1f}% of the gateway's CPU "
              f"(per repetition {', '.join(f'{x:+.1f}' for x in pairs)}); timed in process: "
              f"{lines:.1f} lines x {micro['log_line_us']:.1f} us = "
              f"{micro['logging_share_percent']:.2f}%, metrics "
              f"{micro['metrics_us_per_message']:.1f} us/msg = "
              f"{micro['metrics_share_percent']:.2f}% + the state gauge's query "
              f"{micro['state_gauge_query_ms']:.1f} ms every "
              f"{micro['state_gauge_interval_s']:.0f} s = "
              f"{micro['state_gauge_share_percent']:.2f}%", flush=True)
        return {"links": links, "per_link_messages": per_link,
                "cpu_ms_per_message": {k: spread(v) for k, v in cpu.items()},
                "logging_overhead_percent": spread(pairs), "in_process": micro,
                "metric_updates_in_run": ops, "messages_in_run": messages, "stored": stored,
                "runs": runs}

    @staticmethod
    def _scrape(gw: Gateway) -> dict[str, float]:
        """``/metrics`` of the gateway: counters' totals and histograms' counts, summed
        over their labels (how many updates the run made)."""
        port = web_port(gw)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            match = re.match(r"(lis_gateway_\w+?)(_total|_count)(\{[^}]*\})? (\S+)$", line)
            if match:
                name = match.group(1) + match.group(2)
                out[name] = out.get(name, 0.0) + float(match.group(4))
        return out

    @staticmethod
    def _gauge_cost(gw: Gateway, runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The results-by-state gauge's query (every 30 s), timed on the run's store,
        as a share of the gateway's CPU at the run's message rate."""
        from lis_gateway.state_gauge import INTERVAL
        from lis_gateway.store.engine import make_engine
        from lis_gateway.store.judgements import state_counts

        engine = make_engine(gw.setup.database_url)
        try:
            with engine.connect() as conn:
                query = timing.measure(lambda: state_counts(conn), reps=3, target=0.2)
        finally:
            engine.dispose()
        busy = statistics.median(r["server_cpu_s"] / r["wall_s"] for r in runs)
        return {"state_gauge_query_ms": query["median"] * 1e3,
                "state_gauge_interval_s": INTERVAL,
                "state_gauge_share_percent": query["median"] / INTERVAL / busy * 100}

    def _micro_costs(self, lines: float, ops: dict[str, float], messages: int
                     ) -> dict[str, Any]:
        """One log line (JSON, INFO, to a file, the gateway's processors) and one update
        of each metric the run made, timed in this process."""
        import structlog

        from lis_gateway import logconfig, metrics

        # stderr to a file is line-buffered (Python >= 3.9): one write per line, as here
        sink = (self.work / "micro.log").open("w", buffering=1)
        try:
            logconfig.configure(json=True, level="info", stream=sink)
            log = structlog.get_logger("lis_gateway.ingest").bind(analyzer="l00")
            line = timing.measure(lambda: log.info(
                "message-stored", message_id=123456, length=2216, results=20,
                new_results=20, linked_results=0), reps=5, target=0.2)
            logconfig.configure(json=True, level="error", stream=sink)
            log_off = structlog.get_logger("lis_gateway.ingest").bind(analyzer="l00")
            off = timing.measure(lambda: log_off.info("message-stored", message_id=1),
                                 reps=5, target=0.2)
        finally:
            logconfig.configure(json=False, stream=io.StringIO())
            sink.close()
        counter = timing.measure(lambda: metrics.FRAMES.labels("l00", "accepted").inc(),
                                 reps=5, target=0.2)
        histogram = timing.measure(lambda: metrics.COMMIT_ACK.labels("l00").observe(0.01),
                                   reps=5, target=0.2)
        updates = {m: v / messages for m, v in ops.items() if v}
        per_update = {m: (histogram if m.endswith("_count") else counter)["median"]
                      for m in updates}
        return {"log_line_us": line["median"] * 1e6, "log_line_off_us": off["median"] * 1e6,
                "log_lines_per_message": lines,
                "logging_us_per_message": lines * (line["median"] - off["median"]) * 1e6,
                "counter_inc_us": counter["median"] * 1e6,
                "histogram_observe_us": histogram["median"] * 1e6,
                "metric_updates_per_message": updates,
                "metrics_us_per_message": sum(updates[m] * per_update[m] * 1e6
                                              for m in updates)}

    # -- 256 active links

    def links_256(self) -> dict[str, Any]:
        links = 256
        results = self.args.links_results
        names = [f"k{i:03d}" for i in range(links)]
        reps = []
        for rep in range(self.reps):
            gw = self.gateway(f"links-{rep}", [Analyzer(n) for n in names], check=rep == 0)
            try:
                gw.start()
                time.sleep(1.0)
                base = procs.rss_bytes(gw.pid)
                runner = Runner(gw.pid)
                # 256 messages queue for the one database thread: the last final frames may
                # wait longer than E1381's 15 s sender timer; counted, not a failure here
                with patient_senders() as timer, RssSampler(gw.pid) as rss:
                    run = runner.run([gw.ports[n] for n in names],
                                     [list(stream(f"K{rep}", i, results, 1))
                                      for i in range(links)])
                run.pop("eot_at")
                run["finals_over_sender_timer"] = over(runner.last_stats, "finals", timer)
                peak = max(rss.peak, 0)
                hwm = procs.peak_rss_bytes(gw.pid)
                gw.stop()
                counts = self.check_stored(gw, run["results"])
            finally:
                gw.stop()
            rec = {**run, "startup_s": gw.startup_seconds, "rss_base_mib": base / MIB,
                   "rss_peak_sampled_mib": peak / MIB, "rss_hwm_mib": hwm / MIB,
                   "per_active_link_kib": (hwm - base) / links / 1024, "stored": counts}
            reps.append(rec)
            print(f"   rep {rep + 1}: start {gw.startup_seconds:.2f} s; RSS {base / MIB:.1f} MiB"
                  f" -> peak {hwm / MIB:.1f} MiB with {links} links sending "
                  f"({rec['per_active_link_kib']:.1f} KiB each); frame ACK p50 "
                  f"{run['frame_ack']['p50_ms']:.2f} ms p99 {run['frame_ack']['p99_ms']:.1f} ms "
                  f"max {run['frame_ack']['max_ms']:.0f} ms; final frame p99 "
                  f"{run['final_frame_ack']['p99_ms']:.0f} ms max "
                  f"{run['final_frame_ack']['max_ms']:.0f} ms "
                  f"({run['finals_over_sender_timer']} over 15 s); load "
                  f"{run['loadavg_before'][0]:.2f}->{run['loadavg_after'][0]:.2f}", flush=True)
        return {"links": links, "results_per_message": results, "runs": reps,
                "startup_s": spread([r["startup_s"] for r in reps]),
                "rss_base_mib": spread([r["rss_base_mib"] for r in reps]),
                "rss_peak_mib": spread([r["rss_hwm_mib"] for r in reps]),
                "per_active_link_kib": spread([r["per_active_link_kib"] for r in reps]),
                "finals_over_sender_timer": sum(r["finals_over_sender_timer"] for r in reps),
                **{k: v for k, v in system.summarize_runs(reps).items()
                   if "ack" in k or k in ("naks", "busy", "messages_per_s")}}

    # -- soak: RSS over a long stream of messages

    def soak(self) -> dict[str, Any]:
        return asyncio.run(self._soak())

    async def _soak(self) -> dict[str, Any]:
        total = self.args.soak_messages or (600 if self.quick else 30_000)
        results = self.args.soak_results
        links = 10
        every = self.args.soak_every or max(1, total // 20)
        names = [f"q{i:02d}" for i in range(links)]
        gw = self.gateway("soak", [Analyzer(n) for n in names])
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, gw.start)
            runner = Runner(gw.pid)
            stats = [analyzers.LinkStats(keep=False) for _ in names]
            plan = [stream("Q", i, results, total // links + (i < total % links))
                    for i in range(links)]
            trace: list[dict[str, Any]] = []
            rss0 = procs.rss_bytes(gw.pid)
            sampler = asyncio.ensure_future(self._trace(gw.pid, stats, every, trace))
            try:
                run = await runner.arun([gw.ports[n] for n in names], plan, stats=stats)
            finally:
                sampler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampler
            run.pop("eot_at")
            closed = procs.rss_bytes(gw.pid)  # the links have disconnected
            peak = procs.peak_rss_bytes(gw.pid)
            status = await loop.run_in_executor(None, gw.stop)
            counts = self.check_stored(gw, run["results"])
        finally:
            await loop.run_in_executor(None, gw.stop)
        out = {"messages": run["messages"], "results_per_message": results, "links": links,
               "sample_every": every, "rss_start_mib": rss0 / MIB,
               **soak_growth(trace, rss0 / MIB),
               "rss_after_links_closed_mib": closed / MIB, "peak_rss_mib": peak / MIB,
               "messages_per_s": run["messages_per_s"], "wall_s": run["wall_s"],
               "hours_for_1m": 1e6 / run["messages_per_s"] / 3600,
               "exit_status": status, "stored": counts, "trace": trace,
               "max_ms": run["max_ms"], "naks": run["naks"], "busy": run["busy"],
               "loadavg_before": run["loadavg_before"], "loadavg_after": run["loadavg_after"]}
        print(f"   {run['messages']} messages ({results} result each) at "
              f"{run['messages_per_s']:.0f}/s: RSS {rss0 / MIB:.1f} MiB at the start, "
              f"{out['rss_first_sample_mib']:.1f} at the first sample, "
              f"{out['rss_last_sample_mib']:.1f} at the last, {closed / MIB:.1f} after the "
              f"links closed; slope {out['slope_bytes_per_message_second_half']:.1f} "
              f"bytes/message over the second half -> "
              f"{out['extrapolated_1m_mib_second_half_slope']:.1f} MiB per million "
              f"(after the first sample: {out['slope_bytes_per_message_after_first']:.1f} "
              f"bytes/message -> {out['extrapolated_1m_mib_after_first_slope']:.1f} MiB); "
              f"floor {out['rss_floor_first_third_mib']:.1f} -> "
              f"{out['rss_floor_last_third_mib']:.1f} MiB (first to last third) -> "
              f"{out['extrapolated_1m_mib_floor']:.1f} MiB per million; load "
              f"{run['loadavg_before'][0]:.2f}->{run['loadavg_after'][0]:.2f}", flush=True)
        return out

    @staticmethod
    async def _trace(pid: int, stats: Sequence[analyzers.LinkStats], every: int,
                     trace: list[dict[str, Any]]) -> None:
        """RSS each time another ``every`` messages were acknowledged."""
        t0 = time.perf_counter()
        due = every
        while True:
            done = sum(s.messages for s in stats)
            if done >= due:
                trace.append({"messages": done, "s": time.perf_counter() - t0,
                              "rss_mib": procs.rss_bytes(pid) / MIB})
                due = (done // every + 1) * every
            await asyncio.sleep(0.1)


def web_port(gw: Gateway) -> int:
    """The ``[web] listen`` port the gateway printed (it starts after the analyzers)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        match = re.search(r"lis-gateway: web listening on 127\.0\.0\.1:(\d+)",
                          gw.log.read_text("utf-8", "replace"))
        if match:
            return int(match.group(1))
        time.sleep(0.05)
    raise BenchError("the gateway's web side did not say where it listens")


def targets_plan(bench: Targets) -> system.Plan:
    return [
        ("paced", bench.paced),
        ("stall", bench.stall),
        ("outage-drain", bench.outage_drain),
        ("logging", bench.logging),
        ("links-256", bench.links_256),
        ("soak", bench.soak),
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stall-links", type=int, default=0,
                        help="analyzers sending during the stalls (default 100; --quick 50)")
    parser.add_argument("--lock-seconds", type=float, default=0.0,
                        help="how long the database stays locked (default 3; --quick 1.5)")
    parser.add_argument("--long-lock-seconds", type=float, default=12.0,
                        help="one more lock, longer than the gateway's 10 s busy_timeout "
                             "(default 12; 0: none; not in --quick)")
    parser.add_argument("--drain-results", type=int, default=0,
                        help="results (one ORU^R01 each) queued during the HIS outage "
                             "(default 150,000, a day at peak; --quick 600)")
    parser.add_argument("--links-results", type=int, default=10,
                        help="results per message in links-256 (default 10)")
    parser.add_argument("--soak-messages", type=int, default=0,
                        help="messages of the soak (default 30,000; --quick 600)")
    parser.add_argument("--soak-results", type=int, default=1,
                        help="results per soak message (default 1)")
    parser.add_argument("--soak-every", type=int, default=0,
                        help="sample RSS every this many messages (default: 20 samples)")


def main(argv: list[str] | None = None) -> int:
    return system.run_suite(argv, description=__doc__.split("\n\n")[0], default_out=RESULTS,
                            script="targets.py", make_bench=Targets, make_plan=targets_plan,
                            add_arguments=add_arguments)


if __name__ == "__main__":
    sys.exit(main())
