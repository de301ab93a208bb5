"""System benchmarks: the real ``lis-gateway run`` process over loopback TCP and a pty.

Run from the repository root with the project's interpreter::

    .venv/bin/python bench/system.py            # about 4 minutes
    .venv/bin/python bench/system.py --quick    # about 1.5 minutes, fewer messages and repetitions

Scenarios (each repeated, every sample written to ``bench/results/system.json``):

* ``ingest``: analyzer bytes -> committed, mapped, rule-evaluated results, with
  1, 10 and 100 analyzers sending at once, on SQLite (WAL, synchronous=FULL) and
  on a throwaway PostgreSQL cluster (fsync on); frame ACK latency (intermediate
  frames, the final frame that waits for the commit, the next ENQ); gateway CPU
  per message; the same clients against python-astm's server and
  labmcp-astm-lis's receiver (``bench/peer_servers.py``, in ``bench/.venv-peers``).
* ``delivery``: EOT -> HIS ACK for autoverified results released by the gateway
  (an MLLP HIS in this process, ``bench/his.py``), and how fast a burst drains.
* ``serial``: one analyzer on a pseudo-terminal paced at 960 bytes/s (9600 baud).
* ``memory``: RSS with 200 analyzers configured, one idle connection each, and
  2,000 more idle connections; start-up time until every port listens.

The machine is shared: the load average before and after each run is kept
with its samples. A scenario that cannot run here (no PostgreSQL, no network
for the peer venv) is reported with the reason, never silently left out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import analyzers  # noqa: E402
import peers  # noqa: E402
import procs  # noqa: E402
import workload  # noqa: E402
from his import His  # noqa: E402
from procs import Analyzer, BenchError, Gateway, GatewaySetup, PgCluster  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from lis_gateway.store import schema  # noqa: E402
from lis_gateway.store.engine import make_engine  # noqa: E402

ROOT = BENCH.parent
RESULTS = BENCH / "results" / "system.json"
LINE_RATE = 960.0  # bytes/s: 9600 baud, 8N1


# ------------------------------------------------------------------ statistics

def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile (nearest rank, no interpolation); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def latency(values: Sequence[float]) -> dict[str, Any]:
    """p50, p99, max and count of latencies, in milliseconds."""
    return {"n": len(values), "p50_ms": quantile(values, 0.5) * 1e3,
            "p99_ms": quantile(values, 0.99) * 1e3,
            "max_ms": (max(values) * 1e3) if values else float("nan")}


def spread(samples: Sequence[float]) -> dict[str, Any]:
    """Median, min, max and (max-min)/median of repeated measurements."""
    if not samples:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"),
                "spread": float("nan"), "samples": []}
    med = statistics.median(samples)
    return {"median": med, "min": min(samples), "max": max(samples),
            "spread": (max(samples) - min(samples)) / med if med else float("nan"),
            "samples": list(samples)}


# ------------------------------------------------------------------ helpers

def client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def plan_messages(run: str, links: int, per_link: int, results: int = 20
                  ) -> list[list[workload.Message]]:
    patient = 0
    plan = []
    for link in range(links):
        msgs = []
        for seq in range(per_link):
            patient += 1
            msgs.append(workload.message(workload.sample_id(run, link, seq), patient, results))
        plan.append(msgs)
    return plan


def stored_counts(url: str) -> dict[str, int]:
    """Results, messages and lifecycle decisions in the store (read after the runs)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            out = {"results": conn.execute(select(func.count()).select_from(
                       schema.results)).scalar_one(),
                   "messages": conn.execute(select(func.count()).select_from(
                       schema.messages)).scalar_one()}
            ev = schema.validation_events
            for state, count in conn.execute(select(ev.c.to_state, func.count())
                                             .group_by(ev.c.to_state)).all():
                out[f"to_{state or 'none'}"] = count
            return out
    finally:
        engine.dispose()


class Runner:
    """Runs client plans against a server process and measures one run."""

    def __init__(self, server_pid: int, extra_pids: Callable[[], float] | None = None) -> None:
        self.server_pid = server_pid
        self.extra_cpu = extra_pids
        self.last_stats: list[analyzers.LinkStats] = []  # the links of the last run

    def run(self, ports: Sequence[int], plan: Sequence[Iterable[workload.Message]], *,
            gap: float = 0.0) -> dict[str, Any]:
        """Run ``plan`` (one message iterable per port) in a new event loop."""
        return asyncio.run(self.arun(ports, plan, gap=gap))

    async def arun(self, ports: Sequence[int], plan: Sequence[Iterable[workload.Message]], *,
                   gap: float = 0.0, duration: float | None = None,
                   stats: Sequence[analyzers.LinkStats] | None = None,
                   period: float = 0.0) -> dict[str, Any]:
        """:meth:`run` in the running loop; ``duration``, ``stats``, ``period`` as in analyzers."""
        load_before = procs.loadavg()
        cpu0, client0 = procs.cpu_seconds(self.server_pid), client_cpu()
        extra0 = self.extra_cpu() if self.extra_cpu else 0.0
        stats = await analyzers.run_links(ports, plan, gap=gap, duration=duration, stats=stats,
                                          period=period)
        self.last_stats = stats
        cpu1, client1 = procs.cpu_seconds(self.server_pid), client_cpu()
        extra1 = self.extra_cpu() if self.extra_cpu else 0.0
        started = min(s.started for s in stats)
        ended = max(s.ended for s in stats)
        wall = ended - started
        messages = sum(s.messages for s in stats)
        results = sum(s.results for s in stats)
        frames = [x for s in stats for x in s.frames]
        finals = [x for s in stats for x in s.finals]
        enq = [x for s in stats for x in s.enq]
        return {
            "links": len(ports), "messages": messages, "results": results,
            "wall_s": wall, "messages_per_s": messages / wall, "results_per_s": results / wall,
            "server_cpu_s": cpu1 - cpu0, "server_cpu_ms_per_message": (cpu1 - cpu0)
            / messages * 1e3, "db_server_cpu_s": extra1 - extra0 if self.extra_cpu else None,
            "client_cpu_s": client1 - client0,
            "frame_ack": latency(frames), "final_frame_ack": latency(finals),
            "enq_ack": latency(enq), "naks": sum(s.naks for s in stats),
            "busy": sum(s.busy for s in stats),
            "max_ms": {"frame": max(s.max_frame for s in stats) * 1e3,
                       "final_frame": max(s.max_final for s in stats) * 1e3,
                       "enq": max(s.max_enq for s in stats) * 1e3},
            "loadavg_before": load_before, "loadavg_after": procs.loadavg(),
            "eot_at": {k: v for s in stats for k, v in s.eot_at.items()},
        }


def summarize_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and spread over repetitions, latencies pooled over every repetition."""
    return {
        "reps": len(runs),
        "results_per_s": spread([r["results_per_s"] for r in runs]),
        "messages_per_s": spread([r["messages_per_s"] for r in runs]),
        "server_cpu_ms_per_message": spread([r["server_cpu_ms_per_message"] for r in runs]),
        "frame_ack_p50_ms": spread([r["frame_ack"]["p50_ms"] for r in runs]),
        "frame_ack_p99_ms": spread([r["frame_ack"]["p99_ms"] for r in runs]),
        "final_frame_ack_p50_ms": spread([r["final_frame_ack"]["p50_ms"] for r in runs]),
        "final_frame_ack_p99_ms": spread([r["final_frame_ack"]["p99_ms"] for r in runs]),
        "enq_ack_p99_ms": spread([r["enq_ack"]["p99_ms"] for r in runs]),
        "frame_ack_max_ms": max(r["frame_ack"]["max_ms"] for r in runs),
        "final_frame_ack_max_ms": max(r["final_frame_ack"]["max_ms"] for r in runs),
        "client_cpu_share": spread([r["client_cpu_s"] / r["wall_s"] for r in runs]),
        "naks": sum(r["naks"] for r in runs), "busy": sum(r["busy"] for r in runs),
    }


# ------------------------------------------------------------------ scenarios

class Bench:
    def __init__(self, quick: bool, work: Path, profile: bool) -> None:
        self.quick = quick
        self.work = work
        self.profile = profile
        self.reps = 3
        self.out: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self.seconds: dict[str, float] = {}  # wall time of each scenario
        # messages per link for 1, 10 and 100 analyzers sending at once (sized for the
        # ~20 messages/s the store takes today, so that the whole run stays short)
        self.per_link = {1: 20, 10: 4, 100: 1} if quick else {1: 40, 10: 8, 100: 2}

    def scenario(self, name: str, fn: Callable[[], dict[str, Any]]) -> None:
        print(f"\n== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            self.out[name] = fn()
        except (BenchError, analyzers.LinkFailed, OSError) as exc:
            self.errors[name] = str(exc) or type(exc).__name__
            print(f"   NOT MEASURED: {exc}", flush=True)
        except Exception as exc:  # a defect in the bench or the gateway: keep the trace
            self.errors[name] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
            print(f"   FAILED: {self.errors[name]}", flush=True)
        self.seconds[name] = round(time.perf_counter() - t0, 1)
        print(f"   ({self.seconds[name]:.0f} s)", flush=True)

    def directory(self, name: str) -> Path:
        path = self.work / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- ingest on the gateway

    def ingest(self, backend: str) -> dict[str, Any]:
        cluster: PgCluster | None = None
        directory = self.directory(f"ingest-{backend}")
        if backend == "sqlite":
            url = f"sqlite:///{directory / 'lis.db'}"
        else:
            cluster = PgCluster()
            cluster.start()
            url = cluster.create_database("lis_bench")
        gateway = Gateway(GatewaySetup(url, [Analyzer(f"a{i:03d}") for i in range(100)]),
                          directory, workload.mapping_csv(), workload.RULES_TOML)
        profiler = None
        try:
            gateway.start()
            print(f"   gateway up in {gateway.startup_seconds:.2f} s (100 analyzers listening)",
                  flush=True)
            ports = [gateway.ports[f"a{i:03d}"] for i in range(100)]
            extra = (lambda: procs.tree_cpu_seconds(cluster.pid)) if cluster else None
            runner = Runner(gateway.pid, extra)
            # warm-up: imports, first statements, the table caches (not recorded)
            runner.run(ports[:10], plan_messages("W", 10, 2))
            runs: dict[int, list[dict[str, Any]]] = {1: [], 10: [], 100: []}
            for rep in range(self.reps):
                for links in (1, 10, 100):
                    if self.profile and backend == "sqlite" and links == 10 and rep == 0:
                        profiler = peers.start_profile(gateway.pid, BENCH / "results"
                                                       / "profile-ingest-sqlite-10.txt")
                    run = runner.run(ports[:links], plan_messages(
                        f"R{rep}N{links}", links, self.per_link[links]))
                    if profiler is not None:
                        peers.stop_profile(profiler)
                        profiler = None
                    run.pop("eot_at")
                    runs[links].append(run)
                    print(f"   rep {rep + 1} {links:3d} links: {run['results_per_s']:8.0f} "
                          f"results/s, frame ACK p50 {run['frame_ack']['p50_ms']:.3f} ms "
                          f"p99 {run['frame_ack']['p99_ms']:.2f} ms, final p50 "
                          f"{run['final_frame_ack']['p50_ms']:.2f} ms p99 "
                          f"{run['final_frame_ack']['p99_ms']:.2f} ms, gateway CPU "
                          f"{run['server_cpu_ms_per_message']:.2f} ms/msg, load "
                          f"{run['loadavg_before'][0]:.2f}->{run['loadavg_after'][0]:.2f}",
                          flush=True)
            rss_peak = procs.peak_rss_bytes(gateway.pid)
            status = gateway.stop()
            counts = stored_counts(url)
            sent = sum(r["results"] for rs in runs.values() for r in rs) + 10 * 2 * 20
            if counts["results"] != sent:
                raise BenchError(f"{sent} results acknowledged, {counts['results']} stored")
            return {"database": url.split(":", 1)[0],
                    "postgresql": cluster.version() if cluster else None,
                    "startup_s_100_analyzers": gateway.startup_seconds,
                    "exit_status": status, "peak_rss_mib": rss_peak / 2**20,
                    "stored": counts, "acknowledged_results": sent,
                    "per_link_messages": self.per_link,
                    "summary": {str(k): summarize_runs(v) for k, v in runs.items()},
                    "runs": {str(k): v for k, v in runs.items()}}
        finally:
            if profiler is not None:
                peers.stop_profile(profiler)
            gateway.stop()
            if cluster is not None:
                cluster.stop()

    # -- ingest on the peers

    def peer_ingest(self, kind: str) -> dict[str, Any]:
        python = peers.ensure_ingest_peers()
        directory = self.directory(f"peer-{kind}")
        link_counts = (1, 10, 100) if kind == "pyastm" else (1,)
        runs: dict[int, list[dict[str, Any]]] = {n: [] for n in link_counts}
        reports = []
        for rep in range(self.reps):
            for links in link_counts:
                port = procs.free_port()
                args = [str(python), str(BENCH / "peer_servers.py"), kind, str(port)]
                if kind == "labmcp":
                    store = directory / f"results-{rep}.jsonl"
                    store.unlink(missing_ok=True)
                    args.append(str(store))
                server = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True, env=peers.peer_env(), cwd=BENCH)
                try:
                    assert server.stdout is not None
                    line = server.stdout.readline()
                    if not line.startswith("listening"):
                        raise BenchError(f"{kind} did not start: {line}{server.stderr.read()}")
                    time.sleep(0.2)
                    run = Runner(server.pid).run([port] * links, plan_messages(
                        f"P{rep}N{links}", links, self.per_link[links]))
                finally:
                    server.terminate()
                    out, err = server.communicate(timeout=30)
                report = json.loads(out.strip().splitlines()[-1]) if out.strip() else {
                    "error": err[-2000:]}
                report["sent_messages"], report["sent_results"] = run["messages"], run["results"]
                reports.append(report)
                run.pop("eot_at")
                run["peer_report"] = report
                runs[links].append(run)
                print(f"   rep {rep + 1} {links:3d} links: {run['results_per_s']:8.0f} "
                      f"results/s, frame ACK p50 {run['frame_ack']['p50_ms']:.3f} ms p99 "
                      f"{run['frame_ack']['p99_ms']:.2f} ms; peer counted "
                      f"{report.get('results')} results of {run['results']}", flush=True)
        return {"peer": reports[0].get("peer"), "per_link_messages": self.per_link,
                "summary": {str(k): summarize_runs(v) for k, v in runs.items()},
                "runs": {str(k): v for k, v in runs.items()}}

    # -- delivery to the HIS

    def delivery(self) -> dict[str, Any]:
        return asyncio.run(self._delivery())

    async def _delivery(self) -> dict[str, Any]:
        directory = self.directory("delivery")
        url = f"sqlite:///{directory / 'lis.db'}"
        his = His()
        his_port = await his.start()
        names = [f"d{i:02d}" for i in range(10)]
        gateway = Gateway(GatewaySetup(url, [Analyzer(n, unsolicited=True) for n in names],
                                       his_port=his_port, release_autoverified=True),
                          directory, workload.mapping_csv(), workload.RULES_TOML)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, gateway.start)
            ports = [gateway.ports[n] for n in names]
            # 1) latency: one analyzer, a one-result message every 0.25 s
            count = 12 if self.quick else 40
            plan = [[workload.message(workload.sample_id("E", 0, i), 9_000 + i, 1)
                     for i in range(count)]]
            start = asyncio.Event()
            task = asyncio.ensure_future(analyzers.send_messages(ports[0], plan[0], start,
                                                                 gap=0.25))
            await asyncio.sleep(0.3)
            load0 = procs.loadavg()
            start.set()
            stats = await task
            delivered = await his.wait_for(count, 30)
            by_sample = {d.sample: d.acked_at for d in his.deliveries}
            lat = [by_sample[s] - t for s, t in stats.eot_at.items() if s in by_sample]
            single = {"messages": count, "delivered": len(lat), "all_delivered": delivered,
                      "eot_to_his_ack": latency(lat), "samples_s": lat,
                      "loadavg_before": load0, "loadavg_after": procs.loadavg()}
            print(f"   EOT -> HIS ACK (1 result, one every 0.25 s): p50 "
                  f"{single['eot_to_his_ack']['p50_ms']:.0f} ms p99 "
                  f"{single['eot_to_his_ack']['p99_ms']:.0f} ms "
                  f"({len(lat)}/{count} delivered)", flush=True)
            # 2) a burst: 10 analyzers at once, 20 results each message; how fast it drains
            per_link = 3 if self.quick else 10
            burst = plan_messages("B", 10, per_link)
            total = sum(m.results for msgs in burst for m in msgs)
            before = len(his.deliveries)
            load0 = procs.loadavg()
            cpu0 = procs.cpu_seconds(gateway.pid)
            start = asyncio.Event()
            tasks = [asyncio.ensure_future(analyzers.send_messages(p, m, start))
                     for p, m in zip(ports, burst, strict=True)]
            await asyncio.sleep(0.3)
            t0 = time.perf_counter()
            start.set()
            link_stats = await asyncio.gather(*tasks)
            ingested = time.perf_counter() - t0
            complete = await his.wait_for(before + total, 120 if not self.quick else 60)
            drained = time.perf_counter() - t0
            got = len(his.deliveries) - before
            cpu = procs.cpu_seconds(gateway.pid) - cpu0
            first_eot = {s: t for ls in link_stats for s, t in ls.eot_at.items()}
            burst_lat = [d.acked_at - first_eot[d.sample] for d in his.deliveries[before:]
                         if d.sample in first_eot]
            result = {"messages": sum(len(m) for m in burst), "results": total,
                      "ingest_s": ingested, "ingest_results_per_s": total / ingested,
                      "delivered": got, "all_delivered": complete, "drain_s": drained,
                      "delivered_results_per_s": got / drained, "gateway_cpu_s": cpu,
                      "eot_to_his_ack": latency(burst_lat),
                      "loadavg_before": load0, "loadavg_after": procs.loadavg()}
            print(f"   burst of {total} results from 10 analyzers: ingested in {ingested:.1f} s "
                  f"({total / ingested:.0f} results/s), {got} delivered in {drained:.1f} s "
                  f"({got / drained:.0f} results/s)", flush=True)
            status = await loop.run_in_executor(None, gateway.stop)
            counts = stored_counts(url)
            return {"single": single, "burst": result, "stored": counts,
                    "his_malformed": his.malformed, "exit_status": status}
        finally:
            await loop.run_in_executor(None, gateway.stop)
            await his.stop()

    # -- serial

    def serial(self) -> dict[str, Any]:
        directory = self.directory("serial")
        master, slave = os.openpty()
        import tty
        tty.setraw(slave)
        gateway = Gateway(GatewaySetup(f"sqlite:///{directory / 'lis.db'}",
                                       [Analyzer("serial1", "serial", os.ttyname(slave))]),
                          directory, workload.mapping_csv(), workload.RULES_TOML)
        try:
            gateway.start()
            count = 1 if self.quick else 3
            runs = []
            for rep in range(2 if self.quick else 3):
                msgs = [workload.message(workload.sample_id(f"S{rep}", 0, i), 500 + i)
                        for i in range(count)]
                load0 = procs.loadavg()
                stats = analyzers.send_serial(master, msgs, LINE_RATE)
                line_out = stats.bytes_out / LINE_RATE
                line_in = stats.bytes_in / LINE_RATE
                # on a real line each ACK also takes 1/960 s to arrive; the pty delivers it
                # at once, so it is added to the measured time
                real = stats.elapsed + line_in
                turn = sum(stats.turnaround) + sum(stats.final_turnaround)
                run = {"messages": count, "frames": stats.frames, "bytes_out": stats.bytes_out,
                       "bytes_in": stats.bytes_in, "elapsed_s": stats.elapsed,
                       "line_time_s": line_out + line_in, "projected_real_s": real,
                       "line_rate_share": (line_out + line_in) / real,
                       "gateway_share": turn / real,
                       "turnaround": latency(stats.turnaround),
                       "final_turnaround": latency(stats.final_turnaround),
                       "naks": stats.naks, "loadavg_before": load0,
                       "loadavg_after": procs.loadavg()}
                runs.append(run)
                print(f"   rep {rep + 1}: {stats.frames} frames, {stats.bytes_out} bytes in "
                      f"{stats.elapsed:.2f} s; line {run['line_rate_share'] * 100:.2f}% of the "
                      f"time, gateway {run['gateway_share'] * 100:.2f}%; turnaround p50 "
                      f"{run['turnaround']['p50_ms']:.2f} ms p99 "
                      f"{run['turnaround']['p99_ms']:.2f} ms, final frame p50 "
                      f"{run['final_turnaround']['p50_ms']:.2f} ms", flush=True)
            return {"runs": runs,
                    "line_rate_share": spread([r["line_rate_share"] for r in runs]),
                    "gateway_share": spread([r["gateway_share"] for r in runs]),
                    "turnaround_p50_ms": spread([r["turnaround"]["p50_ms"] for r in runs]),
                    "turnaround_p99_ms": spread([r["turnaround"]["p99_ms"] for r in runs]),
                    "final_turnaround_p50_ms": spread([r["final_turnaround"]["p50_ms"]
                                                       for r in runs])}
        finally:
            gateway.stop()
            os.close(master)
            os.close(slave)

    # -- memory

    def memory(self) -> dict[str, Any]:
        return asyncio.run(self._memory())

    async def _memory(self) -> dict[str, Any]:
        directory = self.directory("memory")
        names = [f"m{i:03d}" for i in range(200)]
        # a listening link takes at most 16 connections at once (adapters/tcp.py
        # MAX_CONNECTIONS): the idle connections are spread over the 200 analyzers
        per_analyzer = 3 if self.quick else 10
        idle = per_analyzer * len(names)
        loop = asyncio.get_running_loop()
        reps = []
        for rep in range(3):
            db = directory / f"lis-{rep}.db"
            gateway = Gateway(GatewaySetup(f"sqlite:///{db}", [Analyzer(n) for n in names]),
                              directory, workload.mapping_csv(), workload.RULES_TOML,
                              check=rep == 0)
            first: list[Any] = []
            more: list[Any] = []
            try:
                await loop.run_in_executor(None, gateway.start)
                await asyncio.sleep(1.0)
                base = procs.rss_bytes(gateway.pid)
                for name in names:
                    first += await analyzers.hold_idle(gateway.ports[name], 1)
                await asyncio.sleep(1.0)
                with_200 = procs.rss_bytes(gateway.pid)
                for name in names:
                    more += await analyzers.hold_idle(gateway.ports[name], per_analyzer)
                await asyncio.sleep(1.5)
                with_more = procs.rss_bytes(gateway.pid)
                refused = analyzers.closed_by_peer(first + more)
                run = {"startup_s_200_analyzers": gateway.startup_seconds,
                       "rss_base_mib": base / 2**20, "rss_200_links_mib": with_200 / 2**20,
                       "rss_with_idle_mib": with_more / 2**20,
                       "per_link_kib_200": (with_200 - base) / 200 / 1024,
                       "per_link_kib_idle": (with_more - with_200) / idle / 1024,
                       "idle_connections": idle, "closed_by_gateway": refused,
                       "peak_rss_mib": procs.peak_rss_bytes(gateway.pid) / 2**20}
                reps.append(run)
                print(f"   rep {rep + 1}: start {gateway.startup_seconds:.2f} s; RSS "
                      f"{base / 2**20:.1f} MiB -> {with_200 / 2**20:.1f} MiB with 200 links "
                      f"({run['per_link_kib_200']:.1f} KiB each) -> "
                      f"{with_more / 2**20:.1f} MiB with {idle} more "
                      f"({run['per_link_kib_idle']:.1f} KiB each); {refused} closed by the "
                      "gateway", flush=True)
            finally:
                for sock in first + more:
                    sock.close()
                await loop.run_in_executor(None, gateway.stop)
        return {"runs": reps,
                "startup_s": spread([r["startup_s_200_analyzers"] for r in reps]),
                "rss_base_mib": spread([r["rss_base_mib"] for r in reps]),
                "rss_200_links_mib": spread([r["rss_200_links_mib"] for r in reps]),
                "rss_with_idle_mib": spread([r["rss_with_idle_mib"] for r in reps]),
                "per_link_kib_200": spread([r["per_link_kib_200"] for r in reps]),
                "per_link_kib_idle": spread([r["per_link_kib_idle"] for r in reps])}


Plan = list[tuple[str, Callable[[], dict[str, Any]]]]


def run_suite(argv: list[str] | None, *, description: str, default_out: Path, script: str,
              make_bench: Callable[[argparse.Namespace, Path], Bench],
              make_plan: Callable[[Any], Plan],
              add_arguments: Callable[[argparse.ArgumentParser], object] | None = None) -> int:
    """Parse the common options, run the scenarios of ``make_plan(bench)``, write the JSON.

    Used by this file and by ``bench/targets.py`` (issue 9's stall, outage, logging,
    256-link and soak cases), so both write the same record around their scenarios.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="fewer messages and repetitions")
    parser.add_argument("--only", default="", help="comma-separated scenarios to run")
    parser.add_argument("--no-peers", action="store_true", help="skip the peer receivers")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--out", type=Path, default=default_out, help="JSON results file")
    parser.add_argument("--source", type=Path, default=None,
                        help="run the gateway from this tree (e.g. `git worktree add` or "
                             "`git archive` of a commit) instead of this checkout")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    if args.source is not None:
        procs.SOURCE = args.source.resolve()
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="lis-bench-"))
    bench = make_bench(args, work)
    only = set(filter(None, args.only.split(",")))
    plan = make_plan(bench)
    unknown = only - {name for name, _fn in plan}
    if unknown:
        parser.error(f"no such scenario: {', '.join(sorted(unknown))} "
                     f"(there are: {', '.join(name for name, _fn in plan)})")
    load_before = procs.loadavg()
    for name, fn in plan:
        if only and name not in only:
            continue
        if args.no_peers and name.startswith("peer-"):
            bench.errors[name] = "not run (--no-peers)"
            continue
        bench.scenario(name, fn)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    wall = time.perf_counter() - started
    sys.path.insert(0, str(BENCH))
    from run import cpu_scale_ms, git_state, machine_info
    result = {
        "schema": 1,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([f".venv/bin/python bench/{script}", *(argv or sys.argv[1:])]),
        "git": git_state(),
        "gateway_source": str(procs.SOURCE) if procs.SOURCE else "this checkout",
        "machine": {**machine_info(), "cpu_scale_sum_range_1e6_ms": round(cpu_scale_ms(), 2),
                    "loadavg_before": load_before, "loadavg_after": procs.loadavg()},
        "quick": args.quick, "reps": bench.reps,
        "scenarios": bench.out, "not_measured": bench.errors,
        "seconds": bench.seconds, "wall_seconds": round(wall, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"\nwall time {wall:.0f} s; written {args.out}")
    for name, why in bench.errors.items():
        print(f"not measured: {name}: {(why.splitlines() or [''])[0]}")
    return 0


def system_plan(bench: Bench) -> Plan:
    return [
        ("ingest-sqlite", lambda: bench.ingest("sqlite")),
        ("ingest-postgresql", lambda: bench.ingest("postgresql")),
        ("peer-pyastm", lambda: bench.peer_ingest("pyastm")),
        ("peer-labmcp", lambda: bench.peer_ingest("labmcp")),
        ("delivery", bench.delivery),
        ("serial", bench.serial),
        ("memory", bench.memory),
    ]


def main(argv: list[str] | None = None) -> int:
    return run_suite(
        argv, description=__doc__.split("\n\n")[0], default_out=RESULTS, script="system.py",
        make_bench=lambda args, work: Bench(args.quick, work, args.profile),
        make_plan=system_plan,
        add_arguments=lambda parser: parser.add_argument(
            "--profile", action="store_true",
            help="py-spy record the gateway during one 10-link SQLite run"))


if __name__ == "__main__":
    sys.exit(main())
