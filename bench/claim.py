"""Benchmark of the outbox engine's claim and finalise (reconciler.engine.outbox.Outbox), SQLite and PostgreSQL.

What it measures, and why:

1. Throughput. N queued rows, one worker looping claim(batch) + finalise(every claimed row as
   completed) until the queue is empty; rows/s = N / elapsed, at batch sizes 1, 100 and 500. This is
   the ceiling of the engine itself, without any provider call: the daemon can never go faster.
2. Claim latency against table size. The median time of claim(100) (statement + commit, as the
   claim-duration metric sees it) with no finished rows in the table and with 1,000,000 finished
   ('completed') rows. The claim walks a partial index that holds queued rows only, so a claim should
   cost O(batch) however many rows are finished; the ratio loaded/empty checks that.

Targets: >= 15,000 rows/s at batch 100 on PostgreSQL; latency ratio <= 1.3.

Every case runs in a database of its own, created for it and dropped afterwards (PostgreSQL: a
bench_claim_<random> database; SQLite: a file in a temporary directory). Run from the repository:

    .venv/bin/python bench/claim.py [--pg-url postgresql://postgres@127.0.0.1:5432] [--skip-pg]
"""
from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from scratch import add_database_options, analyze, machine, scratch_database, verdict
from sqlalchemy import Engine, RowMapping, insert, text

from reconciler.engine.db import make_engine
from reconciler.engine.outbox import Outbox, Outcome
from reconciler.engine.schema import COMPLETED, mtn_orders

THROUGHPUT_CASES = ((1, 2_000), (100, 20_000), (500, 20_000))  # (batch size, queued rows), one worker
# PostgreSQL scales out with worker processes (replicas) claiming with SKIP LOCKED: batch 100 again with
# 2 and 3 of them (more gains nothing on 2 cores shared with the server). SQLite has one writer.
PG_WORKER_CASES = ((100, 40_000, 2), (100, 40_000, 3))  # (batch size, queued rows, worker processes)
FINISHED_ROWS = 1_000_000
LATENCY_CLAIMS = 200  # claim(100) calls measured per case
TARGET_ROWS_PER_S = 15_000  # PostgreSQL, batch 100
TARGET_RATIO = 1.3


@dataclass(frozen=True)
class Throughput:
    backend: str
    batch: int
    rows: int
    seconds: float
    claim_seconds: float
    finalise_seconds: float
    rounds: int
    workers: int = 1

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds


@dataclass(frozen=True)
class Latency:
    backend: str
    empty_ms: float
    loaded_ms: float

    @property
    def ratio(self) -> float:
        return self.loaded_ms / self.empty_ms


# -- scratch databases ------------------------------------------------------------------------

@contextmanager
def scratch_engine(backend: str, pg_url: str) -> Iterator[Engine]:
    with scratch_database(backend, pg_url, "bench_claim") as url:
        engine = make_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()


def insert_queued(engine: Engine, count: int, prefix: str = "shop") -> None:
    """What a shop does: insert only its own columns; every daemon column takes its default."""
    rows = [{"shop_order_id": f"{prefix}-{i:08d}", "recipient_phone": f"024{i % 10_000_000:07d}", "size_gb": 1 + i % 10}
            for i in range(count)]
    with engine.begin() as conn:
        conn.execute(insert(mtn_orders), rows)


def insert_finished(engine: Engine, count: int) -> None:
    """`count` completed rows, spread over the past year, in one set-based statement."""
    columns = ("shop_order_id, recipient_phone, size_gb, status, attempts, next_attempt_at, "
               "created_at, updated_at, provider_order_id, provider_status")
    if engine.dialect.name == "postgresql":
        sql = (f"INSERT INTO mtn_orders ({columns}) "
               "SELECT 'done-' || lpad(g::text, 8, '0'), '024' || lpad((g % 10000000)::text, 7, '0'), 1 + g % 10, "
               "'completed', 1, now() - interval '1 year' + g * interval '30 seconds', "
               "now() - interval '1 year' + g * interval '30 seconds', "
               "now() - interval '1 year' + g * interval '30 seconds' + interval '5 seconds', "
               "'P' || g, 'SUCCESSFUL' FROM generate_series(1, :n) AS g")
    else:
        sql = (f"WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < :n) "
               f"INSERT INTO mtn_orders ({columns}) "
               "SELECT 'done-' || printf('%08d', i), '024' || printf('%07d', i % 10000000), 1 + i % 10, "
               "'completed', 1, datetime('now', '-1 year', '+' || (i * 30) || ' seconds'), "
               "datetime('now', '-1 year', '+' || (i * 30) || ' seconds'), "
               "datetime('now', '-1 year', '+' || (i * 30 + 5) || ' seconds'), "
               "'P' || i, 'SUCCESSFUL' FROM g")
    with engine.begin() as conn:
        conn.execute(text(sql), {"n": count})


# -- measuring --------------------------------------------------------------------------------

def new_outbox(engine: Engine) -> Outbox:
    return Outbox(engine, mtn_orders, f"bench-{uuid.uuid4().hex[:8]}", lease_seconds=300,
                  retry_schedule_seconds=[30, 120, 600])


def completed(rows: Sequence[RowMapping]) -> list[Outcome]:
    return [Outcome(r["id"], COMPLETED, "bench", {"provider_order_id": f"x{r['id']}"}) for r in rows]


def drain(outbox: Outbox, batch: int) -> tuple[list[float], list[float]]:
    """claim(batch) + finalise until the queue is empty; the seconds of every claim and every finalise."""
    claims: list[float] = []
    finalises: list[float] = []
    while True:
        started = time.perf_counter()
        rows = outbox.claim(batch)
        claimed = time.perf_counter()
        claims.append(claimed - started)
        if not rows:
            return claims, finalises
        outbox.finalise(completed(rows))
        finalises.append(time.perf_counter() - claimed)


def drain_in_worker(url: str, batch: int, start: Any, results: Any) -> None:
    """One worker process: connect, wait for the others, drain, report its claim/finalise seconds."""
    engine = make_engine(url)
    outbox = new_outbox(engine)
    outbox.claim(0)  # connect before the clock starts
    start.wait()
    claims, finalises = drain(outbox, batch)
    results.put((sum(claims), sum(finalises), len(finalises)))
    engine.dispose()


def measure_throughput(backend: str, pg_url: str, batch: int, count: int, workers: int = 1) -> Throughput:
    with scratch_engine(backend, pg_url) as engine:
        insert_queued(engine, count)
        if workers == 1:
            outbox = new_outbox(engine)
            started = time.perf_counter()
            claims, finalises = drain(outbox, batch)
            elapsed = time.perf_counter() - started
            totals = [(sum(claims), sum(finalises), len(finalises))]
        else:
            spawn = multiprocessing.get_context("spawn")
            start, results = spawn.Barrier(workers + 1), spawn.Queue()
            url = engine.url.render_as_string(hide_password=False)
            processes = [spawn.Process(target=drain_in_worker, args=(url, batch, start, results))
                         for _ in range(workers)]
            for process in processes:
                process.start()
            start.wait()
            started = time.perf_counter()
            totals = [results.get() for _ in processes]
            elapsed = time.perf_counter() - started
            for process in processes:
                process.join()
        with engine.connect() as conn:
            done = conn.scalar(text("SELECT count(*) FROM mtn_orders WHERE status = 'completed'"))
        if done != count:
            raise RuntimeError(f"{backend} batch {batch}: {done} of {count} rows completed")
    claim_s, finalise_s, rounds = (sum(column) for column in zip(*totals))
    return Throughput(backend, batch, count, elapsed, claim_s, finalise_s, rounds, workers)


def measure_latency(backend: str, pg_url: str) -> Latency:
    """claim(100) on two tables side by side, one empty, one holding the finished rows; their claims
    alternate, so the noise of a shared 2-core machine falls on both alike. Only the claim is timed."""
    with scratch_engine(backend, pg_url) as empty, scratch_engine(backend, pg_url) as loaded:
        insert_finished(loaded, FINISHED_ROWS)
        outboxes = []
        for engine in (empty, loaded):
            analyze(engine)
            insert_queued(engine, 100 * LATENCY_CLAIMS, prefix="lat")
            outboxes.append(new_outbox(engine))
        samples: tuple[list[float], list[float]] = ([], [])
        for _ in range(LATENCY_CLAIMS):
            for outbox, seconds in zip(outboxes, samples):
                started = time.perf_counter()
                rows = outbox.claim(100)
                seconds.append(time.perf_counter() - started)
                if len(rows) != 100:
                    raise RuntimeError(f"{backend}: claim(100) returned {len(rows)} rows")
                outbox.finalise(completed(rows))
    return Latency(backend, 1000 * statistics.median(samples[0]), 1000 * statistics.median(samples[1]))


# -- report -----------------------------------------------------------------------------------

def report(throughputs: list[Throughput], latencies: list[Latency]) -> str:
    lines = ["Throughput: claim(batch) + finalise(all completed) until the queue is empty",
             f"{'backend':<11} {'batch':>5} {'workers':>7} {'rows':>6} {'seconds':>8} {'rows/s':>8} "
             f"{'claim ms':>9} {'final. ms':>9}  target",
             "-" * 86]
    for t in throughputs:
        target = "-"
        if t.backend == "postgresql" and t.batch == 100:
            target = f">= {TARGET_ROWS_PER_S:,}: {verdict(t.rows_per_s >= TARGET_ROWS_PER_S)}"
        lines.append(f"{t.backend:<11} {t.batch:>5} {t.workers:>7} {t.rows:>6} {t.seconds:>8.2f} {t.rows_per_s:>8,.0f} "
                     f"{1000 * t.claim_seconds / t.rounds:>9.2f} {1000 * t.finalise_seconds / t.rounds:>9.2f}  {target}")
    lines += ["(claim ms, final. ms: mean time of one claim(batch) call and one finalise call, in each worker)", "",
              f"Median claim(100) latency over {LATENCY_CLAIMS} claims, empty table vs {FINISHED_ROWS:,} completed rows",
              f"{'backend':<11} {'empty ms':>9} {'1M done ms':>10} {'ratio':>6}  target",
              "-" * 56]
    for lat in latencies:
        lines.append(f"{lat.backend:<11} {lat.empty_ms:>9.2f} {lat.loaded_ms:>10.2f} {lat.ratio:>6.2f}  "
                     f"<= {TARGET_RATIO}: {verdict(lat.ratio <= TARGET_RATIO)}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_database_options(parser)
    args = parser.parse_args()
    backends = ["sqlite"] + ([] if args.skip_pg else ["postgresql"])
    throughputs = [measure_throughput(b, args.pg_url, batch, count)
                   for b in backends for batch, count in THROUGHPUT_CASES]
    if not args.skip_pg:
        throughputs += [measure_throughput("postgresql", args.pg_url, batch, count, workers)
                        for batch, count, workers in PG_WORKER_CASES]
    latencies = [measure_latency(b, args.pg_url) for b in backends]
    print(machine(None if args.skip_pg else args.pg_url))
    print(report(throughputs, latencies))


if __name__ == "__main__":
    main()
