"""The fake MTN reseller behaves like the real one, quirks included: real HTTP, no mocks."""
from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import random
import threading
import time
from datetime import datetime, timezone
from typing import Any, Iterator

import pytest
import requests

from reconciler.config import Config
from reconciler.providers.mtn.fake import COMPLETED_WORDS, FAILED_WORDS, PHP_WARNING, FakeMtn, MtnFaults

from tests.webhook_receiver import Receiver

KEY = "test-mtn-key"
SECRET = "test-mtn-webhook-secret"
FROZEN = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def shared_receiver() -> Iterator[Receiver]:
    r = Receiver()  # one for the module: closing a Receiver costs half a second
    yield r
    r.close()


@pytest.fixture
def receiver(shared_receiver: Receiver) -> Receiver:
    shared_receiver.requests.clear()  # each test's fake is stopped before the next starts: nothing arrives late
    return shared_receiver


@pytest.fixture
def fake(receiver: Receiver) -> Iterator[FakeMtn]:
    with FakeMtn(api_key=KEY, webhook_url=receiver.url("/api/webhook/mtn"), webhook_secret=SECRET,
                 balance=100.0, clock=lambda: FROZEN) as f:
        yield f


def order(fake: FakeMtn, size_gb: Any = 5, phone: Any = "0241234567", key: str = KEY,
          timeout: float = 5.0, **extra: Any) -> requests.Response:
    body = {"recipient_phone": phone, "network": "MTN", "size_gb": size_gb, **extra}
    return requests.post(f"{fake.url}/api/orders", json=body, headers={"X-API-KEY": key}, timeout=timeout)


def get(fake: FakeMtn, path: str) -> Any:
    response = requests.get(f"{fake.url}{path}", headers={"X-API-KEY": KEY}, timeout=5)
    assert response.status_code == 200
    return response.json()


def verified(body: bytes, signature: str) -> bool:
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


@pytest.mark.parametrize("shape", ["bare", "data", "orders"])
def test_created_orders_appear_in_history_newest_first_in_each_envelope(fake: FakeMtn, shape: str) -> None:
    fake.configure(history_shape=shape)
    first, second = order(fake, 5), order(fake, 2, phone="0551234567")
    assert first.status_code == 200 and first.json() == {"success": True, "order_id": 1001, "message": "Order placed"}
    assert second.json()["order_id"] == 1002

    history = get(fake, "/api/orders")
    entries = {"bare": lambda: history, "data": lambda: history["data"], "orders": lambda: history["orders"]}[shape]()
    if shape == "data":
        assert history["success"] is True
    assert [e["id"] for e in entries] == [1002, 1001]
    assert entries[1] == {"id": 1001, "status": "processing", "message": "Order is being processed", "amount": 25.0,
                          "recipient_phone": "0241234567", "plan_name": "MTN 5GB", "network": "MTN",
                          "size_mb": 5120, "created_at": FROZEN.isoformat(), "updated_at": FROZEN.isoformat()}
    assert fake.created_count == 2 and fake.create_requests == 2
    assert fake.orders[0]["id"] == 1001 and fake.order_state(1001) == "processing"


def test_history_may_be_cut_to_its_latest_orders(fake: FakeMtn) -> None:
    for phone in ("0241234567", "0551234567", "0591234567"):
        order(fake, 1, phone=phone)
    fake.configure(history_limit=2)
    assert [e["id"] for e in get(fake, "/api/orders")["data"]] == [1003, 1002]
    fake.configure(history_limit=None)
    assert [e["id"] for e in get(fake, "/api/orders")["data"]] == [1003, 1002, 1001]


def test_price_is_deducted_and_balance_may_be_a_string(fake: FakeMtn) -> None:
    order(fake, 5)
    assert get(fake, "/api/balance") == {"success": True, "balance": 75.0, "currency": "GHS"}
    fake.configure(balance_as_string=True)
    assert get(fake, "/api/balance")["balance"] == "75.00"


def test_created_status_can_be_201(fake: FakeMtn) -> None:
    fake.configure(success_status=201)
    assert order(fake).status_code == 201


@pytest.mark.parametrize("call, status", [
    pytest.param(lambda f: order(f, key="wrong"), 401, id="bad-key"),
    pytest.param(lambda f: requests.post(f"{f.url}/api/orders", json={}, timeout=5), 401, id="no-key"),
    pytest.param(lambda f: order(f, size_gb=50), 402, id="250-costs-more-than-100"),
    pytest.param(lambda f: order(f, size_gb=7), 404, id="no-7GB-plan"),
    pytest.param(lambda f: order(f, phone="+233241234567"), 400, id="phone-not-0XXXXXXXXX"),
    pytest.param(lambda f: order(f, size_gb="five"), 400, id="size-not-int"),
    pytest.param(lambda f: order(f, size_gb=0), 400, id="size-zero"),
    pytest.param(lambda f: order(f, network="VODAFONE"), 400, id="network"),
    pytest.param(lambda f: requests.post(f"{f.url}/api/orders", data=b"{not json", headers={"X-API-KEY": KEY},
                                         timeout=5), 400, id="not-json"),
])
def test_refusals_create_nothing(fake: FakeMtn, call: Any, status: int) -> None:
    response = call(fake)
    assert response.status_code == status
    assert response.json()["success"] is False and response.json()["message"]
    assert fake.created_count == 0 and fake.orders == [] and fake.balance == 100.0
    assert fake.create_requests == 1


def test_bad_key_on_reads(fake: FakeMtn) -> None:
    response = requests.get(f"{fake.url}/api/balance", headers={"X-API-KEY": "nope"}, timeout=5)
    assert response.status_code == 401


def test_noise_prefix_comes_before_the_json(fake: FakeMtn) -> None:
    fake.configure(noise_prefix=PHP_WARNING)
    response = order(fake)
    assert response.text.startswith("<br />\n<b>Warning</b>:")
    assert json.loads(response.text[len(PHP_WARNING):])["order_id"] == 1001
    balance = requests.get(f"{fake.url}/api/balance", headers={"X-API-KEY": KEY}, timeout=5)
    assert balance.text.startswith(PHP_WARNING)


def test_429_and_500_create_nothing_but_500_after_create_does(fake: FakeMtn) -> None:
    fake.configure(rate_limit_429_rate=1.0)
    assert order(fake).status_code == 429
    fake.configure(rate_limit_429_rate=0.0, error_5xx_rate=1.0)
    assert order(fake).status_code == 500
    assert fake.created_count == 0
    fake.configure(error_5xx_rate=0.0, error_5xx_after_create_rate=1.0)
    response = order(fake)
    assert response.status_code == 500 and response.json()["success"] is False
    assert fake.created_count == 1 and fake.balance == 75.0
    assert fake.create_requests == 3


def test_read_errors(fake: FakeMtn) -> None:
    fake.configure(read_error_5xx_rate=1.0)
    assert requests.get(f"{fake.url}/api/orders", headers={"X-API-KEY": KEY}, timeout=5).status_code == 500


def test_timeout_after_create_hides_a_created_order(fake: FakeMtn) -> None:
    fake.configure(timeout_after_create=1, timeout_sleep_seconds=1.0)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        order(fake, timeout=0.2)
    assert time.monotonic() - started < 0.9
    assert [e["id"] for e in get(fake, "/api/orders")["data"]] == [1001]
    assert fake.balance == 75.0
    assert order(fake).json()["order_id"] == 1002  # the count is used up: the next answer is prompt


def test_timeout_hangup_closes_without_answering(fake: FakeMtn) -> None:
    fake.configure(timeout_after_create_rate=1.0, timeout_sleep_seconds=0.0, timeout_hangup=True)
    with pytest.raises(requests.exceptions.ConnectionError):
        order(fake)
    assert fake.created_count == 1


def test_stop_does_not_wait_for_a_held_answer() -> None:
    fake = FakeMtn(faults=MtnFaults(timeout_after_create=1, timeout_sleep_seconds=30)).start()
    outcome: list[Any] = []
    client = threading.Thread(target=lambda: outcome.append(_attempt(fake)))
    client.start()
    assert fake.wait_for_orders(1)  # created, and now the answer is being held
    started = time.monotonic()
    fake.stop()
    client.join(5)
    assert time.monotonic() - started < 2
    assert outcome and isinstance(outcome[0], requests.exceptions.ConnectionError)


def _attempt(fake: FakeMtn) -> Any:
    try:
        return order(fake, timeout=10)
    except requests.RequestException as exc:
        return exc


def test_keep_alive_and_stop_cuts_idle_connections() -> None:
    fake = FakeMtn().start()
    port = int(fake.url.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    for _ in range(3):  # three requests on one connection: Content-Length is right and keep-alive works
        connection.request("GET", "/api/balance", headers={"X-API-KEY": "test-mtn-key"})
        response = connection.getresponse()
        assert response.status == 200 and json.loads(response.read())["balance"] == 1000.0
    fake.stop()
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        connection.request("GET", "/api/balance", headers={"X-API-KEY": "test-mtn-key"})
        connection.getresponse()
    connection.close()


def test_restart_keeps_url_and_orders(fake: FakeMtn) -> None:
    url = fake.url
    order(fake)
    fake.stop()
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{url}/api/balance", headers={"X-API-KEY": KEY}, timeout=5)
    fake.start()
    assert fake.url == url and [e["id"] for e in get(fake, "/api/orders")["data"]] == [1001]


def test_webhook_is_signed_over_the_raw_body(fake: FakeMtn, receiver: Receiver) -> None:
    order(fake)
    assert fake.process_pending() == [1001]
    assert fake.wait_for_webhooks(1)
    [hook] = receiver.requests
    assert hook.path == "/api/webhook/mtn"
    assert verified(hook.body, hook.headers["x-webhook-signature"])
    assert not verified(hook.body + b" ", hook.headers["x-webhook-signature"])
    event = json.loads(hook.body)
    assert event["event"] == "order.status_changed" and event["timestamp"] == FROZEN.isoformat()
    assert event["order"] == {**fake.orders[0], "status": "success"}
    assert set(event["order"]) == {"id", "status", "message", "amount", "recipient_phone", "plan_name",
                                   "network", "size_mb", "created_at", "updated_at"}
    assert fake.webhooks[0].status_code == 200 and fake.order_state(1001) == "completed"
    assert fake.process_pending() == []


def test_failed_orders_are_refunded(fake: FakeMtn, receiver: Receiver) -> None:
    fake.configure(failure_rate=1.0, failed_words=("rejected",))
    order(fake)
    assert fake.balance == 75.0
    fake.process_pending()
    assert fake.wait_for_webhooks(1)
    assert json.loads(receiver.requests[0].body)["order"]["status"] == "rejected"
    assert fake.order_state(1001) == "failed" and fake.balance == 100.0


def test_status_words_vary_but_stay_in_their_family(fake: FakeMtn) -> None:
    fake.configure(processing_words=("queued", "in_progress", "submitted"), completed_words=COMPLETED_WORDS,
                   failed_words=FAILED_WORDS, failure_rate=0.5)
    for _ in range(12):
        order(fake, 1)
    assert {o["status"] for o in fake.orders} <= {"queued", "in_progress", "submitted"}
    fake.process_pending()
    for o in fake.orders:
        family = COMPLETED_WORDS if fake.order_state(o["id"]) == "completed" else FAILED_WORDS
        assert o["status"] in family
    assert len({o["status"] for o in fake.orders}) > 2


def test_duplicate_and_dropped_webhooks(fake: FakeMtn, receiver: Receiver) -> None:
    fake.configure(webhook_duplicate_rate=1.0)
    order(fake)
    fake.process_pending()
    assert fake.wait_for_webhooks(2)
    assert len(receiver.requests) == 2 and receiver.requests[0].body == receiver.requests[1].body

    fake.configure(webhook_duplicate_rate=0.0, webhook_drop_rate=1.0)
    order(fake)
    fake.process_pending()
    assert len(receiver.requests) == 2 and fake.webhooks_dropped == 1
    assert get(fake, "/api/orders")["data"][0]["status"] == "success"  # only the history tells


def test_stale_processing_webhook_arrives_after_the_final_one(fake: FakeMtn, receiver: Receiver) -> None:
    fake.configure(webhook_stale_rate=1.0)
    order(fake)
    fake.process_pending()
    assert fake.wait_for_webhooks(2)
    statuses = [json.loads(r.body)["order"]["status"] for r in receiver.requests]
    assert statuses == ["success", "processing"]


def test_late_webhooks(fake: FakeMtn) -> None:
    fake.configure(webhook_delay_seconds=0.2)
    order(fake)
    fake.process_pending()
    assert fake.webhooks == []
    assert fake.wait_for_webhooks(1, timeout=3)


def test_reverse_flips_a_completed_order(fake: FakeMtn, receiver: Receiver) -> None:
    order(fake)
    with pytest.raises(ValueError):
        fake.reverse(1001)  # still processing
    fake.process_pending()
    fake.reverse(1001, status="refunded")
    assert fake.wait_for_webhooks(2)
    last = json.loads(receiver.requests[-1].body)["order"]
    assert last["status"] == "refunded" and last["id"] == 1001
    assert verified(receiver.requests[-1].body, receiver.requests[-1].headers["x-webhook-signature"])
    assert get(fake, "/api/orders")["data"][0]["status"] == "refunded"
    assert fake.order_state(1001) == "failed" and fake.balance == 100.0


def test_settle_one_order(fake: FakeMtn) -> None:
    order(fake)
    order(fake)
    fake.settle(1002, completed=False, message="Number not on MTN")
    assert fake.order_state(1002) == "failed" and fake.order_state(1001) == "processing"
    assert fake.orders[1]["message"] == "Number not on MTN"


def test_receiver_down_does_not_hurt_the_fake() -> None:
    with FakeMtn(webhook_url="http://127.0.0.1:9/unreachable", webhook_timeout_seconds=0.5) as fake:
        order(fake, key="test-mtn-key")
        fake.process_pending()
        [hook] = fake.webhooks
        assert hook.status_code is None and hook.error == "ConnectionError"
        assert order(fake, key="test-mtn-key").status_code == 200


def test_auto_processing_for_the_demo(receiver: Receiver) -> None:
    with FakeMtn(webhook_url=receiver.url(), auto_process_seconds=0.05) as fake:
        order(fake, key="test-mtn-key")
        assert fake.wait_for_webhooks(1, timeout=3)
        assert fake.order_state(1001) == "completed"


def test_a_seed_makes_outcomes_repeatable() -> None:
    def outcomes(seed: int) -> list[str]:
        with FakeMtn(rng=random.Random(seed), faults=MtnFaults(failure_rate=0.5)) as fake:
            for _ in range(10):
                order(fake, 1, key="test-mtn-key")
            fake.process_pending()
            return [fake.order_state(o["id"]) for o in fake.orders]

    assert outcomes(7) == outcomes(7)
    assert set(outcomes(7)) == {"completed", "failed"}


def test_configure_refuses_unknown_knobs(fake: FakeMtn) -> None:
    with pytest.raises(TypeError):
        fake.configure(error_rate=1.0)
    with pytest.raises(ValueError):
        fake.configure(history_shape="list")


def test_the_default_bundles_are_what_the_fake_sells_at_its_prices() -> None:
    assert Config().mtn.bundles == FakeMtn().bundles
