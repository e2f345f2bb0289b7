"""Benchmark of the webhook receiver: correctly signed, distinct MTN webhooks stored per second, SQLite and PostgreSQL.

What it measures, and why:

1. The receiver. The daemon's public listener as `reconciler run` builds it (reconciler.app.assemble(...)
   .public_listener(): waitress, POST /api/webhook/mtn, the HMAC check, the event stored before the 200), in a
   process of its own on a fresh migrated database. 16 keep-alive clients (2 processes of 8 threads, each
   thread with one http.client connection) POST N distinct, correctly signed `order.status_changed` events,
   all signed before the clock starts. webhooks/s = 2xx answers / (time from the first request sent to the
   last answer read). p50/p99: the latency of each request as its client saw it. errors: non-2xx answers
   and failed requests. stored: signed rows in inbound_webhooks afterwards; lost = 2xx - stored (must be 0).
2. The ceiling. The same clients against the same embedded server (an HttpListener) whose one route answers
   200 at once: the most these clients get out of waitress on this machine. It is measured right before each
   receiver, so both see about the same machine. ratio = receiver webhooks/s / ceiling requests/s.
3. CPU: the server process's CPU time (all threads) per request, in milliseconds.

Targets: >= 1,000 webhooks/s stored, 0 lost, 0 errors, p99 < 50 ms on each database. Run from the repository:

    .venv/bin/python bench/receiver.py [--pg-url postgresql://postgres@127.0.0.1:5432] [--skip-pg]
                                       [--webhooks 10000] [--rounds 2]
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import hmac
import http.client
import json
import multiprocessing
import statistics
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Iterator

from scratch import add_database_options, machine, scratch_database, verdict
from sqlalchemy import func, select

from reconciler.engine.db import make_engine
from reconciler.engine.schema import inbound_webhooks

SECRET = "bench-webhook-secret"
PATH = "/api/webhook/mtn"
CLIENT_PROCESSES, THREADS_PER_CLIENT = 2, 8  # 16 keep-alive clients
TARGET_PER_S, TARGET_P99_MS = 1000.0, 50.0


@dataclass(frozen=True)
class Case:
    backend: str  # "ceiling": the do-nothing route
    requests: int
    ok: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    server_cpu_seconds: float
    stored: int | None = None

    @property
    def per_s(self) -> float:
        return self.ok / self.seconds

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def signed_events(count: int, offset: int) -> list[tuple[bytes, str]]:
    """Distinct events (one order each), as the reseller signs them: body and X-Webhook-Signature."""
    events = []
    for i in range(offset, offset + count):
        body = json.dumps({"event": "order.status_changed", "timestamp": "2026-11-30T10:00:00Z", "order": {
            "id": 1_000_000 + i, "status": "delivered", "message": "Bundle delivered", "amount": 10,
            "recipient_phone": "0241234567", "plan_name": "MTN 2GB", "network": "MTN", "size_mb": 2048,
            "created_at": "2026-11-30T09:59:00Z", "updated_at": "2026-11-30T10:00:00Z"}}).encode()
        events.append((body, "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()))
    return events


# -- the server, in a process of its own ----------------------------------------------------------

def serve(url: str | None, pipe: Any) -> None:
    """The receiver on `url`'s database, or the do-nothing route when `url` is None; report its CPU time."""
    from reconciler.app import assemble
    from reconciler.config import Config
    from reconciler.http.listener import HttpListener, Response

    if url is None:
        listener = HttpListener("127.0.0.1", 0, 1_048_576, {("POST", PATH): lambda _: Response.json(200, {"ok": True})})
        engine = None
    else:
        config = Config()
        config = dataclasses.replace(config, mtn=dataclasses.replace(config.mtn, webhook_secret=SECRET),
                                     receiver=dataclasses.replace(config.receiver, host="127.0.0.1", port=0))
        engine = make_engine(url)
        listener = assemble(config, engine).public_listener()
    listener.start()
    pipe.send(listener.port)
    pipe.recv()
    cpu = time.process_time()
    pipe.send("started")
    pipe.recv()
    pipe.send(time.process_time() - cpu)
    listener.stop()
    if engine is not None:
        engine.dispose()


@contextmanager
def server(url: str | None) -> Iterator[tuple[int, Any]]:
    spawn = multiprocessing.get_context("spawn")
    ours, theirs = spawn.Pipe()
    process = spawn.Process(target=serve, args=(url, theirs), daemon=True)
    process.start()
    try:
        yield ours.recv(), ours
    finally:
        process.join(timeout=10)


# -- the clients ------------------------------------------------------------------------------------

def client_process(port: int, events: list[tuple[bytes, str]], start: Any, pipe: Any) -> None:
    """THREADS_PER_CLIENT threads, each one keep-alive connection sending its share of `events` in turn."""
    results: list[list[tuple[int, float]]] = [[] for _ in range(THREADS_PER_CLIENT)]

    def run(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for body, signature in events[index::THREADS_PER_CLIENT]:
            sent = time.perf_counter()
            try:
                conn.request("POST", PATH, body, {"X-Webhook-Signature": signature,
                                                  "Content-Type": "application/json"})
                answer = conn.getresponse()
                answer.read()
                status = answer.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                status = 0
            results[index].append((status, (time.perf_counter() - sent) * 1000))
        conn.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS_PER_CLIENT)]
    pipe.send("ready")
    start.wait()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pipe.send([result for per_thread in results for result in per_thread])


def measure(backend: str, url: str | None, webhooks: int, offset: int) -> Case:
    spawn = multiprocessing.get_context("spawn")
    per_client = webhooks // CLIENT_PROCESSES
    with server(url) as (port, control):
        start = spawn.Event()
        pipes, clients = [], []
        for c in range(CLIENT_PROCESSES):
            ours, theirs = spawn.Pipe()
            process = spawn.Process(target=client_process, daemon=True, args=(
                port, signed_events(per_client, offset + c * per_client), start, theirs))
            process.start()
            pipes.append(ours)
            clients.append(process)
        for pipe in pipes:  # every client process is up and waiting on `start`
            pipe.recv()
        control.send("go")
        control.recv()
        began = time.perf_counter()
        start.set()
        results = [result for pipe in pipes for result in pipe.recv()]
        seconds = time.perf_counter() - began
        control.send("stop")
        cpu = control.recv()
        for process in clients:
            process.join(timeout=10)
    ok = sum(1 for status, _ in results if 200 <= status < 300)
    return Case(backend, len(results), ok, len(results) - ok, seconds, [ms for _, ms in results], cpu,
                stored=None if url is None else stored(url))


def stored(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.scalar(select(func.count()).select_from(inbound_webhooks)
                               .where(inbound_webhooks.c.signature_valid.is_(True)))
    finally:
        engine.dispose()


# -- the report -------------------------------------------------------------------------------------

def row(case: Case, ceiling: Case | None) -> str:
    target = "-"
    if ceiling is not None:
        ok = (case.per_s >= TARGET_PER_S and case.errors == 0 and case.stored == case.ok
              and case.percentile(0.99) < TARGET_P99_MS)
        target = verdict(ok)
    ratio = f"{case.per_s / ceiling.per_s:5.2f}" if ceiling else "    -"
    return (f"{case.backend:<11}{case.requests:>9}{case.seconds:>8.2f}{case.per_s:>9,.0f}"
            f"{statistics.median(case.latencies_ms):>8.2f}{case.percentile(0.99):>8.2f}{case.errors:>7}"
            f"{'-' if case.stored is None else case.stored:>8}{'-' if case.stored is None else case.ok - case.stored:>6}"
            f"{ratio:>7}{case.server_cpu_seconds * 1000 / max(case.requests, 1):>8.3f}  {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_database_options(parser)
    parser.add_argument("--webhooks", type=int, default=10_000, help="webhooks per case")
    parser.add_argument("--rounds", type=int, default=2, help="ceiling + receiver pairs per backend")
    args = parser.parse_args()
    backends = ["sqlite"] + ([] if args.skip_pg else ["postgresql"])
    print(machine(None if args.skip_pg else args.pg_url, f"waitress {version('waitress')}"))
    print(f"{args.webhooks} signed, distinct webhooks per case from {CLIENT_PROCESSES * THREADS_PER_CLIENT} "
          f"keep-alive clients; each receiver right after its ceiling (the same clients, a do-nothing route)")
    header = (f"{'backend':<11}{'requests':>9}{'seconds':>8}{'2xx/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'errors':>7}"
              f"{'stored':>8}{'lost':>6}{'ratio':>7}{'cpu ms':>8}  target >= {TARGET_PER_S:,.0f}/s, p99 < "
              f"{TARGET_P99_MS:.0f} ms, 0 lost, 0 errors")
    print(header)
    print("-" * len(header))
    offset = 0
    for _ in range(args.rounds):
        for backend in backends:
            with scratch_database(backend, args.pg_url, "bench_receiver") as url:
                ceiling = measure("ceiling", None, args.webhooks, offset)
                print(row(ceiling, None), flush=True)
                print(row(measure(backend, url, args.webhooks, offset), ceiling), flush=True)
            offset += args.webhooks
    print("(cpu ms: the server process's CPU time per request; ratio: 2xx/s over the ceiling's)")


if __name__ == "__main__":
    main()
