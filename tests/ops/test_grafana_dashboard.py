"""The Grafana dashboard: the fields Grafana needs, one datasource variable used by every panel, and every panel's
query run by a real Prometheus scraping a real daemon (assembled by reconciler.app) that drained MTN orders against
the fake reseller and T2Mobile orders against the fake Zoho: every query must return data."""
from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from sqlalchemy import func, insert, select

from reconciler.app import PROVIDERS, admin, assemble
from reconciler.config import load_config
from reconciler.engine.schema import TERMINAL_STATUSES, mtn_orders, zoho_orders
from reconciler.providers.mtn.fake import FakeMtn
from reconciler.providers.zoho.fake import FakeZoho
from reconciler.providers.zoho.orders import enqueue_zoho

from tests.ops.tools import ROOT, binary
from tests.test_architecture import readme_metric_catalogue
from tests.waiting import wait_for
from tests.webhook_receiver import Receiver

DASHBOARD = json.loads((ROOT / "ops" / "grafana" / "reconciler.json").read_text())
PANELS = [p for p in DASHBOARD["panels"] if p["type"] != "row"]
GRAFANA_VARIABLES = {"$__rate_interval": "30s", "$__interval": "15s"}
ORDERS = 12
LICENCE_ORDERS = 4
KEY, SECRET = "dashboard-key", "dashboard-webhook-secret"


def targets() -> list[dict[str, Any]]:
    return [target for panel in PANELS for target in panel["targets"]]


def metric_names(expr: str) -> set[str]:
    return {re.sub(r"_(bucket|count|sum)$", "", name) for name in re.findall(r"reconciler_\w+", expr)}


def test_the_dashboard_has_what_grafana_requires_and_one_datasource_variable_used_everywhere():
    assert isinstance(DASHBOARD["schemaVersion"], int) and DASHBOARD["title"] and DASHBOARD["uid"]
    ids = [panel["id"] for panel in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    [variable] = [v for v in DASHBOARD["templating"]["list"] if v["name"] == "datasource"]
    assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
    for panel in PANELS:
        assert set(panel) >= {"id", "type", "title", "gridPos", "datasource", "targets"}, panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"] and target["refId"] and target["expr"], panel["title"]


def test_the_dashboard_queries_only_metrics_in_the_catalogue():
    used = set().union(*(metric_names(target["expr"]) for target in targets()))
    assert used - set(readme_metric_catalogue()) == set()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    """A real Prometheus on 127.0.0.1 scraping one target every second, with a data dir of its own."""

    def __init__(self, tmp_path: Path, target: str) -> None:
        self.port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(f"global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n"
                          f"  - job_name: reconciler\n    static_configs: [{{targets: ['{target}']}}]\n")
        self.log_path = tmp_path / "prometheus.log"
        self.log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [binary("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"], stdout=self.log, stderr=subprocess.STDOUT)

    def query(self, expr: str) -> dict[str, Any]:
        answer = requests.get(f"http://127.0.0.1:{self.port}/api/v1/query", params={"query": expr}, timeout=10)
        return answer.json()

    def value(self, expr: str) -> float:
        """The first sample's value, or -1 while Prometheus is not up or has none."""
        try:
            result = self.query(expr).get("data", {}).get("result", [])
        except (requests.RequestException, ValueError):
            return -1.0
        return float(result[0]["value"][1]) if result else -1.0

    def log_tail(self) -> str:
        self.log.flush()
        return "Prometheus said: " + self.log_path.read_text(errors="replace")[-1500:]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        self.log.close()


@pytest.fixture
def scraped_daemon(engine, db_url: str, tmp_path: Path) -> Iterator[tuple[Prometheus, Any]]:
    """A daemon that has drained ORDERS MTN orders against the fake reseller and LICENCE_ORDERS T2Mobile orders
    against the fake Zoho (its events delivered to a partner that answers 200), scraped by a real Prometheus."""
    fake = FakeMtn(api_key=KEY, webhook_secret=SECRET, auto_process_seconds=0.3).start()
    zoho = FakeZoho().start()
    partner = Receiver()
    config = load_config(env={
        **zoho.environment(), "RECONCILER_ZOHO_POLL_INTERVAL_SECONDS": "0.1",
        "RECONCILER_PARTNER_WEBHOOK_URL": partner.url("/t2mobile/events"),
        "RECONCILER_PARTNER_WEBHOOK_SECRET": "whsec_ZGFzaGJvYXJkLXBhcnRuZXI=",
        "RECONCILER_DATABASE_URL": db_url, "RECONCILER_MTN_BASE_URL": fake.url, "RECONCILER_MTN_API_KEY": KEY,
        "RECONCILER_MTN_WEBHOOK_SECRET": SECRET, "RECONCILER_RECEIVER_HOST": "127.0.0.1",
        "RECONCILER_RECEIVER_PORT": "0", "RECONCILER_ADMIN_HOST": "127.0.0.1", "RECONCILER_ADMIN_PORT": "0",
        "RECONCILER_MTN_POLL_INTERVAL_SECONDS": "0.1", "RECONCILER_MTN_RECONCILE_INTERVAL_SECONDS": "1",
        "RECONCILER_DAEMON_METRICS_INTERVAL_SECONDS": "0.5", "RECONCILER_DAEMON_RESCUE_INTERVAL_SECONDS": "1",
        "RECONCILER_WEBHOOKS_POLL_INTERVAL_SECONDS": "0.2", "RECONCILER_NOTIFY_WEBHOOK_SECRET": "whsec_ZGFzaGJvYXJk",
        "RECONCILER_PARTNER_RETRY_SCHEDULE_SECONDS": "0.2"})
    assembly = assemble(config, engine)
    daemon = assembly.daemon()
    public = assembly.public_listener().start()
    fake.webhook_url = f"http://127.0.0.1:{public.port}/api/webhook/mtn"
    admin_http = admin(config, engine, alive=daemon.is_alive).start()
    prometheus = Prometheus(tmp_path, f"127.0.0.1:{admin_http.port}")
    shop = f"http://127.0.0.1:{free_port()}/notify"  # a shop that never answers: deliveries fail, then go dead
    runner = threading.Thread(target=daemon.run, name="dashboard-daemon")
    try:
        wait_for("Prometheus to scrape the daemon", lambda: prometheus.value('up{job="reconciler"}') == 1,
                 detail=prometheus.log_tail)
        finished = 'sum(reconciler_outbox_outcomes_total{table="%s"})'
        counts = {mtn_orders: ORDERS, zoho_orders: LICENCE_ORDERS}
        # the registry is the process's: other tests may have counted some (-1: no series yet)
        before = {table: max(prometheus.value(finished % table.name), 0.0) for table in counts}
        runner.start()
        with engine.begin() as conn:
            conn.execute(insert(mtn_orders), [{"shop_order_id": f"dash-{i}", "recipient_phone": f"02400{i:05d}",
                                               "size_gb": 1 + i % 3, "notify_url": shop} for i in range(ORDERS)])
        for i in range(LICENCE_ORDERS):
            enqueue_zoho(engine, f"T2M-DASH-{i}", "ZOHO_CRM_STD", "1_MONTH", f"CUST-{i}", f"Customer {i}",
                         f"customer{i}@example.ng")

        def drained() -> bool:
            with engine.connect() as conn:
                return all(conn.scalar(select(func.count()).where(table.c.status.in_(TERMINAL_STATUSES))) == count
                           for table, count in counts.items())
        wait_for("the daemon to settle every order", drained)
        for table, count in counts.items():
            wait_for(f"Prometheus to see every {table.name} row finished",
                     lambda: prometheus.value(finished % table.name) >= before[table] + count,
                     detail=lambda: f"{before[table]} + {count} expected, {prometheus.value(finished % table.name)}")
        wait_for("the partner to be told of every licence order", lambda: len(partner.requests) >= LICENCE_ORDERS)
        seen = prometheus.value('timestamp(up{job="reconciler"})')
        # rate() needs two samples of a series: a few scrapes more, so the newest series have them
        wait_for("three more scrapes", lambda: prometheus.value('timestamp(up{job="reconciler"})') >= seen + 3)
        yield prometheus, config
    finally:
        assembly.context.stop.set()
        if runner.is_alive():
            runner.join(30)
        prometheus.stop()
        admin_http.stop()
        public.stop()
        fake.stop()
        zoho.stop()
        partner.close()


def test_every_panel_query_runs_on_a_real_prometheus_scraping_a_real_daemon(scraped_daemon):
    prometheus, config = scraped_daemon
    assert [p.name for p in PROVIDERS if not p.configured(config)] == []  # every flow runs: every panel has data
    shown: dict[str, list[dict[str, Any]]] = {}  # panel title: the series its queries returned
    empty = []
    for panel in PANELS:
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            answer = prometheus.query(expr)
            assert answer["status"] == "success", (target["expr"], answer)
            if not answer["data"]["result"]:
                empty.append(expr)
            shown.setdefault(panel["title"], []).extend(answer["data"]["result"])
    assert empty == []
    # A gauge without labels has a sample from the daemon's start: the Zoho panels must show this run's work.
    values = {title: [float(series["value"][1]) for series in series_list] for title, series_list in shown.items()}
    assert values["Zoho daily quota"] == [4 * LICENCE_ORDERS, config.zoho.requests_per_day]  # 4 calls an order
    # (series of other tests in this process are there too, at a rate of 0: the registry is the process's)
    assert {(s["metric"]["operation"], s["metric"]["result"]) for s in shown["Zoho calls by result"]
            if float(s["value"][1]) > 0} == {
        ("find_contact", "ok"), ("create_contact", "ok"), ("create_salesorder", "ok"), ("mark_open", "ok")}
    assert 0 < values["Zoho token expires in"][0] <= 3600  # the token the daemon holds now
    assert {s["metric"].get("status"): float(s["value"][1]) for s in shown["Licences"]}["active"] == LICENCE_ORDERS
