"""The reseller's reports, in any order and any number, move an order only forward."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from reconciler.providers.mtn.client import parse_order
from reconciler.providers.mtn.settlement import settlement

NOW = datetime(2026, 11, 23, 12, tzinfo=timezone.utc)
WATCH = timedelta(hours=72)
WORDS = {"processing": ["processing", "queued", "in_progress"], "completed": ["success", "delivered", "fulfilled"],
         "failed": ["failed", "refunded", "cancelled"]}
reports = st.lists(st.sampled_from(sorted(WORDS)).flatmap(
    lambda state: st.tuples(st.just(state), st.sampled_from(WORDS[state]))), max_size=10)


@given(reports, st.sampled_from(["submitted", "in_doubt"]))
def test_reports_in_any_order_settle_an_order_once_and_only_a_reversal_reopens_it(said, start):
    order = {"id": 1, "status": start, "shop_order_id": "s-1", "size_gb": 5, "network": "MTN",
             "notify_url": "https://shop.example/hook", "completed_at": None}
    events = []
    for _, word in said:
        change = settlement(order, parse_order({"id": 77, "status": word}), NOW, WATCH, "webhook")
        if change is not None:
            order = {**order, "status": change.status, **change.fields}
            events += [event.type for event in change.events]

    finals = [state for state, _ in said if state != "processing"]
    if not finals:
        expected = "submitted" if said else start  # an in-doubt order seen processing was sent after all
        assert (order["status"], events) == (expected, [])
    elif finals[0] == "failed":
        assert (order["status"], events) == ("failed", ["order.failed"])
    elif "failed" in finals:
        assert (order["status"], events) == ("failed", ["order.completed", "order.reversed"])
    else:
        assert (order["status"], events) == ("completed", ["order.completed"])


def test_a_reversal_after_the_watch_window_is_ignored():
    order = {"id": 1, "status": "completed", "shop_order_id": "s-1", "size_gb": 5, "network": "MTN",
             "notify_url": None, "completed_at": NOW - WATCH - timedelta(seconds=1)}
    assert settlement(order, parse_order({"id": 77, "status": "refunded"}), NOW, WATCH, "history") is None
