"""Every step of an MTN order's life is one INFO line with its reference and a masked phone, logged once by
whoever wrote it (submit, stored webhooks, reconciliation, the lease rescuer), and no log line carries a phone
in clear."""
from __future__ import annotations

import logging
from collections import Counter

import pytest

from jobs import rescue_leases
from reconciler.config import Config

from tests.factories import add_mtn_orders, job_context
from tests.providers.mtn.flow import Flow, settings

PHONES = {"shop-1": "+233 24 123 4567", "shop-2": "020 987 6543", "shop-3": "0551112222", "shop-4": "0539998888",
          "shop-5": "0595554444"}
CLEAR = ("1234567", "9876543", "5511122", "5399988", "5955544")  # the middle digits no masked phone shows


def test_each_step_of_each_order_is_one_info_line_with_a_masked_phone(flow: Flow, caplog: pytest.LogCaptureFixture
                                                                     ) -> None:
    caplog.set_level(logging.INFO)
    flow.config = settings(flow.config, retry_schedule_seconds=(),  # an order proven absent is dead at once
                           bundles={**flow.config.mtn.bundles, 7: 35.0})  # 7 GB: priced here, not sold there
    flow.__post_init__()
    order = {key: {"shop_order_id": key, "recipient_phone": phone, "size_gb": 5} for key, phone in PHONES.items()}
    order["shop-3"]["size_gb"] = 7  # a plan the reseller does not sell: 404, failed
    flow.add(order["shop-1"], order["shop-2"], order["shop-3"])
    flow.submit()
    flow.fake.configure(error_5xx_after_create_rate=1.0)  # created, then 500: in doubt
    flow.add(order["shop-4"])
    flow.submit()
    flow.fake.configure(error_5xx_after_create_rate=0.0, error_5xx_rate=1.0)  # not created, 500: in doubt too
    flow.add(order["shop-5"])
    flow.submit()
    flow.fake.configure(error_5xx_rate=0.0)
    flow.reconcile()  # shop-4 is in the history: submitted after all
    flow.fake.process_pending()
    flow.apply_webhooks()  # shop-1 and shop-4 completed
    flow.clock.advance(flow.config.mtn.in_doubt_grace_seconds + 1)
    flow.reconcile()  # shop-5 never reached the reseller, and has no retry left: dead
    flow.fake.reverse(int(flow.orders()["shop-1"]["provider_order_id"]))
    flow.apply_webhooks()
    flow.reconcile()
    flow.apply_webhooks()  # nothing new: no line twice

    steps = [r for r in caplog.records if r.name == "reconciler.providers.mtn.lifecycle"]
    assert Counter((r.order_ref, r.step) for r in steps) == Counter({
        ("shop-1", "submitted"): 1, ("shop-1", "completed"): 1, ("shop-1", "reversed"): 1,
        ("shop-2", "rejected"): 1, ("shop-3", "failed"): 1,
        ("shop-4", "in doubt"): 1, ("shop-4", "submitted"): 1, ("shop-4", "completed"): 1,
        ("shop-5", "in doubt"): 1, ("shop-5", "dead"): 1})
    assert {r.levelno for r in steps} == {logging.INFO}
    assert {r.order_ref: r.phone for r in steps} == {
        "shop-1": "024****567", "shop-2": "020****543", "shop-3": "055****222", "shop-4": "053****888",
        "shop-5": "059****444"}
    reversed_line = next(r.getMessage() for r in steps if r.step == "reversed")
    assert reversed_line.startswith("MTN order shop-1 reversed (phone 024****567, 5 GB, reseller order ")
    assert "Reversed by the network" in reversed_line
    failed_line = next(r.getMessage() for r in steps if r.step == "failed")
    assert failed_line.endswith(": Plan not found: 7GB")

    everything = caplog.text + "".join(str(vars(r)) for r in caplog.records)
    assert not [digits for digits in CLEAR if digits in everything]



def test_an_order_whose_sender_died_is_logged_in_doubt_when_its_lease_is_rescued(engine, clock, caplog) -> None:
    caplog.set_level(logging.INFO)
    [order] = add_mtn_orders(engine, 1, due_at=clock.now)  # to 0241234567
    config = Config()
    died = job_context(engine, config, clock, worker="died-mid-send")
    assert [r["id"] for r in died.outboxes["mtn_orders"].claim(1)] == [order]
    clock.advance(config.daemon.lease_seconds + 1)
    rescue_leases.run(job_context(engine, config, clock, worker="rescuer"))
    rescue_leases.run(job_context(engine, config, clock, worker="rescuer"))  # nothing more to rescue
    [line] = [r for r in caplog.records if r.name == "reconciler.providers.mtn.lifecycle"]
    assert line.getMessage() == ("MTN order shop-0 in doubt (phone 024****567, 1 GB, cause lease_expired): "
                                 "lease of died-mid-send expired")
