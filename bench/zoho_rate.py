"""Benchmark of Zoho's per-minute limit held by replicas together: N T2Mobile orders drained by R replicas through
the fake Zoho, SQLite and PostgreSQL.

What it measures, and why:

1. The limit used. Zoho allows 100 calls a minute per organisation, for all replicas together. The window is
   scaled down through zoho.rate_window_seconds (default 100 per 6 s), the fake Zoho told the same. R replica
   processes (each its own engine, worker id and ZohoClient) run the real submit job (jobs.submit_zoho) as the
   daemon does, every zoho.poll_interval_seconds, until no order is queued, in flight or in doubt. Each order
   costs 4 calls (find the customer by e-mail, create it, create the sales order, mark it open). From the
   fake's arrival times: the calls in each whole window from the first call to the last (work is queued all
   that time), their mean against the limit (target: at least 95 % used), and the busiest window anywhere
   (must not pass the limit: the fake would answer 429).
2. What Zoho said: 429s received (target 0); every order completed with exactly one sales order carrying its
   reference (target: no order lost, none doubled).
3. orders/minute from the first call to the last, against the fastest the limit allows for N orders: the first
   `limit` calls at once, then `limit` more as each window opens, (ceil(4N / limit) - 1) windows in all.
4. The ceiling of the machine, measured in the same run: a bare loop (R processes, requests.Session each,
   the same GET /contacts call as fast as it can) against a fake with no limit: how many calls per window
   this machine could make. Below the limit, the bench measures the machine, not the limit.

Every case gets its own database and its own fake Zoho process, removed afterwards. Run from the repository:

    .venv/bin/python bench/zoho_rate.py [--pg-url postgresql://postgres@127.0.0.1:5432] [--skip-pg]
                                        [--orders 300] [--replicas 3] [--limit 100] [--window 6]
"""
from __future__ import annotations

import argparse
import math
import multiprocessing
import queue
import statistics
import time
from collections import Counter
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import requests
from scratch import add_database_options, analyze, fake_in_process, machine, scratch_database, verdict
from sqlalchemy import func, select

from reconciler.engine.db import make_engine
from reconciler.engine.schema import COMPLETED, zoho_orders

CALLS_PER_ORDER = 4
TARGET_USED = 0.95
PARTNER_URL = "http://127.0.0.1:9/t2mobile/events"  # never called: the bench runs no delivery job
PARTNER_SECRET = "whsec_YmVuY2gtcGFydG5lci1zZWNyZXQ="  # the flow is on only with one; nothing is signed here


@dataclass(frozen=True)
class Drain:
    backend: str
    orders: int
    seconds: float           # first call to last call, at the fake
    windows: list[int]       # calls in each whole window from the first call
    busiest: int             # the most calls in any window (sliding)
    answered_429: int
    statuses: dict[str, int]
    references: Counter      # sales orders per reference at the fake
    token_requests: int

    @property
    def per_minute(self) -> float:
        return self.orders / self.seconds * 60


# -- the fake Zoho, in a process of its own ---------------------------------------------------------

def serve_fake(pipe: Any, limit: int, window: float) -> None:
    from reconciler.providers.zoho.fake import FakeZoho, ZohoFaults

    fake = FakeZoho(faults=ZohoFaults(requests_per_minute=limit, rate_window_seconds=window,
                                      requests_per_day=10_000_000)).start()
    pipe.send(fake.environment())
    pipe.recv()
    pipe.send({"arrivals": [moment.timestamp() for moment in fake.arrivals], "answered_429": fake.answered_429,
               "busiest": fake.busiest_window(window), "token_requests": fake.token_requests,
               "references": Counter(order["reference_number"] for order in fake.salesorders)})
    fake.stop()


def fake_zoho(limit: int, window: float) -> AbstractContextManager[tuple[dict[str, str], dict[str, Any]]]:
    """(the zoho.* environment pointing at it, its report, filled in when the block ends)."""
    return fake_in_process(serve_fake, limit, window)


# -- the replicas -------------------------------------------------------------------------------------

def replica(env: dict[str, str], results: Any) -> None:
    """One daemon replica (its own engine and worker id) reduced to the submit job, until no order is left."""
    from reconciler.config import load_config
    from reconciler.providers.zoho.drain import drain_as_replica

    config = load_config(None, env)
    engine = make_engine(config.database.url)
    try:
        results.put({"runs": drain_as_replica(config, engine)})
    finally:
        engine.dispose()


def load_orders(url: str, count: int) -> None:
    from reconciler.providers.zoho.orders import enqueue_zoho

    engine = make_engine(url)
    try:
        for i in range(count):
            enqueue_zoho(engine, f"T2M-BENCH-{i:05d}", "ZOHO_CRM_STD", "1_MONTH", f"CUST-{i:05d}",
                         f"Customer {i:05d}", f"customer{i:05d}@example.ng")
        analyze(engine)
    finally:
        engine.dispose()


def measure_drain(backend: str, pg_url: str, orders: int, replicas: int, limit: int, window: float) -> Drain:
    with scratch_database(backend, pg_url, "bench_zoho") as db_url:
        load_orders(db_url, orders)
        with fake_zoho(limit, window) as (zoho_env, report):
            env = {**zoho_env, "RECONCILER_DATABASE_URL": db_url, "RECONCILER_PARTNER_WEBHOOK_URL": PARTNER_URL,
                   "RECONCILER_PARTNER_WEBHOOK_SECRET": PARTNER_SECRET,
                   "RECONCILER_ZOHO_REQUESTS_PER_MINUTE": str(limit),
                   "RECONCILER_ZOHO_RATE_WINDOW_SECONDS": str(window),
                   "RECONCILER_ZOHO_REQUESTS_PER_DAY": "10000000"}
            run_processes(replica, [(env,)] * replicas)
        engine = make_engine(db_url)
        try:
            with engine.connect() as conn:
                statuses = dict(conn.execute(select(zoho_orders.c.status, func.count())
                                             .group_by(zoho_orders.c.status)).all())
        finally:
            engine.dispose()
    arrivals = sorted(report["arrivals"])
    return Drain(backend, orders, arrivals[-1] - arrivals[0], whole_windows(arrivals, window), report["busiest"],
                 report["answered_429"], statuses, report["references"], report["token_requests"])


def whole_windows(arrivals: list[float], window: float) -> list[int]:
    """Calls in each whole window, the first starting at the first call (the last, partial one left out)."""
    first, last = arrivals[0], arrivals[-1]
    counts = Counter(int((moment - first) // window) for moment in arrivals)
    return [counts.get(i, 0) for i in range(int((last - first) // window))]


# -- the ceiling: a bare loop against a fake with no limit ------------------------------------------

def bare_loop(env: dict[str, str], seconds: float, results: Any) -> None:
    """GET /contacts with one access token as fast as one thread can, for `seconds`."""
    accounts, api = env["RECONCILER_ZOHO_ACCOUNTS_URL"], env["RECONCILER_ZOHO_API_URL"]
    session = requests.Session()
    token = session.post(accounts + "/oauth/v2/token", timeout=10, data={
        "refresh_token": env["RECONCILER_ZOHO_REFRESH_TOKEN"], "client_id": env["RECONCILER_ZOHO_CLIENT_ID"],
        "client_secret": env["RECONCILER_ZOHO_CLIENT_SECRET"], "grant_type": "refresh_token"}).json()["access_token"]
    params = {"organization_id": env["RECONCILER_ZOHO_ORGANIZATION_ID"], "email": "nobody@example.ng"}
    headers = {"Authorization": f"Zoho-oauthtoken {token}"}
    calls, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        session.get(api + "/contacts", params=params, headers=headers, timeout=10).raise_for_status()
        calls += 1
    results.put({"calls": calls})


def measure_ceiling(replicas: int, window: float) -> float:
    """Calls per window the machine makes with `replicas` bare loops, against a fake without a limit."""
    seconds = max(window, 3.0)
    with fake_zoho(10_000_000, window) as (env, _):
        done = run_processes(bare_loop, [(env, seconds)] * replicas)
    return sum(result["calls"] for result in done) / seconds * window


def run_processes(target: Any, arguments: list[tuple]) -> list[dict[str, Any]]:
    spawn = multiprocessing.get_context("spawn")
    results = spawn.Queue()
    processes = [spawn.Process(target=target, args=(*args, results)) for args in arguments]
    for process in processes:
        process.start()
    done: list[dict[str, Any]] = []
    while len(done) < len(processes):
        try:
            done.append(results.get(timeout=1))
        except queue.Empty:
            dead = [p for p in processes if not p.is_alive() and p.exitcode != 0]
            if dead:
                raise RuntimeError(f"{target.__name__} exited with {dead[0].exitcode}") from None
    for process in processes:
        process.join()
    return done


# -- report -------------------------------------------------------------------------------------------

def report(drains: list[Drain], ceiling: float, replicas: int, limit: int, window: float) -> str:
    orders = drains[0].orders if drains else 0
    ideal = orders / ((math.ceil(orders * CALLS_PER_ORDER / limit) - 1) * window) * 60 if orders else 0.0
    lines = [f"Zoho rate limit: {replicas} replicas, limit {limit} calls per {window:g} s window (Zoho's 100 a minute "
             f"scaled), {CALLS_PER_ORDER} calls per order; the machine's ceiling: {ceiling:,.0f} calls per window "
             f"(bare loops, no limit)",
             f"{'backend':<11} {'orders':>6} {'windows':>7} {'calls/window mean (min-max)':>28} {'used':>6}  "
             f"{'target':<12} {'busiest':>7}  {'429s':>4}  {'lost/doubled':>12} {'orders/min':>10} {'of ideal':>8}",
             "-" * 122]
    for d in drains:
        mean = statistics.mean(d.windows) if d.windows else 0.0
        used = mean / limit
        spread = f"{mean:.1f} ({min(d.windows, default=0)}-{max(d.windows, default=0)})"
        completed = d.statuses.get(COMPLETED, 0)
        lost = d.orders - completed
        doubled = sum(1 for n in d.references.values() if n > 1)
        lines.append(f"{d.backend:<11} {d.orders:>6} {len(d.windows):>7} {spread:>28} {used:>6.1%}  "
                     f"{'>= 95%: ' + verdict(used >= TARGET_USED):<12} "
                     f"{str(d.busiest) + ('' if d.busiest <= limit else ' !'):>7}  {d.answered_429:>4}  "
                     f"{f'{lost}/{doubled}':>12} {d.per_minute:>10.1f} {d.per_minute / ideal:>8.1%}")
    lines += [f"(used: mean calls per whole window over the limit, while orders were queued; busiest: the most calls "
              f"in any {window:g} s, never above {limit}; lost: orders not completed, doubled: references with more "
              f"than one sales order; ideal: {ideal:.0f} orders/min, the fastest the limit allows {orders} orders of "
              f"{CALLS_PER_ORDER} calls: {limit} at once, then {limit} as each window opens)"]
    for d in drains:
        lines.append(f"{d.backend}: statuses {dict(sorted(d.statuses.items()))}, {d.token_requests} token request(s), "
                     f"calls per window {d.windows}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_database_options(parser)
    parser.add_argument("--orders", type=int, default=300, help="orders per case (default 300)")
    parser.add_argument("--replicas", type=int, default=3, help="replica processes (default 3)")
    parser.add_argument("--limit", type=int, default=100, help="calls per window (default 100, Zoho's)")
    parser.add_argument("--window", type=float, default=6.0, help="window seconds (default 6: a minute scaled)")
    args = parser.parse_args()
    backends = ["sqlite"] + ([] if args.skip_pg else ["postgresql"])
    ceiling = measure_ceiling(args.replicas, args.window)
    drains = [measure_drain(b, args.pg_url, args.orders, args.replicas, args.limit, args.window) for b in backends]
    print(machine(None if args.skip_pg else args.pg_url, f"requests {requests.__version__}"))
    print(report(drains, ceiling, args.replicas, args.limit, args.window))


if __name__ == "__main__":
    main()
