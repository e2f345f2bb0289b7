"""Zoho's per-minute limit held by replicas together: three clients, each with its own engine, calling as fast
as they can never make the fake Zoho count more than the limit in any window, and never get a 429."""
from __future__ import annotations

import threading

from prometheus_client import REGISTRY

from reconciler.providers.zoho.client import ZohoClient
from reconciler.providers.zoho.fake import FakeZoho

from tests.providers.zoho.support import config_for

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
    failures: list[BaseException] = []

    def drain(client: ZohoClient) -> None:
        while True:
            with lock:
                if next(remaining, None) is None:
                    return
            try:
                client.find_salesorder("T2M-1")
            except BaseException as exc:  # noqa: B902 (collected for the assertion)
                failures.append(exc)

    threads = [threading.Thread(target=drain, args=(client,)) for client in clients for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert fake.api_calls == CALLS and fake.answered_429 == 0
    assert fake.busiest_window(WINDOW_SECONDS) <= LIMIT
    # the callers did press against the limit (how close to it they got is bench/zoho_rate.py's business)
    assert (REGISTRY.get_sample_value("reconciler_zoho_rate_limit_waits_total") or 0.0) > waits_before
