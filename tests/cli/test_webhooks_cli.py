"""Webhooks as ops live with them: list and replay from the CLI, metrics, and a daemon killed mid-delivery."""
from __future__ import annotations

import getpass
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter

from click.testing import CliRunner
from prometheus_client import REGISTRY
from sqlalchemy import select

from jobs import refresh_metrics
from jobs.deliver_webhooks import DeliverWebhooks
from reconciler.cli.root import cli
from reconciler.engine.events import PARTNER, Event
from reconciler.engine.schema import status_history

from tests.factories import job_context, queue_events
from tests.webhook_receiver import Answer, Receiver
from tests.webhooks.test_delivery import config, deliveries, new_secret


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_list_shows_attempts_and_replay_resends_with_the_same_webhook_id(engine, db_url, clock):
    receiver = Receiver(lambda _: Answer(500, body=b"db down"))
    try:
        cfg = config(partner_secret=new_secret(), breaker_failures=100)
        ids = queue_events(engine, [Event("ORDER_FAILED", PARTNER, receiver.url(), f"T2-{i}") for i in range(2)],
                           clock.now)
        job = None
        for _ in range(3):  # three attempts each, then dead (schedule 30, 120)
            job = DeliverWebhooks(cfg) if job is None else job
            job.run(job_context(engine, cfg, clock))
            clock.advance(200)
        assert {d["status"] for d in deliveries(engine)} == {"dead"}

        runner = CliRunner()
        env = {"RECONCILER_DATABASE_URL": db_url}
        listing = runner.invoke(cli, ["webhooks", "list", "--status", "dead", "--order", "T2-1"], env=env)
        assert listing.exit_code == 0, listing.output
        assert ids[1] in listing.output and ids[0] not in listing.output
        # One line per attempt: "#2 2026-11-23 08:59:27 500 2ms http_5xx db down" (the port may hold "500" too)
        attempts = re.findall(r"^\s+#(\d) \S+ \S+ 500 \d+ms http_5xx db down$", listing.output, re.MULTILINE)
        assert attempts == ["1", "2", "3"], listing.output
        as_json = [json.loads(line) for line in runner.invoke(
            cli, ["webhooks", "list", "--json"], env=env).output.splitlines()]
        assert {d["event_id"] for d in as_json} == set(ids) and len(as_json[0]["attempt_log"]) == 3

        receiver.answer = lambda _: Answer(200)
        replayed = runner.invoke(cli, ["webhooks", "replay", ids[0]], env=env)
        assert replayed.exit_code == 0 and "replaying 1 deliveries" in replayed.output
        assert runner.invoke(cli, ["webhooks", "replay", "--since", "1h", "--status", "dead"], env=env
                             ).output.strip() == "replaying 1 deliveries"
        assert runner.invoke(cli, ["webhooks", "replay", "msg_nope"], env=env).exit_code == 1
        assert runner.invoke(cli, ["webhooks", "replay"], env=env).exit_code == 2

        job.run(job_context(engine, cfg, clock))
        assert {d["status"] for d in deliveries(engine)} == {"delivered"}
        successes = [r.headers["webhook-id"] for r in receiver.requests[6:]]
        assert sorted(successes) == sorted(ids)  # the same webhook-id as the first time
    finally:
        receiver.close()


def test_replay_works_for_a_user_without_a_login_name(engine, db_url, clock, monkeypatch):
    [event_id] = queue_events(engine, [Event("ORDER_FAILED", PARTNER, "http://127.0.0.1:9/hook", "T2-1")], clock.now)

    def no_passwd_entry() -> str:  # what getpass does for a uid with no passwd entry and no USER, LOGNAME...
        raise KeyError("getpwuid(): uid not found: 12345")

    monkeypatch.setattr(getpass, "getuser", no_passwd_entry)
    env = {"RECONCILER_DATABASE_URL": db_url, "USER": None, "LOGNAME": None, "LNAME": None, "USERNAME": None}
    replayed = CliRunner().invoke(cli, ["webhooks", "replay", event_id], env=env)
    assert replayed.exit_code == 0, replayed.output
    with engine.connect() as conn:
        actors = conn.execute(select(status_history.c.cause, status_history.c.worker_id)
                              .where(status_history.c.table_name == "webhook_deliveries")).all()
    assert actors == [("replayed", "cli")]


def test_webhook_metrics(engine, clock):
    receiver = Receiver(lambda r: Answer(503) if r.path == "/down" else Answer(200))
    try:
        cfg = config(partner_secret=new_secret(), breaker_failures=2)
        delivered = sample("reconciler_webhook_deliveries_total", outcome="delivered")
        retried = sample("reconciler_webhook_deliveries_total", outcome="retry")
        failed_attempts = sample("reconciler_webhook_attempts_total", result="http_5xx")
        latencies = sample("reconciler_webhook_delivery_duration_seconds_count")
        queue_events(engine, [Event("ORDER_FULFILLED", PARTNER, receiver.url("/up"), "T2-1")]
                     + [Event("ORDER_FULFILLED", PARTNER, receiver.url("/down"), f"T2-{i}") for i in (2, 3, 4)],
                     clock.now)
        ctx = job_context(engine, cfg, clock)
        DeliverWebhooks(cfg).run(ctx)
        refresh_metrics.run(ctx)
        assert sample("reconciler_webhook_deliveries_total", outcome="delivered") == delivered + 1
        assert sample("reconciler_webhook_deliveries_total", outcome="retry") == retried + 2
        assert sample("reconciler_webhook_attempts_total", result="http_5xx") == failed_attempts + 2
        assert sample("reconciler_webhook_delivery_duration_seconds_count") == latencies + 3
        assert sample("reconciler_webhook_endpoints_paused") == 1  # /down: breaker open after 2 failures
    finally:
        receiver.close()


def test_a_daemon_killed_mid_delivery_resends_at_most_the_one_in_flight(engine, db_url, clock, tmp_path):
    in_flight, release, everything_sent = threading.Event(), threading.Event(), threading.Event()
    seen = Counter()

    def answer(received):
        event_id = received.headers["webhook-id"]
        seen[event_id] += 1
        # the event in flight at the crash is sent twice: its answer never reached the dead daemon
        if len(seen) == 5 and sum(seen.values()) == 6:
            everything_sent.set()
        if json.loads(received.body)["data"]["n"] == 2 and not in_flight.is_set():
            in_flight.set()
            return Answer(200, hang=release)  # the daemon dies while this POST is open
        return Answer(200)

    receiver = Receiver(answer)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(f"""database:
  url: {db_url}
partner:
  webhook_secret: ${{PARTNER_WEBHOOK_SECRET}}
  retry_schedule_seconds: [0.2]
mtn:
  connect_timeout_seconds: 0.5
  request_timeout_seconds: 1
admin:
  port: 0
receiver:
  port: 0
daemon:
  lease_seconds: 2
  rescue_interval_seconds: 0.2
webhooks:
  poll_interval_seconds: 0.05
  connect_timeout_seconds: 0.5
  timeout_seconds: 1
""")
    env = {**os.environ, "PARTNER_WEBHOOK_SECRET": new_secret()}
    ids = queue_events(engine, [Event("ORDER_FULFILLED", PARTNER, receiver.url(), "T2-9", {"n": i})
                                for i in range(5)], clock.now)

    def daemon() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "reconciler", "--config", str(config_file), "run"],
                                env=env, stderr=subprocess.DEVNULL)

    first = daemon()
    try:
        assert in_flight.wait(30), "the first daemon never got to the third event"
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        release.set()
        second = daemon()
        try:
            assert everything_sent.wait(30), f"sent so far: {dict(seen)}"
        finally:
            second.send_signal(signal.SIGTERM)  # a graceful stop finalises the delivery it is in the middle of
            assert second.wait(30) == 0
    finally:
        receiver.close()
        if first.poll() is None:
            first.kill()
    assert {d["status"] for d in deliveries(engine)} == {"delivered"}
    assert seen == {**{event_id: 1 for event_id in ids}, ids[2]: 2}
