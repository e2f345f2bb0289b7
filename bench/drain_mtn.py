"""Benchmark of the MTN submit flow end to end: N shop orders drained to the fake reseller, SQLite and PostgreSQL.

What it measures, and why:

1. Drain throughput. N queued MTN orders (shop columns only, distinct recipients) are drained by the real
   submit job (jobs.submit_mtn.SubmitMtn) in-process, run in a loop until no order is queued or in flight:
   claim a batch (daemon.batch_size), validate, lock recipients, check the balance, POST each order to the
   fake reseller with mtn.max_in_flight threads (every call audited in api_calls), finalise. orders/s =
   N / (time from the first claim to the moment the last batch is finalised, i.e. every order `submitted`).
   Settlement (webhooks, history) is not part of it.
2. The ceiling. A bare loop, in a process of its own, with the same number of threads, each with its own
   requests.Session, POSTing the same N order bodies with the X-API-KEY header to a fresh fake: the most
   this client machine gets out of that fake at that concurrency. ratio = drain orders/s / ceiling orders/s.
   The ceiling is measured right before each drain, so both see about the same machine.
   A virtual machine's speed drifts by 10-20 % within minutes, so one pair proves little: --rounds pairs
   (default 3) are measured per backend, the backends taking turns, and the verdict is on the median ratio.
   Every pair is printed.
3. Peak RSS of the draining process: a process that does nothing else (the rows are loaded by the parent,
   the fake runs in a third process), read as its VmHWM (see peak_rss_mb for why not ru_maxrss).

Targets: ratio >= 0.7; peak RSS < 150 MB.

Every case gets its own database (PostgreSQL: a bench_drain_<random> database; SQLite: a file in a
temporary directory) and its own fake reseller process, all removed afterwards. With --profile the drain
also reports where its time went: the main thread's steps of each batch (finishing one overlaps the next
one's sends) and, summed over the sending threads, HTTP time against api_calls audit time. Run from the repository:

    .venv/bin/python bench/drain_mtn.py [--pg-url postgresql://postgres@127.0.0.1:5432] [--skip-pg]
                                        [--orders 20000] [--rounds 3] [--profile]
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import multiprocessing
import os
import queue
import random
import resource
import statistics
import threading
import time
import uuid
from collections import defaultdict
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import requests
from scratch import add_database_options, analyze, fake_in_process, machine, scratch_database, verdict
from sqlalchemy import Engine, func, insert, select, text

from reconciler.engine.db import make_engine
from reconciler.engine.schema import QUEUED, SUBMITTED, api_calls, mtn_orders

KEY = "bench-mtn-key"
PREFIXES = ("024", "025", "053", "054", "055", "059")  # MTN Ghana
TARGET_RATIO = 0.7
TARGET_RSS_MB = 150.0
MAX_RUNS = 50  # SubmitMtn.run calls before the drain is declared stuck


@dataclass(frozen=True)
class Case:
    backend: str  # "bare" for the ceiling
    orders: int
    seconds: float
    rss_mb: float
    connections: int  # TCP connections the fake accepted
    cpu_seconds: float  # CPU time (user + system, all threads) of the measured process while it ran
    fake_cpu_seconds: float  # CPU time of the fake reseller's process
    db_cpu_seconds: float | None  # CPU time of the local PostgreSQL server's processes (None: not readable)
    phases: dict[str, list[float]] = dataclasses.field(default_factory=dict)

    @property
    def per_s(self) -> float:
        return self.orders / self.seconds


def shop_rows(count: int) -> list[dict[str, Any]]:
    """What a shop inserts: its own columns only. Every recipient is distinct (one unsettled order per
    recipient and size), on the MTN prefixes, sizes 1..5 GB (all plans of the fake)."""
    return [{"shop_order_id": f"drain-{i:08d}", "recipient_phone": f"{PREFIXES[i % len(PREFIXES)]}{i:07d}",
             "network": "MTN", "size_gb": 1 + i % 5} for i in range(count)]


# -- the fake reseller, in a process of its own ---------------------------------------------------

def serve_fake(pipe: Any) -> None:
    """Run a FakeMtn until told to stop; then report what it saw. Counts accepted TCP connections."""
    from reconciler.providers.mtn import fake as fake_module

    accepted = itertools.count()
    original_setup = fake_module._Handler.setup

    def counting_setup(handler: Any) -> None:
        next(accepted)
        original_setup(handler)

    fake_module._Handler.setup = counting_setup  # type: ignore[method-assign]
    fake = fake_module.FakeMtn(api_key=KEY, balance=1e9, rng=random.Random(0)).start()
    cpu = time.process_time()
    pipe.send(fake.url)
    pipe.recv()
    pipe.send({"created": fake.created_count, "requests": fake.requests_received,
               "connections": next(accepted), "cpu_seconds": time.process_time() - cpu})
    fake.stop()


def fake_reseller() -> AbstractContextManager[tuple[str, dict[str, Any]]]:
    """(url, report): the report is filled in when the block ends and the fake has stopped."""
    return fake_in_process(serve_fake)


# -- scratch databases (as in bench/claim.py) -----------------------------------------------------

def load_orders(url: str, count: int) -> None:
    """The shop's rows, then fresh statistics."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(insert(mtn_orders), shop_rows(count))
        analyze(engine)
    finally:
        engine.dispose()


# -- the measured processes -----------------------------------------------------------------------

def peak_rss_mb() -> float:
    """This process's own peak RSS: VmHWM, the high-water mark of its memory map. Not ru_maxrss: a spawned
    child is forked from the bench process before it execs Python, and Linux carries the forked copy's
    high-water mark over the exec into ru_maxrss, so every case would report at least the parent's RSS."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024  # kB
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux, an upper bound


def postgres_cpu_seconds() -> float | None:
    """CPU time so far of this machine's PostgreSQL processes, ended backends included (they are counted in
    the postmaster's children times); None when PostgreSQL is not local or /proc is not readable."""
    ticks, found = 0, False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text_ = stat.read_text()
        except OSError:
            continue
        name, fields = text_[text_.index("(") + 1:text_.rindex(")")], text_[text_.rindex(")") + 2:].split()
        if name.startswith("postgres"):
            found = True
            ticks += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK") if found else None


def bare_loop(fake_url: str, count: int, threads: int, results: Any) -> None:
    """The ceiling: `threads` threads, a requests.Session each, POST /api/orders until `count` are placed."""
    bodies = [json.dumps({"recipient_phone": r["recipient_phone"], "network": r["network"],
                          "size_gb": r["size_gb"]}) for r in shop_rows(count)]
    url = fake_url + "/api/orders"
    tickets = itertools.count()  # next() on itertools.count is atomic under the GIL
    failures: list[str] = []
    start = threading.Barrier(threads + 1)

    def post_orders() -> None:
        session = requests.Session()
        session.headers.update({"X-API-KEY": KEY, "Accept": "application/json"})
        start.wait()
        while (i := next(tickets)) < count:
            response = session.post(url, data=bodies[i], headers={"Content-Type": "application/json"},
                                    timeout=(5.0, 15.0))
            if response.status_code != 200 or response.json().get("order_id") is None:
                failures.append(f"{response.status_code} {response.text[:100]}")

    workers = [threading.Thread(target=post_orders) for _ in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    started, cpu = time.perf_counter(), time.process_time()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    results.put({"seconds": elapsed, "cpu_seconds": time.process_time() - cpu, "rss_mb": peak_rss_mb(),
                 "failures": failures[:5], "phases": {}})


def drain(db_url: str, fake_url: str, count: int, profile: bool, results: Any) -> None:
    """The submit job, in-process, run until no order is queued or in flight."""
    from jobs.submit_mtn import SubmitMtn
    from reconciler.app import assemble
    from reconciler.config import Config

    base = Config()
    config = dataclasses.replace(base, mtn=dataclasses.replace(base.mtn, base_url=fake_url, api_key=KEY))
    engine = make_engine(db_url)
    worker = f"bench-{uuid.uuid4().hex[:8]}"
    ctx = assemble(config, engine, worker_id=worker).context
    job = SubmitMtn(config)
    phases = instrument(job, config, engine) if profile else None
    with engine.connect() as conn:  # connect before the clock starts
        conn.execute(text("SELECT 1"))
    pending = select(func.count()).select_from(mtn_orders).where(mtn_orders.c.status.in_([QUEUED, "in_flight"]))
    runs = 0
    started, cpu = time.perf_counter(), time.process_time()
    while True:
        job.run(ctx)
        runs += 1
        with engine.connect() as conn:
            left = conn.scalar(pending)
        if not left:
            break
        if runs >= MAX_RUNS:
            raise RuntimeError(f"drain stuck: {left} orders still queued or in flight after {runs} runs")
        time.sleep(0.05)  # a pause (balance, 429) ends on its own; the daemon would poll again too
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    engine.dispose()
    results.put({"seconds": elapsed, "cpu_seconds": cpu, "rss_mb": peak_rss_mb(), "failures": [], "runs": runs,
                 "phases": dict(phases) if phases is not None else {}})


def instrument(job: Any, config: Any, engine: Engine) -> dict[str, list[float]]:
    """Wrap the steps of the submit job with timers (wall seconds per call). Main-thread steps run one after
    the other; `http` and `audit` run in the sending threads and are summed over them."""
    import jobs.submit_mtn as submit_module
    from jobs.submit_mtn import AUDIT_DELAY_SECONDS
    from reconciler.engine.outbox import Batch, Outbox
    from reconciler.http.audit import AuditLog
    from reconciler.providers.mtn.account import MtnAccount
    from reconciler.providers.mtn.client import MtnClient

    phases: dict[str, list[float]] = defaultdict(list)
    lock = threading.Lock()

    def timed(name: str, fn: Callable) -> Callable:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                with lock:
                    phases[name].append(elapsed)
        return wrapper

    submit_module.lock_recipients = timed("lock_recipients", submit_module.lock_recipients)
    submit_module.unlock_recipients = timed("unlock_recipients", submit_module.unlock_recipients)
    Outbox.claim = timed("claim", Outbox.claim)  # type: ignore[method-assign]
    Outbox.finalise = timed("finalise", Outbox.finalise)  # type: ignore[method-assign]
    Outbox.release = timed("release", Outbox.release)  # type: ignore[method-assign]
    MtnAccount.is_open = timed("is_open", MtnAccount.is_open)  # type: ignore[method-assign]
    MtnAccount.affordable = timed("affordable", MtnAccount.affordable)  # type: ignore[method-assign]
    Batch.__exit__ = timed("batch_exit", Batch.__exit__)  # type: ignore[method-assign]
    job.start = timed("start", job.start)
    job.finish = timed("finish", job.finish)
    settings = config.mtn
    job.audit = AuditLog(engine, max_delay_seconds=AUDIT_DELAY_SECONDS)
    job.audit.flush = timed("audit_flush", job.audit.flush)  # type: ignore[method-assign]
    client = MtnClient(settings.base_url, settings.api_key, settings.request_timeout_seconds,
                       settings.connect_timeout_seconds, audit=timed("audit", job.audit))
    client.create_order = timed("create_order", client.create_order)  # type: ignore[method-assign]
    job.client = client
    return phases


def run_in_process(target: Callable, *args: Any) -> dict[str, Any]:
    spawn = multiprocessing.get_context("spawn")
    results = spawn.Queue()
    process = spawn.Process(target=target, args=(*args, results))
    process.start()
    while True:
        try:
            result = results.get(timeout=1)
            break
        except queue.Empty:
            if not process.is_alive():
                raise RuntimeError(f"{target.__name__} exited with {process.exitcode} and no result") from None
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"{target.__name__} exited with {process.exitcode}")
    if result["failures"]:
        raise RuntimeError(f"{target.__name__}: failed requests, e.g. {result['failures']}")
    return result


def measure_ceiling(count: int, threads: int) -> Case:
    with fake_reseller() as (url, report):
        result = run_in_process(bare_loop, url, count, threads)
    if report["created"] != count:
        raise RuntimeError(f"bare loop: the fake created {report['created']} of {count} orders")
    return Case("bare", count, result["seconds"], result["rss_mb"], report["connections"], result["cpu_seconds"],
                report["cpu_seconds"], None)


def measure_drain(backend: str, pg_url: str, count: int, profile: bool) -> Case:
    with scratch_database(backend, pg_url, "bench_drain") as db_url:
        load_orders(db_url, count)
        with fake_reseller() as (url, report):
            db_cpu = postgres_cpu_seconds() if backend == "postgresql" else None
            result = run_in_process(drain, db_url, url, count, profile)
            if db_cpu is not None:
                db_cpu = postgres_cpu_seconds() - db_cpu
        engine = make_engine(db_url)
        try:
            with engine.connect() as conn:
                statuses = dict(conn.execute(select(mtn_orders.c.status, func.count()).group_by(mtn_orders.c.status)).all())
                audited = conn.scalar(select(func.count()).select_from(api_calls)
                                      .where(api_calls.c.method == "POST"))
        finally:
            engine.dispose()
    if statuses != {SUBMITTED: count} or report["created"] != count or audited != count:
        raise RuntimeError(f"{backend}: statuses {statuses}, fake created {report['created']}, "
                           f"{audited} POSTs audited; expected {count} of each")
    return Case(backend, count, result["seconds"], result["rss_mb"], report["connections"], result["cpu_seconds"],
                report["cpu_seconds"], db_cpu, result["phases"])


# -- report -----------------------------------------------------------------------------------------

def report(pairs: list[tuple[Case, Case]], threads: int, batch: int) -> str:
    lines = [f"Drain: the submit job (batch {batch}, {threads} in flight) vs a bare requests loop "
             f"({threads} threads), same fake",
             f"{'case':<19} {'orders':>6} {'seconds':>8} {'orders/s':>9} {'ratio':>6}  {'target':<15} "
             f"{'RSS MB':>7}  {'target':<13} {'CPU ms/order':>12} {'fake':>5} {'db':>5} {'conns':>6}",
             "-" * 125]

    def row(name: str, case: Case, ratio: str, ratio_target: str, rss_target: str) -> str:
        return (f"{name:<19} {case.orders:>6} {case.seconds:>8.2f} {case.per_s:>9,.0f} {ratio:>6}  {ratio_target:<15} "
                f"{case.rss_mb:>7.1f}  {rss_target:<13} {per_order(case.cpu_seconds, case):>12} "
                f"{per_order(case.fake_cpu_seconds, case):>5} {per_order(case.db_cpu_seconds, case):>5} "
                f"{case.connections:>6}")

    def per_order(cpu_seconds: float | None, case: Case) -> str:
        return "-" if cpu_seconds is None else f"{1000 * cpu_seconds / case.orders:.2f}"

    for ceiling, case in pairs:
        ratio = case.per_s / ceiling.per_s
        lines.append(row("bare requests loop", ceiling, "-", "-", "-"))
        lines.append(row(f"{case.backend} drain", case, f"{ratio:.2f}",
                         f">= {TARGET_RATIO}: {verdict(ratio >= TARGET_RATIO)}",
                         f"< {TARGET_RSS_MB:.0f}: {verdict(case.rss_mb < TARGET_RSS_MB)}"))
    lines += ["(ratio: drain orders/s over the bare loop's just before it; CPU ms/order: CPU time of the measured",
              " process, all threads, per order; fake, db: the same for the fake reseller's process and the local",
              " PostgreSQL server; conns: TCP connections the fake accepted)"]
    return "\n".join(lines)


def summary(pairs: list[tuple[Case, Case]]) -> str:
    """Per backend, over its rounds: the median and the range of orders/s and of the ratio; the verdicts."""
    lines = [f"Over {len(pairs) // len({case.backend for _, case in pairs})} rounds per backend: median (lowest-highest)",
             f"{'backend':<11} {'drain orders/s':<20} {'ratio':<18} {'target':<15} {'peak RSS MB':>11}  target",
             "-" * 88]
    for backend in dict.fromkeys(case.backend for _, case in pairs):
        mine = [(ceiling, case) for ceiling, case in pairs if case.backend == backend]
        rates = [case.per_s for _, case in mine]
        ratios = [case.per_s / ceiling.per_s for ceiling, case in mine]
        rss = max(case.rss_mb for _, case in mine)
        lines.append(f"{backend:<11} {spread(rates, '{:,.0f}'):<20} {spread(ratios, '{:.2f}'):<18} "
                     f"{'>= ' + str(TARGET_RATIO) + ': ' + verdict(statistics.median(ratios) >= TARGET_RATIO):<15} "
                     f"{rss:>11.1f}  < {TARGET_RSS_MB:.0f}: {verdict(rss < TARGET_RSS_MB)}")
    return "\n".join(lines)


def spread(values: list[float], form: str) -> str:
    return f"{form.format(statistics.median(values))} ({form.format(min(values))}-{form.format(max(values))})"


def profile_report(case: Case) -> str:
    p = case.phases
    total = case.seconds
    steps = ("is_open", "claim", "lock_recipients", "affordable", "start", "finish", "audit_flush", "finalise",
             "release", "unlock_recipients")
    lines = [f"Where the {case.backend} drain's {total:.2f} s went ({len(p.get('claim', []))} claims)",
             f"{'step':<22} {'calls':>6} {'total s':>8} {'ms/call':>8} {'% of drain':>10}",
             "-" * 58]
    for name in steps:
        values = p.get(name, [])
        lines.append(f"{name:<22} {len(values):>6} {sum(values):>8.2f} {1000 * sum(values) / max(len(values), 1):>8.2f} "
                     f"{100 * sum(values) / total:>9.1f}%")
    lines.append("(start: checks, locks, balance, then handing rows to free slots; finish: waiting for the batch's"
                 " last sends, finalise, while the next batch's orders are out; audit_flush: the audit thread's"
                 " writes)")
    calls, audit = p.get("create_order", []), p.get("audit", [])
    if calls:
        http = sum(calls) - sum(audit)
        lines += [f"{'per order (threads)':<22} {'calls':>6} {'total s':>8} {'ms/call':>8}",
                  f"{'create_order':<22} {len(calls):>6} {sum(calls):>8.2f} {1000 * sum(calls) / len(calls):>8.2f}",
                  f"{'  of it: HTTP + parse':<22} {len(calls):>6} {http:>8.2f} {1000 * http / len(calls):>8.2f}",
                  f"{'  of it: api_calls audit':<22} {len(audit):>6} {sum(audit):>8.2f} "
                  f"{1000 * sum(audit) / max(len(audit), 1):>8.2f}"]
    return "\n".join(lines)


def main() -> None:
    from reconciler.config import Config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_database_options(parser)
    parser.add_argument("--orders", type=int, default=20_000, help="orders per case (default 20,000)")
    parser.add_argument("--rounds", type=int, default=3, help="pairs (ceiling, drain) per backend (default 3)")
    parser.add_argument("--profile", action="store_true", help="also time the steps of the drain")
    args = parser.parse_args()
    config = Config()
    threads, batch = config.mtn.max_in_flight, config.daemon.batch_size
    backends = ["sqlite"] + ([] if args.skip_pg else ["postgresql"])
    pairs = [(measure_ceiling(args.orders, threads), measure_drain(b, args.pg_url, args.orders, args.profile))
             for _ in range(args.rounds) for b in backends]
    print(machine(None if args.skip_pg else args.pg_url, f"requests {requests.__version__}"))
    print(report(pairs, threads, batch))
    print()
    print(summary(pairs))
    if args.profile:
        for _, case in pairs:
            print()
            print(profile_report(case))


if __name__ == "__main__":
    main()
