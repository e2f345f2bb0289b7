"""Zoho's per-minute limit held by replicas together: three clients, each with its own engine, calling as fast
as they can never make the fake Zoho count more than the limit in any window, and never get a 429; three
replicas running the submit job drain orders over several windows the same way, and lose none."""
from __future__ import annotations

import dataclasses
import threading
from collections import Counter

from prometheus_client import REGISTRY

from reconciler.config import Config, DaemonConfig, PartnerConfig
from reconciler.engine.schema import COMPLETED, ORDER_STATUSES
from reconciler.providers.zoho.client import ZohoClient
from reconciler.providers.zoho.drain import drain_as_replica
from reconciler.providers.zoho.fake import FakeZoho
from reconciler.providers.zoho.orders import enqueue_zoho, zoho_orders_in

from tests.providers.zoho.flow import PARTNER_SECRET, zoho_settings
from tests.providers.zoho.support import config_for
from tests.racing import together

LIMIT = 100
WINDOW_SECONDS = 6.0  # Zoho's minute, shortened for the test: client and fake are told the same
CALLS = 150  # the second window is reached only by waiting


def test_three_replicas_as_fast_as_they_can_stay_under_the_limit_in_every_window(make_fake_zoho, replicas) -> None:
    fake: FakeZoho = make_fake_zoho()
    fake.configure(requests_per_minute=LIMIT, rate_window_seconds=WINDOW_SECONDS, requests_per_day=10_000)
    config = config_for(fake, requests_per_minute=LIMIT, rate_window_seconds=WINDOW_SECONDS, requests_per_day=10_000)
    clients = [ZohoClient(config, engine, worker) for engine, worker in replicas[:3]]
    waits_before = REGISTRY.get_sample_value("reconciler_zoho_rate_limit_waits_total") or 0.0
    remaining = iter(range(CALLS))
    lock = threading.Lock()

    def drain(client: ZohoClient) -> None:
        while True:
            with lock:
                if next(remaining, None) is None:
                    return
            client.find_salesorder("T2M-1")

    together(*(lambda c=c: drain(c) for c in clients for _ in range(2)))  # raises what failed
    assert fake.api_calls == CALLS and fake.answered_429 == 0
    assert fake.busiest_window(WINDOW_SECONDS) <= LIMIT
    # the callers did press against the limit (how close to it they got is bench/zoho_rate.py's business)
    assert (REGISTRY.get_sample_value("reconciler_zoho_rate_limit_waits_total") or 0.0) > waits_before


ORDERS = 30  # 4 calls each (find the customer, create it, create the sales order, mark it open): 120 calls
ORDER_LIMIT, ORDER_WINDOW_SECONDS = 25, 2.0  # 100 a minute, accelerated: the 120 calls need five windows


def test_three_replicas_draining_orders_stay_under_the_limit_in_every_window_and_lose_none(
        engine, make_fake_zoho, replicas) -> None:
    fake: FakeZoho = make_fake_zoho()
    fake.configure(requests_per_minute=ORDER_LIMIT, rate_window_seconds=ORDER_WINDOW_SECONDS,
                   requests_per_day=10_000)
    config = dataclasses.replace(
        Config(),
        daemon=dataclasses.replace(DaemonConfig(), batch_size=2),  # small batches: every replica gets orders
        zoho=zoho_settings(fake, requests_per_minute=ORDER_LIMIT, rate_window_seconds=ORDER_WINDOW_SECONDS,
                           requests_per_day=10_000, poll_interval_seconds=0.05),
        # the Zoho flow is on only with a partner URL; no delivery job runs here, so nothing is sent to it
        partner=dataclasses.replace(PartnerConfig(), webhook_url="http://127.0.0.1:9/t2mobile/events",
                                    webhook_secret=PARTNER_SECRET))
    orders = [f"T2M-RATE-{i:03d}" for i in range(ORDERS)]
    for i, order_id in enumerate(orders):
        enqueue_zoho(engine, order_id, "ZOHO_CRM_STD", "1_MONTH", f"CUST-{i}", f"Customer {i:03d}",
                     f"customer{i:03d}@example.ng")
    stop = threading.Event()
    failures: list[BaseException] = []

    def replica(replica_engine, worker_id: str) -> None:
        try:
            drain_as_replica(config, replica_engine, worker_id=worker_id, stop=stop)
        except BaseException as exc:  # noqa: B902 (collected for the assertion)
            failures.append(exc)

    threads = [threading.Thread(target=replica, args=r) for r in replicas[:3]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    stop.set()  # a replica still busy after a minute has failed the test: it stops at once
    for thread in threads:
        thread.join(10)
    assert failures == []
    assert fake.answered_429 == 0
    assert fake.busiest_window(ORDER_WINDOW_SECONDS) <= ORDER_LIMIT
    assert fake.api_calls == 4 * ORDERS  # more than four windows' worth: the replicas did wait for room
    assert {o["order_id"]: o["status"] for o in zoho_orders_in(engine, ORDER_STATUSES)} == dict.fromkeys(
        orders, COMPLETED)
    assert Counter(order["reference_number"] for order in fake.salesorders) == Counter(orders)  # one each
