"""`reconciler order show` after a real flow against the fake reseller, and `reconciler fake mtn` run by hand."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
from datetime import datetime

import pytest
import requests
from click.testing import CliRunner

from jobs.deliver_webhooks import DeliverWebhooks
from reconciler.cli.root import cli
from reconciler.config import NotifyConfig
from reconciler.engine.story import redact_url

from tests.conftest import FakeClock
from tests.providers.mtn.flow import KEY, Flow
from tests.webhook_receiver import Answer, Receiver


class TickingClock(FakeClock):
    """Each reading is a millisecond later, so every step of the flow has its own time."""

    def __call__(self) -> datetime:
        self.advance(0.001)
        return self.now


@pytest.fixture
def clock() -> TickingClock:
    return TickingClock()


def test_order_show_tells_one_orders_story_in_time_order(flow: Flow, db_url: str) -> None:
    shop = Receiver(lambda _: Answer(200, body=b'{"thanks": true}'))
    try:
        flow.config = dataclasses.replace(flow.config, notify=NotifyConfig(webhook_secret="whsec_" + "A" * 32))
        flow.__post_init__()
        flow.add({"recipient_phone": "0241234567", "size_gb": 5, "notify_url": shop.url()},
                 {"recipient_phone": "0551234567", "size_gb": 5, "notify_url": shop.url()})
        flow.submit()
        flow.fake.process_pending()
        flow.apply_webhooks()
        DeliverWebhooks(flow.config).run(flow.ctx)
    finally:
        shop.close()
    runner = CliRunner()
    env = {"RECONCILER_DATABASE_URL": db_url}

    shown = runner.invoke(cli, ["order", "show", "--json", "shop-1"], env=env)
    assert shown.exit_code == 0, shown.output
    story = json.loads(shown.output)
    assert (story["provider"], story["order"]["shop_order_id"], story["order"]["status"]) == ("mtn", "shop-1",
                                                                                              "completed")
    steps = story["story"]
    assert [s["kind"] for s in steps] == ["transition", "provider_call", "transition", "webhook_in", "transition",
                                         "event"]
    assert [(s["from"], s["to"], s["cause"]) for s in steps if s["kind"] == "transition"] == [
        ("queued", "in_flight", "claimed"), ("in_flight", "submitted", "submitted"),
        ("submitted", "completed", "webhook")]
    assert all(s["worker"] == "test-worker" for s in steps if s["kind"] == "transition")
    call = steps[1]
    assert (call["method"], call["url"], call["status_code"]) == ("POST", flow.fake.url + "/api/orders", 200)
    assert call["latency_ms"] >= 0 and '"order_id": ' in call["response_excerpt"]
    assert steps[3]["signature_valid"] and steps[3]["process_error"] is None
    assert '"status": "success"' in steps[3]["body_excerpt"]
    event = steps[5]
    assert (event["type"], event["status"], event["sequence"]) == ("order.completed", "delivered", 1)
    assert [(a["attempt"], a["status_code"], a["response_excerpt"]) for a in event["attempts"]] == [
        (1, 200, '{"thanks": true}')]
    assert [s["at"] for s in steps] == sorted(s["at"] for s in steps)
    assert KEY not in shown.output

    by_id = runner.invoke(cli, ["order", "show", str(story["id"])], env=env)
    assert by_id.exit_code == 0, by_id.output
    lines = by_id.output.splitlines()
    assert lines[0] == f"mtn order shop-1 (mtn_orders id {story['id']}): completed"
    timeline = [line for line in lines if re.match(r"\d{4}-\d\d-\d\d ", line)]
    assert [line.split()[2] for line in timeline] == ["status", "call", "status", "webhook", "status", "event"]
    assert "in_flight -> submitted  (submitted, by test-worker)" in timeline[2]
    assert f"POST {flow.fake.url}/api/orders -> 200 in " in timeline[1]
    assert "order.completed" in timeline[5] and "delivered, 1 attempt(s)" in timeline[5]
    assert re.search(r"attempt 1 at [\d:]+: 200 in \d+ ms", by_id.output)
    assert "shop-2" not in by_id.output and KEY not in by_id.output

    missing = runner.invoke(cli, ["order", "show", "nope"], env=env)
    assert missing.exit_code == 1 and "no order with id or reference 'nope'" in missing.output


def test_fake_mtn_runs_standalone_until_ctrl_c() -> None:
    fake = subprocess.Popen([sys.executable, "-m", "reconciler", "fake", "mtn", "--port", "0", "--balance", "250",
                             "--faults", "balance_as_string=true"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        printed = dict(line.strip().split("=", 1) for line in (fake.stdout.readline() for _ in range(4))
                       if line.startswith("RECONCILER_"))
        assert set(printed) == {"RECONCILER_MTN_BASE_URL", "RECONCILER_MTN_API_KEY", "RECONCILER_MTN_WEBHOOK_SECRET"}
        answer = requests.get(printed["RECONCILER_MTN_BASE_URL"] + "/api/balance", timeout=5,
                              headers={"X-API-KEY": printed["RECONCILER_MTN_API_KEY"]})
        assert answer.json() == {"success": True, "balance": "250.00", "currency": "GHS"}
        fake.send_signal(signal.SIGINT)
        assert fake.wait(timeout=10) == 0
        assert "stopped: 0 orders created" in fake.stderr.read()
    finally:
        if fake.poll() is None:
            fake.kill()
            fake.wait()


def test_fake_mtn_in_a_container_listens_on_every_address_with_the_key_the_daemon_is_given() -> None:
    shared = {"RECONCILER_MTN_API_KEY": "compose-key", "RECONCILER_MTN_WEBHOOK_SECRET": "compose-secret"}
    fake = subprocess.Popen([sys.executable, "-m", "reconciler", "fake", "mtn", "--host", "0.0.0.0", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**os.environ, **shared})
    try:
        printed = dict(line.strip().split("=", 1) for line in (fake.stdout.readline() for _ in range(4))
                       if line.startswith("RECONCILER_"))
        assert {key: printed[key] for key in shared} == shared
        other_address = printed["RECONCILER_MTN_BASE_URL"].replace("127.0.0.1", "127.0.0.2")  # not only loopback's .1
        answer = requests.get(other_address + "/api/balance", timeout=5, headers={"X-API-KEY": "compose-key"})
        assert answer.status_code == 200
    finally:
        fake.send_signal(signal.SIGINT)
        fake.wait(timeout=10)


def test_fake_zoho_in_a_container_listens_on_every_address() -> None:
    fake = subprocess.Popen([sys.executable, "-m", "reconciler", "fake", "zoho", "--host", "0.0.0.0", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        printed = dict(line.strip().split("=", 1) for line in (fake.stdout.readline() for _ in range(7))
                       if line.startswith("RECONCILER_"))
        other_address = printed["RECONCILER_ZOHO_ACCOUNTS_URL"].replace("127.0.0.1", "127.0.0.2")
        answer = requests.post(other_address + "/oauth/v2/token", timeout=5, data={
            "refresh_token": printed["RECONCILER_ZOHO_REFRESH_TOKEN"], "client_id": printed["RECONCILER_ZOHO_CLIENT_ID"],
            "client_secret": printed["RECONCILER_ZOHO_CLIENT_SECRET"], "grant_type": "refresh_token"})
        assert answer.status_code == 200 and "access_token" in answer.json()
    finally:
        fake.send_signal(signal.SIGINT)
        fake.wait(timeout=10)


def test_fake_mtn_refuses_an_unknown_fault() -> None:
    refused = CliRunner().invoke(cli, ["fake", "mtn", "--faults", "error_rate=0.5"])
    assert refused.exit_code == 2 and "a knob of MtnFaults" in refused.output


def test_a_provider_call_url_never_shows_a_token_or_secret() -> None:
    assert redact_url("https://accounts.zoho.com/oauth/v2/token?refresh_token=1000.abc&client_id=cid"
                      "&client_secret=s3cr3t&grant_type=refresh_token") == (
        "https://accounts.zoho.com/oauth/v2/token?refresh_token=<redacted>&client_id=cid"
        "&client_secret=<redacted>&grant_type=refresh_token")
