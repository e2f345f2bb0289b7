"""The Zoho flow's commands: enqueue zoho, order show, status (usage, token expiry, pause), resume zoho,
check-config --connect (against the fake Zoho, real HTTP), and the demo with both flows."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from reconciler.cli.root import cli
from reconciler.coordination.pauses import Pauses
from reconciler.engine.clock import utcnow
from reconciler.engine.schema import TERMINAL_STATUSES, operator_actions
from reconciler.providers.zoho.orders import find_zoho_order

from tests.providers.zoho.flow import PARTNER_SECRET, ZohoFlow

PARTNER_COLUMNS = {"order_id", "customer_id", "customer_name", "customer_email", "customer_phone", "product_id",
                   "tenure", "idempotency_key"}
ORDER = ("--product", "ZOHO_CRM_STD", "--tenure", "3_MONTHS", "--customer-id", "CUST-9", "--name", "Ada Obi",
         "--email", "ada@example.ng")


def invoke(db_url: str, *args: str, **env: str):
    return CliRunner().invoke(cli, list(args), env={"RECONCILER_DATABASE_URL": db_url, **env})


def flow_env(flow: ZohoFlow) -> dict[str, str]:
    """The daemon's view of the fake Zoho and the partner, as environment variables."""
    return {**flow.fake.environment(), "RECONCILER_PARTNER_WEBHOOK_URL": flow.config.partner.webhook_url,
            "RECONCILER_PARTNER_WEBHOOK_SECRET": PARTNER_SECRET, "RECONCILER_ZOHO_REQUEST_TIMEOUT_SECONDS": "1",
            "RECONCILER_ZOHO_CONNECT_TIMEOUT_SECONDS": "1"}


def test_enqueue_inserts_only_the_partner_columns(engine, db_url):
    result = invoke(db_url, "enqueue", "zoho", "--order-id", "T2M-77", *ORDER, "--phone", "+234 803 123 4567")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "T2M-77"
    row = find_zoho_order(engine, "T2M-77")
    assert {k: row[k] for k in PARTNER_COLUMNS} == {
        "order_id": "T2M-77", "customer_id": "CUST-9", "customer_name": "Ada Obi", "customer_email": "ada@example.ng",
        "customer_phone": "+234 803 123 4567", "product_id": "ZOHO_CRM_STD", "tenure": "3_MONTHS",
        "idempotency_key": None}
    assert (row["status"], row["attempts"], row["zoho_salesorder_id"]) == ("queued", 0, None)
    fresh = invoke(db_url, "enqueue", "zoho", *ORDER)
    assert fresh.exit_code == 0 and fresh.stdout.strip().startswith("cli-")
    again = invoke(db_url, "enqueue", "zoho", "--order-id", "T2M-77", *ORDER)
    assert again.exit_code == 1 and "exists already" in again.output


@pytest.mark.parametrize("change, option, message", [
    (("--product", "ZOHO_CRM_PRO"), "--product", "is not in the catalogue (partner.products: ZOHO_CRM_STD)"),
    (("--tenure", "2_WEEKS"), "--tenure", "is none of 1_MONTH, 3_MONTHS, 6_MONTHS, 12_MONTHS, 24_MONTHS"),
    (("--email", "ada.example.ng"), "--email", "is not an e-mail address"),
    (("--name", "  "), "--name", "no customer_name given"),
    (("--order-id", " "), "--order-id", "must not be empty"),
])
def test_enqueue_refuses_what_the_daemon_would_reject_with_one_line(engine, db_url, change, option, message):
    args = list(ORDER)
    if change[0] in args:
        args[args.index(change[0]) + 1] = change[1]
    else:
        args += list(change)
    result = invoke(db_url, "enqueue", "zoho", *args)
    assert result.exit_code == 2
    [line] = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert option in line and message in line


def test_order_show_tells_a_zoho_orders_story_by_any_of_its_references(zoho_flow: ZohoFlow, db_url):
    flow = zoho_flow
    order_id = flow.add()
    flow.submit()
    order = flow.order(order_id)
    for ref in (order_id, order["zoho_salesorder_id"]):
        shown = invoke(db_url, "order", "show", ref, "--json")
        assert shown.exit_code == 0, shown.output
        story = json.loads(shown.stdout)
        assert (story["provider"], story["order"]["order_id"], story["order"]["status"]) == (
            "zoho", order_id, "completed")
    kinds = [(e["kind"], e.get("to") or e.get("method") or e.get("type")) for e in story["story"]]
    assert ("transition", "completed") in kinds and ("event", "ORDER_FULFILLED") in kinds
    calls = [e["url"] for e in story["story"] if e["kind"] == "provider_call"]
    assert any("/salesorders" in url for url in calls)
    assert not any("oauthtoken" in json.dumps(e) for e in story["story"])


def test_status_shows_the_zoho_usage_token_expiry_and_pause_never_the_token(zoho_flow: ZohoFlow, db_url):
    flow = zoho_flow
    flow.add()
    flow.submit()
    shown = invoke(db_url, "status", "--json", **flow_env(flow))
    assert shown.exit_code == 0, shown.output
    zoho = json.loads(shown.stdout)["providers"]["zoho"]
    assert zoho["paused"] is False
    text = json.dumps(zoho)
    assert "expires" in text and flow.fake.api_calls > 0
    assert "oauthtoken" not in text.lower() and flow.fake.refresh_token not in text
    Pauses(flow.engine).pause("zoho", "daily_cap", utcnow().replace(year=2100), utcnow(), "used up")
    shown = invoke(db_url, "status", **flow_env(flow))
    assert "zoho: PAUSED (daily_cap) until 2100-" in shown.stdout


def test_resume_zoho_ends_its_pause_and_records_who(engine, db_url):
    Pauses(engine).pause("zoho", "unauthorised", utcnow().replace(year=2100), utcnow(), "refresh token refused")
    result = invoke(db_url, "resume", "zoho")
    assert result.exit_code == 0 and "zoho resumed (it was paused: unauthorised" in result.output
    assert not Pauses(engine).get("zoho").paused
    with engine.connect() as conn:
        [(action, target)] = conn.execute(operator_actions.select().with_only_columns(
            operator_actions.c.action, operator_actions.c.target)).all()
    assert (action, target) == ("resume", "zoho")
    assert invoke(db_url, "resume", "zoho").output.strip() == "zoho was not paused"


def test_check_config_connect_reaches_zoho(zoho_flow: ZohoFlow, db_url):
    flow = zoho_flow
    ok = invoke(db_url, "check-config", "--connect", **flow_env(flow))
    assert ok.exit_code == 0, ok.output
    assert re.search(r"^zoho: ok \(", ok.stdout, re.M)
    flow.fake.configure(refresh_refusal="invalid_code")  # the refresh token revoked, the access token expired
    flow.fake.expire_tokens()
    refused = invoke(db_url, "check-config", "--connect", **flow_env(flow))
    assert refused.exit_code == 1
    [line] = [line for line in refused.stdout.splitlines() if line.startswith("zoho:")]
    assert line.startswith("zoho: FAILED: ") and flow.fake.refresh_token not in line


def test_demo_runs_both_flows_and_settles_every_order(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # where the demo keeps its database while it runs
    done = subprocess.run([sys.executable, "-m", "reconciler", "demo", "--orders", "10", "--licences", "12"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "10 of 10 orders settled" in out and "12 of 12 T2Mobile licence orders settled" in out
    zoho = dict(re.findall(r"^  (\w+) +(\d+)$", out.split("T2Mobile licence orders settled")[1], re.M))
    assert set(zoho) <= set(TERMINAL_STATUSES) and sum(map(int, zoho.values())) == 12, out
    assert int(zoho["completed"]) == 11 and int(zoho["rejected"]) == 1, out
    assert "none created twice for one order" in out
    # customers 3 and 11 order twice (renewals); customer 7's first order names a product not in the catalogue
    assert ("partner events: 14 delivered, 0 dead; T2Mobile verified 14 signatures (ORDER_FAILED 1, "
            "ORDER_FULFILLED 11, SUBSCRIPTION_RENEWED 2)") in out, out
    # T2Mobile's side over HTTP: the retried POST is a replay, the refused order went in by a shop's INSERT
    assert ("13 POST /t2mobile/fulfilment (12 answered 202, 1 answered 400); T2M-DEMO-0001 posted twice with one "
            "Idempotency-Key: 1 stored answer replayed, no second order") in out, out
    assert "refused (400), then inserted by a shop system straight into zoho_orders: T2M-DEMO-0007: productId" in out
    assert "status read back through GET /t2mobile/orders/{orderId}: completed 11" in out
    assert not list(tmp_path.iterdir())  # nothing left behind
