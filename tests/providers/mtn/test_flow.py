"""The MTN flow against the fake reseller (a real HTTP server) on SQLite and PostgreSQL: submit, webhooks,
reconciliation, pauses (the `flow` fixture is in tests/providers/mtn/flow.py)."""
from __future__ import annotations

import json
import logging
import threading
from datetime import timedelta

import pytest
import requests
from prometheus_client import REGISTRY
from sqlalchemy import Engine, insert, select

from jobs import rescue_leases
from jobs.submit_mtn import SubmitMtn
from reconciler.config import Config
from reconciler.coordination.pauses import Pauses
from reconciler.engine.db import make_engine
from reconciler.engine.schema import api_calls, inbound_webhooks, mtn_orders, status_history, webhook_deliveries
from reconciler.engine.stats import table_stats
from reconciler.http.client import MAX_RETRY_AFTER_SECONDS
from reconciler.providers.mtn.client import mtn_client

from tests.factories import add_mtn_orders, job_context
from tests.providers.mtn.flow import KEY, Flow, settings
from tests.racing import together


def test_orders_are_sent_once_with_normalised_phones_and_completed_by_webhook(flow: Flow) -> None:
    flow.add({"recipient_phone": "+233 24 123 4567", "size_gb": 5, "notify_url": "https://shop.example/hook"},
             {"recipient_phone": "554443322", "size_gb": 2},
             {"recipient_phone": "233-59-000-1111", "size_gb": 1})
    flow.submit()
    orders = flow.orders()
    assert {k: (o["status"], o["normalized_phone"]) for k, o in orders.items()} == {
        "shop-1": ("submitted", "0241234567"), "shop-2": ("submitted", "0554443322"),
        "shop-3": ("submitted", "0590001111")}
    assert sorted(o["recipient_phone"] for o in flow.fake.orders) == ["0241234567", "0554443322", "0590001111"]
    assert {o["provider_order_id"] for o in orders.values()} == {str(o["id"]) for o in flow.fake.orders}

    flow.fake.process_pending()
    flow.apply_webhooks()
    assert set(flow.statuses().values()) == {"completed"}
    assert flow.events() == [("shop-1", "order.completed")]  # only shop-1 gave a notify_url
    assert flow.fake.create_requests == 3
    flow.submit()
    assert flow.fake.create_requests == 3


def test_bad_recipients_are_rejected_with_a_reason_before_any_api_call(flow: Flow) -> None:
    flow.add({"recipient_phone": "12345", "size_gb": 1, "notify_url": "https://shop.example/hook"},
             {"recipient_phone": "0201234567", "size_gb": 1},
             {"recipient_phone": "0241234567", "network": "Glo", "size_gb": 1},
             {"recipient_phone": "0241234567", "size_gb": 0})
    flow.submit()
    assert {k: (o["status"], o["reject_reason"]) for k, o in flow.orders().items()} == {
        "shop-1": ("rejected", "invalid_phone"), "shop-2": ("rejected", "network_mismatch"),
        "shop-3": ("rejected", "unsupported_network"), "shop-4": ("rejected", "invalid_size")}
    assert flow.fake.create_requests == 0
    assert flow.events() == [("shop-1", "order.rejected")]


def test_a_missing_phone_network_or_size_is_rejected_in_words_never_none(flow: Flow) -> None:
    flow.add({"recipient_phone": None, "size_gb": 1}, {"recipient_phone": "0241234567", "network": None, "size_gb": 1},
             {"recipient_phone": "0241234567", "size_gb": None})
    flow.submit()
    assert {k: (o["reject_reason"], o["last_error"]) for k, o in flow.orders().items()} == {
        "shop-1": ("invalid_phone", "no phone number given"), "shop-2": ("unsupported_network", "no network given"),
        "shop-3": ("invalid_size", "no size_gb given")}


def test_with_the_prefix_check_off_a_ported_number_is_sent(flow: Flow) -> None:
    flow.config = settings(flow.config, check_network_prefix=False)
    flow.__post_init__()
    flow.add({"recipient_phone": "0201234567", "size_gb": 1})
    flow.submit()
    assert flow.statuses() == {"shop-1": "submitted"}


def test_one_unsettled_order_per_recipient_and_size(flow: Flow) -> None:
    flow.add({"recipient_phone": "0241234567", "size_gb": 5}, {"recipient_phone": "+233241234567", "size_gb": 5},
             {"recipient_phone": "0241234567", "size_gb": 2})
    flow.submit()
    orders = flow.orders()
    assert {k: o["status"] for k, o in orders.items()} == {"shop-1": "submitted", "shop-2": "queued",
                                                           "shop-3": "submitted"}
    assert orders["shop-2"]["attempts"] == 0  # waiting is not an attempt

    flow.fake.process_pending()
    flow.apply_webhooks()
    flow.clock.advance(flow.config.mtn.reconcile_interval_seconds)
    flow.submit()
    assert flow.statuses()["shop-2"] == "submitted"
    assert flow.fake.created_count == 3


def test_a_timeout_after_creating_is_in_doubt_and_history_settles_it_without_a_second_order(flow: Flow) -> None:
    flow.fake.configure(timeout_after_create=1, timeout_sleep_seconds=3, webhook_drop_rate=1.0)
    flow.add({"recipient_phone": "0241234567", "size_gb": 5, "notify_url": "https://shop.example/hook"})
    flow.submit()
    assert flow.statuses() == {"shop-1": "in_doubt"}
    assert flow.fake.created_count == 1

    flow.reconcile()  # still processing at the reseller: adopted, now submitted with its id
    order = flow.orders()["shop-1"]
    assert (order["status"], order["provider_order_id"]) == ("submitted", str(flow.fake.orders[0]["id"]))
    flow.fake.process_pending()  # its webhook is dropped: only the history tells
    flow.clock.advance(60)
    flow.reconcile()
    assert flow.statuses() == {"shop-1": "completed"}
    assert flow.events() == [("shop-1", "order.completed")]
    assert flow.fake.create_requests == 1


def test_an_in_doubt_order_absent_from_history_is_sent_again_only_after_the_grace(flow: Flow) -> None:
    flow.fake.configure(error_5xx_rate=1.0)  # 500 before creating: we cannot know that
    flow.add({"recipient_phone": "0241234567", "size_gb": 5})
    flow.submit()
    assert flow.statuses() == {"shop-1": "in_doubt"}
    flow.fake.configure(error_5xx_rate=0.0)

    flow.clock.advance(flow.config.mtn.in_doubt_grace_seconds - 1)
    flow.reconcile()
    flow.submit()
    assert flow.statuses() == {"shop-1": "in_doubt"} and flow.fake.create_requests == 1

    flow.clock.advance(2)
    flow.reconcile()
    assert flow.statuses() == {"shop-1": "queued"}
    flow.submit()
    assert flow.statuses() == {"shop-1": "submitted"}
    assert (flow.fake.create_requests, flow.fake.created_count) == (2, 1)


def test_an_in_doubt_order_stays_in_doubt_while_the_history_is_cut_short_of_our_newer_orders(flow: Flow) -> None:
    flow.fake.configure(error_5xx_rate=1.0)
    flow.add({"recipient_phone": "0241234567", "size_gb": 5})
    flow.submit()
    flow.fake.configure(error_5xx_rate=0.0)
    flow.add(*({"shop_order_id": f"later-{i}", "recipient_phone": f"055000000{i}", "size_gb": 5} for i in range(3)))
    flow.submit()  # later-0 is the oldest of the three, and still processing at the reseller
    assert flow.statuses() == {"shop-1": "in_doubt", "later-0": "submitted", "later-1": "submitted",
                               "later-2": "submitted"}

    flow.fake.configure(history_limit=2)  # the history shows later-2 and later-1 only
    flow.clock.advance(flow.config.mtn.in_doubt_grace_seconds + 1)
    flow.reconcile()
    assert flow.statuses()["shop-1"] == "in_doubt"  # absent from a cut history proves nothing

    flow.fake.configure(history_limit=None)
    flow.reconcile()
    assert flow.statuses()["shop-1"] == "queued"


def test_an_in_doubt_order_that_two_history_orders_match_adopts_neither_and_stays_in_doubt(flow: Flow) -> None:
    flow.fake.configure(error_5xx_after_create_rate=1.0, webhook_drop_rate=1.0)  # created, then 500
    flow.add({"recipient_phone": "0241234567", "size_gb": 5})
    flow.submit()
    flow.fake.configure(error_5xx_after_create_rate=0.0)
    requests.post(f"{flow.fake.url}/api/orders", headers={"X-API-KEY": KEY}, timeout=5,  # the same, placed by hand
                  json={"recipient_phone": "0241234567", "network": "MTN", "size_gb": 5}).raise_for_status()
    flow.reconcile()
    order = flow.orders()["shop-1"]
    assert (order["status"], order["provider_order_id"]) == ("in_doubt", None)

    flow.fake.process_pending()
    flow.clock.advance(flow.config.mtn.in_doubt_grace_seconds + 1)
    flow.reconcile()  # past the grace, but the history shows orders that may be this one: never sent again
    order = flow.orders()["shop-1"]
    assert (order["status"], order["provider_order_id"]) == ("in_doubt", None)
    assert flow.fake.create_requests == 2


def test_a_webhook_for_an_order_still_in_doubt_waits_and_is_applied_once_the_order_is_known(flow: Flow) -> None:
    flow.fake.configure(timeout_after_create=1, timeout_sleep_seconds=3)
    flow.add({"recipient_phone": "0241234567", "size_gb": 5})
    flow.submit()
    flow.fake.process_pending()  # the completed webhook arrives while we only know "in doubt"
    flow.apply_webhooks()
    assert flow.statuses() == {"shop-1": "in_doubt"}

    flow.fake.configure(read_error_5xx_rate=1.0)  # reconcile cannot read the history this time
    flow.reconcile()
    assert flow.statuses() == {"shop-1": "in_doubt"}
    flow.fake.configure(read_error_5xx_rate=0.0)
    flow.reconcile()
    flow.apply_webhooks()
    assert flow.statuses() == {"shop-1": "completed"}


def test_a_stored_webhook_that_cannot_be_applied_is_closed_with_its_error_and_the_next_ones_apply(
        flow: Flow, caplog: pytest.LogCaptureFixture) -> None:
    flow.add({"recipient_phone": "0241234567", "size_gb": 5})
    flow.submit()
    provider_id = flow.orders()["shop-1"]["provider_order_id"]
    with flow.engine.begin() as conn:  # kept by an older release, say, whose parser was more lenient
        conn.execute(insert(inbound_webhooks), [
            {"provider": "mtn", "dedupe_key": f"old-{i}", "raw_body": body, "signature_valid": True,
             "provider_order_id": provider_id, "received_at": flow.clock.now - timedelta(minutes=1)}
            for i, body in enumerate(["not json", '{"event": "order.status_changed", "order": "gone"}'])])
    flow.fake.process_pending()  # the real webhook comes after them
    with caplog.at_level(logging.WARNING, logger="jobs.apply_mtn_webhooks"):
        flow.apply_webhooks()
        flow.apply_webhooks()
    assert flow.statuses() == {"shop-1": "completed"}
    with flow.engine.connect() as conn:
        closed = conn.execute(select(inbound_webhooks.c.dedupe_key, inbound_webhooks.c.process_error)
                              .where(inbound_webhooks.c.processed_at.is_not(None))
                              .order_by(inbound_webhooks.c.id)).all()
    assert [key for key, _ in closed][:2] == ["old-0", "old-1"] and len(closed) == 3
    assert all("ValueError" in error for _, error in closed[:2]) and closed[2].process_error is None
    assert len(caplog.records) == 2 and not any(r.exc_info for r in caplog.records)  # once each, no traceback


def test_duplicate_stale_and_reordered_webhooks_never_move_an_order_backwards(flow: Flow) -> None:
    flow.fake.configure(webhook_duplicate_rate=1.0, webhook_stale_rate=1.0)
    flow.add({"recipient_phone": "0241234567", "size_gb": 5, "notify_url": "https://shop.example/hook"})
    flow.submit()
    flow.fake.process_pending()
    flow.apply_webhooks()
    assert flow.statuses() == {"shop-1": "completed"}
    assert flow.events() == [("shop-1", "order.completed")]  # once, though the webhook came twice


def test_a_reversal_within_the_watch_window_fails_a_completed_order_and_tells_the_shop(flow: Flow) -> None:
    flow.add({"recipient_phone": "0241234567", "size_gb": 5, "notify_url": "https://shop.example/hook"},
             {"recipient_phone": "0551234567", "size_gb": 5, "notify_url": "https://shop.example/hook"})
    flow.submit()
    flow.fake.process_pending()
    flow.apply_webhooks()
    first, second = (int(flow.orders()[k]["provider_order_id"]) for k in ("shop-1", "shop-2"))

    flow.clock.advance(3600)
    flow.fake.configure(webhook_drop_rate=1.0)
    flow.fake.reverse(first)  # webhook dropped: the watch over history finds it
    flow.reconcile()
    assert flow.statuses()["shop-1"] == "failed"

    flow.clock.advance(flow.config.mtn.completed_watch_hours * 3600)
    flow.fake.reverse(second)  # too late: outside the window nobody is watching
    flow.reconcile()
    assert flow.statuses()["shop-2"] == "completed"
    assert flow.events() == [("shop-1", "order.completed"), ("shop-1", "order.reversed"),
                             ("shop-2", "order.completed")]


def test_a_size_not_on_sale_is_rejected_before_any_call(flow: Flow) -> None:
    flow.add({"recipient_phone": "0241234567", "size_gb": 7, "notify_url": "https://shop.example/hook"},
             {"recipient_phone": "0551234567", "size_gb": 2147483647})
    flow.submit()
    orders = flow.orders()
    assert {k: (o["status"], o["reject_reason"]) for k, o in orders.items()} == {
        "shop-1": ("rejected", "size_not_sold"), "shop-2": ("rejected", "size_not_sold")}
    assert orders["shop-1"]["last_error"].startswith("7 GB is not on sale (mtn.bundles: 1, 2, 3, 4, 5, 6, 8,")
    assert flow.fake.create_requests == 0 and not Pauses(flow.engine).get("mtn").paused
    assert _payload(flow, "shop-1")["data"]["reason"] == "size_not_sold"


def test_a_refused_order_fails_with_the_providers_message(flow: Flow) -> None:
    flow.config = settings(flow.config, bundles={**flow.config.mtn.bundles, 7: 35.0})  # the reseller stopped selling it
    flow.__post_init__()
    flow.add({"recipient_phone": "0241234567", "size_gb": 7, "notify_url": "https://shop.example/hook"})
    flow.submit()
    order = flow.orders()["shop-1"]
    assert (order["status"], order["last_error"]) == ("failed", "Plan not found: 7GB")
    assert flow.events() == [("shop-1", "order.failed")]
    payload = _payload(flow, "shop-1")
    assert payload["data"]["reason"] == "Plan not found: 7GB" and payload["type"] == "order.failed"


def test_a_bad_key_pauses_the_flow_and_a_working_key_resumes_it(flow: Flow) -> None:
    flow.config = settings(flow.config, max_in_flight=1)
    flow.__post_init__()
    flow.fake.api_key = "rotated"
    flow.add({"recipient_phone": "0241234567", "size_gb": 5}, {"recipient_phone": "0551234567", "size_gb": 5})
    flow.submit()
    assert set(flow.statuses().values()) == {"queued"}
    assert flow.fake.create_requests == 1  # the first 401 stopped the batch
    state = Pauses(flow.engine).get("mtn")
    assert (state.paused, state.reason) == (True, "unauthorised")
    assert paused_metric("unauthorised") == 1
    assert {o["attempts"] for o in flow.orders().values()} == {0}

    flow.clock.advance(flow.config.mtn.auth_pause_seconds + 1)
    flow.submit()  # the probe fails: still paused
    assert Pauses(flow.engine).get("mtn").paused and flow.fake.create_requests == 1
    flow.fake.api_key = KEY
    flow.clock.advance(flow.config.mtn.auth_pause_seconds + 1)
    flow.submit()
    assert set(flow.statuses().values()) == {"submitted"}
    assert not Pauses(flow.engine).get("mtn").paused
    assert paused_metric("unauthorised") == 0


def test_a_restart_with_a_fixed_key_resumes_within_one_probe(flow: Flow) -> None:
    flow.fake.api_key = "rotated"
    flow.add({"recipient_phone": "0241234567", "size_gb": 5})
    flow.submit()
    assert Pauses(flow.engine).get("mtn").reason == "unauthorised"
    flow.fake.api_key = KEY  # the operator fixed the key ...
    probes_before = flow.fake.requests_received.get("GET /api/balance", 0)
    flow.submit()  # ... but this process waits out its pause
    assert flow.statuses() == {"shop-1": "queued"}

    flow.submit_job = SubmitMtn(flow.config)  # ... and restarts the daemon: its first look probes at once
    flow.submit()
    assert flow.fake.requests_received["GET /api/balance"] == probes_before + 1
    assert flow.statuses() == {"shop-1": "submitted"} and not Pauses(flow.engine).get("mtn").paused
    assert paused_metric("unauthorised") == 0


def test_the_balance_and_its_threshold_are_exported_and_a_fall_below_is_logged_once(
        flow: Flow, caplog: pytest.LogCaptureFixture) -> None:
    flow.config = settings(flow.config, balance_alert_threshold=100.0)
    flow.__post_init__()
    readings = (150.0, 90.0, 80.0, 70.0, 120.0, 60.0, 50.0)
    with caplog.at_level(logging.INFO, logger="reconciler.providers.mtn.account"):
        for i, balance in enumerate(readings):
            flow.fake.balance = balance + 5  # this round's 1 GB order costs 5; the reading is taken before it
            flow.add({"shop_order_id": f"round-{i}", "recipient_phone": f"055000000{i}", "size_gb": 1})
            flow.clock.advance(flow.config.mtn.balance_cache_seconds + 1)
            flow.submit()
    assert balance_metric("reconciler_provider_balance") == 55.0  # the last reading
    assert balance_metric("reconciler_provider_balance_alert_threshold") == 100.0
    below = [r.getMessage() for r in caplog.records if "below mtn.balance_alert_threshold" in r.getMessage()]
    assert below == ["MTN balance 95.0 is below mtn.balance_alert_threshold 100: top up the reseller account",
                     "MTN balance 65.0 is below mtn.balance_alert_threshold 100: top up the reseller account"]


def test_when_a_401_pause_runs_out_only_one_of_two_replicas_probes_the_reseller(flow: Flow, db_url: str) -> None:
    flow.fake.api_key = "rotated"
    flow.add({"recipient_phone": "0241234567", "size_gb": 5})
    flow.submit()
    assert Pauses(flow.engine).get("mtn").reason == "unauthorised"
    flow.fake.api_key = KEY
    flow.clock.advance(flow.config.mtn.auth_pause_seconds + 1)

    engines = [make_engine(db_url) for _ in range(2)]
    try:
        replicas = [(job_context(e, flow.config, flow.clock, worker=f"replica-{i}"), SubmitMtn(flow.config))
                    for i, e in enumerate(engines)]
        probes_before = flow.fake.requests_received["GET /api/balance"]
        together(*(lambda ctx=ctx, job=job: job.run(ctx) for ctx, job in replicas))
    finally:
        for e in engines:
            e.dispose()
    assert flow.fake.requests_received["GET /api/balance"] == probes_before + 1
    assert not Pauses(flow.engine).get("mtn").paused
    assert flow.statuses() == {"shop-1": "submitted"}
    assert (flow.fake.create_requests, flow.fake.created_count) == (2, 1)


def test_only_what_the_balance_covers_is_sent_and_the_rest_waits_for_a_new_reading(flow: Flow) -> None:
    flow.fake.balance = 60.0  # 5 GB costs 25
    flow.add(*({"recipient_phone": f"024000000{i}", "size_gb": 5} for i in range(4)))
    flow.submit()
    assert sorted(flow.statuses().values()) == ["queued", "queued", "submitted", "submitted"]
    assert {o["attempts"] for o in flow.orders().values() if o["status"] == "queued"} == {0}

    flow.fake.balance = 1000.0
    flow.submit()  # the balance is re-read only when the waiting orders are due again
    assert flow.fake.create_requests == 2
    flow.clock.advance(flow.config.mtn.balance_cache_seconds + 1)
    flow.submit()
    assert set(flow.statuses().values()) == {"submitted"}
    assert flow.fake.create_requests == 4


def test_an_order_the_balance_does_not_cover_never_delays_ten_that_it_does(flow: Flow) -> None:
    flow.fake.balance = 300.0  # 100 GB costs 500; ten 5 GB orders cost 250
    flow.add({"shop_order_id": "big", "recipient_phone": "0241234567", "size_gb": 100},
             *({"shop_order_id": f"small-{i}", "recipient_phone": f"055000000{i}", "size_gb": 5} for i in range(10)))
    flow.submit()
    statuses = flow.statuses()
    assert statuses.pop("big") == "queued" and list(statuses.values()) == ["submitted"] * 10
    assert not Pauses(flow.engine).get("mtn").paused
    big = flow.orders()["big"]
    assert big["attempts"] == 0 and big["next_attempt_at"] > flow.clock()

    flow.clock.advance(flow.config.mtn.balance_cache_seconds + 1)
    flow.add({"shop_order_id": "later", "recipient_phone": "0241112222", "size_gb": 1})
    flow.submit()  # due again, still not covered: it waits alone again, and the newer order goes
    assert (flow.statuses()["big"], flow.statuses()["later"]) == ("queued", "submitted")
    assert flow.fake.create_requests == 11 and not Pauses(flow.engine).get("mtn").paused
    waiting = table_stats(flow.engine, mtn_orders, flow.clock()).oldest_waiting_age_seconds
    assert waiting >= flow.config.mtn.balance_cache_seconds  # `status` shows how long it has been waiting


def test_a_balance_that_covers_no_bundle_pauses_the_flow_until_a_top_up(flow: Flow) -> None:
    flow.fake.balance = 3.0  # the cheapest bundle costs 5
    flow.add({"recipient_phone": "0241234567", "size_gb": 1})
    flow.submit()
    assert flow.statuses() == {"shop-1": "queued"} and flow.fake.create_requests == 0
    assert Pauses(flow.engine).get("mtn").reason == "insufficient_balance"
    flow.fake.balance = 100.0
    flow.clock.advance(flow.config.mtn.balance_cache_seconds + 1)
    flow.submit()
    assert flow.statuses() == {"shop-1": "submitted"} and not Pauses(flow.engine).get("mtn").paused


def test_a_402_pauses_the_flow_without_spending_the_orders_attempt(flow: Flow) -> None:
    flow.config = settings(flow.config, bundles={5: 1.0})  # prices out of date: the reseller's 402 is the guard
    flow.__post_init__()
    flow.fake.balance = 10.0
    flow.add({"recipient_phone": "0241234567", "size_gb": 5})
    flow.submit()
    order = flow.orders()["shop-1"]
    assert (order["status"], order["attempts"], order["recipient_lock"]) == ("queued", 0, None)
    assert Pauses(flow.engine).get("mtn").reason == "insufficient_balance"


def test_429_backs_off_the_whole_flow(flow: Flow) -> None:
    flow.config = settings(flow.config, max_in_flight=1)
    flow.__post_init__()
    flow.fake.configure(rate_limit_429_rate=1.0)
    flow.add({"recipient_phone": "0241234567", "size_gb": 5}, {"recipient_phone": "0551234567", "size_gb": 5})
    flow.submit()
    assert flow.fake.create_requests == 1 and set(flow.statuses().values()) == {"queued"}
    flow.fake.configure(rate_limit_429_rate=0.0)
    flow.submit()
    assert flow.fake.create_requests == 1
    flow.clock.advance(flow.config.mtn.rate_limit_pause_seconds + 1)
    flow.submit()
    assert set(flow.statuses().values()) == {"submitted"}


def test_a_huge_retry_after_pauses_the_flow_for_at_most_an_hour(flow: Flow) -> None:
    flow.fake.configure(rate_limit_429_rate=1.0, retry_after="1e9")  # taken literally: every replica until 2058
    flow.add({"recipient_phone": "0241234567", "size_gb": 5})
    flow.submit()
    pause = Pauses(flow.engine).get("mtn")
    assert pause.reason == "rate_limited"
    assert pause.paused_until - flow.clock() <= timedelta(seconds=MAX_RETRY_AFTER_SECONDS)


def test_every_call_made_for_an_order_is_audited_with_that_order(flow: Flow) -> None:
    [row_id] = flow.add({"recipient_phone": "0241234567", "size_gb": 5})
    flow.submit()
    with flow.engine.connect() as conn:
        calls = conn.execute(select(api_calls.c.method, api_calls.c.url, api_calls.c.order_table,
                                    api_calls.c.order_id)).all()
    assert (("POST", f"{flow.fake.url}/api/orders", "mtn_orders", row_id) in calls
            and ("GET", f"{flow.fake.url}/api/balance", None, None) in calls)


def test_requests_per_second_holds_the_reseller_calls_of_every_replica_together(flow: Flow) -> None:
    config = settings(flow.config, requests_per_second=4.0)
    clients = [mtn_client(config, flow.engine) for _ in range(2)]  # two replicas' clients
    threads = [threading.Thread(target=lambda c=c: [c.balance() for _ in range(4)]) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    times = sorted(flow.fake.arrivals)
    assert len(times) == 8
    # grants are 1 s apart in fours; their arrival at the reseller may lag a grant by a few ms, so count 0.9 s
    assert max(sum(1 for t in times if start <= t < start + 0.9) for start in times) <= 4


def test_an_unreachable_reseller_is_retried_on_the_schedule_then_dead(flow: Flow) -> None:
    flow.config = settings(flow.config, retry_schedule_seconds=(10.0,))
    flow.__post_init__()
    flow.fake.stop()  # connection refused: certainly not sent
    flow.add({"recipient_phone": "0241234567", "size_gb": 5, "notify_url": "https://shop.example/hook"})
    flow.submit()
    order = flow.orders()["shop-1"]
    assert (order["status"], order["recipient_lock"]) == ("queued", None)
    flow.clock.advance(13)
    flow.submit()
    assert flow.statuses() == {"shop-1": "dead"}
    assert flow.events() == [("shop-1", "order.dead")]


def test_an_order_whose_sender_died_holding_its_lease_is_rescued_in_doubt_never_queued(engine: Engine, clock) -> None:
    [order] = add_mtn_orders(engine, 1, due_at=clock.now)
    config = Config()
    died = job_context(engine, config, clock, worker="died-mid-send")
    assert [r["id"] for r in died.outboxes["mtn_orders"].claim(1)] == [order]  # the POST may have gone out
    clock.advance(config.daemon.lease_seconds + 1)
    rescue_leases.run(job_context(engine, config, clock, worker="rescuer"))
    with engine.connect() as conn:
        rescued = conn.execute(select(mtn_orders).where(mtn_orders.c.id == order)).mappings().one()
        last = conn.execute(select(status_history.c.from_status, status_history.c.to_status, status_history.c.cause)
                            .order_by(status_history.c.id.desc()).limit(1)).one()
    assert (rescued["status"], rescued["locked_by"]) == ("in_doubt", None)
    assert "died-mid-send" in rescued["last_error"]
    assert tuple(last) == ("in_flight", "in_doubt", "lease_expired")


def test_every_transition_is_in_the_status_history(flow: Flow) -> None:
    flow.add({"recipient_phone": "0241234567", "size_gb": 5})
    flow.submit()
    flow.fake.process_pending()
    flow.apply_webhooks()
    with flow.engine.connect() as conn:
        history = conn.execute(select(status_history.c.from_status, status_history.c.to_status,
                                      status_history.c.cause).order_by(status_history.c.id)).all()
    assert history == [("queued", "in_flight", "claimed"), ("in_flight", "submitted", "submitted"),
                       ("submitted", "completed", "webhook")]


def balance_metric(name: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"provider": "mtn"})


def paused_metric(reason: str) -> float | None:
    return REGISTRY.get_sample_value("reconciler_provider_paused", {"provider": "mtn", "reason": reason})


def _payload(flow: Flow, order_ref: str) -> dict:
    with flow.engine.connect() as conn:
        return json.loads(conn.scalar(select(webhook_deliveries.c.payload)
                                      .where(webhook_deliveries.c.order_ref == order_ref)))


def test_a_webhook_for_an_order_we_never_had_is_kept_then_closed_after_the_watch_window(flow: Flow) -> None:
    outside = requests.post(f"{flow.fake.url}/api/orders", headers={"X-API-KEY": KEY}, timeout=5,
                            json={"recipient_phone": "0241234567", "network": "MTN", "size_gb": 5})
    flow.fake.process_pending()  # its webhook reaches us: stored, but no order of ours has that id
    flow.apply_webhooks()
    flow.reconcile()
    assert unprocessed(flow) == [str(outside.json()["order_id"])]
    flow.clock.advance(flow.config.mtn.completed_watch_hours * 3600 + 1)
    flow.reconcile()
    assert unprocessed(flow) == []


def unprocessed(flow: Flow) -> list[str]:
    with flow.engine.connect() as conn:
        return list(conn.scalars(select(inbound_webhooks.c.provider_order_id)
                                 .where(inbound_webhooks.c.processed_at.is_(None))))
