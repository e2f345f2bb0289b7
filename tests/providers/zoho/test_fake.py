"""The fake Zoho over real HTTP, as a client that knows nothing of ours would see it: Zoho's OAuth rules, the
Books calls the flow makes, its limits and faults. Every request and answer is held to Zoho's documents."""
from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from reconciler.config import DEFAULT_PRODUCTS, env_var_for
from reconciler.providers.zoho.cli import fake_zoho
from reconciler.providers.zoho.fake import FakeZoho

from tests.providers.zoho.documents import ZohoInspector, require_documents

ITEM_ID = DEFAULT_PRODUCTS["ZOHO_CRM_STD"].item_id


def token_answer(fake: FakeZoho, **override: str) -> requests.Response:
    params = {"refresh_token": fake.refresh_token, "client_id": fake.client_id,
              "client_secret": fake.client_secret, "grant_type": "refresh_token", **override}
    return requests.post(fake.accounts_url + "/oauth/v2/token", params=params, timeout=5)


class Books:
    """Raw Books calls with one access token."""

    def __init__(self, fake: FakeZoho, token: str | None = None) -> None:
        self.fake = fake
        self.token = token if token is not None else token_answer(fake).json()["access_token"]

    def call(self, method: str, path: str, body: Any = None, **params: str) -> requests.Response:
        return requests.request(method, self.fake.api_url + path, json=body, timeout=5,
                                params={"organization_id": self.fake.organization_id, **params},
                                headers={"Authorization": f"Zoho-oauthtoken {self.token}"})

    def contact(self, email: str = "ada@example.com") -> str:
        answer = self.call("POST", "/contacts", {"contact_name": "Ada", "contact_type": "customer",
                                                  "contact_persons": [{"first_name": "Ada", "email": email,
                                                                       "is_primary_contact": True}]})
        assert answer.status_code == 201, answer.text
        return answer.json()["contact"]["contact_id"]

    def salesorder(self, customer_id: str, reference: str) -> requests.Response:
        return self.call("POST", "/salesorders", {"customer_id": customer_id, "reference_number": reference,
                                                   "line_items": [{"item_id": ITEM_ID, "rate": 15000.0,
                                                                   "quantity": 1}]})


def test_a_sales_order_is_created_found_by_reference_and_opened(fake_zoho: FakeZoho) -> None:
    books = Books(fake_zoho)
    customer = books.contact("ada@example.com")
    assert [c["contact_id"] for c in books.call("GET", "/contacts", email="ADA@example.com").json()["contacts"]] \
        == [customer]
    assert books.call("GET", "/contacts", email="bob@example.com").json()["contacts"] == []

    created = books.salesorder(customer, "T2M-1")
    assert created.status_code == 201 and created.json()["code"] == 0
    order = created.json()["salesorder"]
    assert (order["reference_number"], order["status"], order["customer_id"]) == ("T2M-1", "draft", customer)

    found = books.call("GET", "/salesorders", reference_number="T2M-1").json()["salesorders"]
    assert [o["salesorder_id"] for o in found] == [order["salesorder_id"]]
    assert books.call("GET", "/salesorders", reference_number="T2M-2").json()["salesorders"] == []

    opened = books.call("POST", f"/salesorders/{order['salesorder_id']}/status/open")
    assert (opened.status_code, opened.json()["code"]) == (201, 0)
    got = books.call("GET", f"/salesorders/{order['salesorder_id']}").json()
    assert got["salesorder"]["status"] == "open"
    assert fake_zoho.salesorders_for("T2M-1")[0]["status"] == "open"


def test_catalogue_items_organisation_and_unknown_ids(fake_zoho: FakeZoho) -> None:
    books = Books(fake_zoho)
    assert books.call("GET", f"/items/{ITEM_ID}").json()["item"]["name"] == "Zoho CRM Standard"
    assert ITEM_ID in [i["item_id"] for i in books.call("GET", "/items").json()["items"]]
    organisation = books.call("GET", f"/organizations/{fake_zoho.organization_id}").json()
    assert organisation["organization"]["organization_id"] == fake_zoho.organization_id
    for path in ("/items/1", "/salesorders/1"):
        missing = books.call("GET", path)
        assert (missing.status_code, missing.json()["code"]) == (404, 1002)
    unknown_customer = books.salesorder("999", "T2M-3")
    assert (unknown_customer.status_code, unknown_customer.json()["code"]) == (400, 4)
    assert fake_zoho.salesorders == []


def test_the_token_grant_follows_zohos_rules(make_fake_zoho, clock) -> None:
    fake = make_fake_zoho(clock=clock)
    issued = token_answer(fake).json()
    assert issued["expires_in"] == 3600 and issued["token_type"] == "Bearer"

    refused = token_answer(fake, refresh_token="revoked")
    assert (refused.status_code, refused.json()) == (200, {"error": "invalid_code"})
    fake.configure(refresh_refusal="access_denied", access_denied_status=200)
    denied = token_answer(fake)
    assert (denied.status_code, denied.json()["error"]) == (200, "Access Denied")
    fake.configure(access_denied_status=400)
    assert token_answer(fake).status_code == 400
    fake.configure(refresh_refusal=None)

    clock.advance(601)  # ten token requests per ten minutes, then Access Denied
    assert all(token_answer(fake).status_code == 200 for _ in range(10))
    assert token_answer(fake).json()["error"] == "Access Denied"
    assert fake.token_requests == 15


def test_only_the_ten_newest_tokens_stay_valid_and_each_expires(make_fake_zoho, clock) -> None:
    fake = make_fake_zoho(clock=clock)
    tokens = [token_answer(fake).json()["access_token"] for _ in range(10)]
    clock.advance(601)
    tokens.append(token_answer(fake).json()["access_token"])
    oldest, newest = Books(fake, tokens[0]), Books(fake, tokens[-1])
    assert (oldest.call("GET", "/items").status_code, oldest.call("GET", "/items").json()["code"]) == (401, 57)
    assert newest.call("GET", "/items").json()["code"] == 0
    clock.advance(3600 - 601)
    assert newest.call("GET", "/items").json()["code"] == 0  # issued 601 s after the others
    clock.advance(601)
    assert newest.call("GET", "/items").json()["code"] == 57
    assert Books(fake, "").call("GET", "/items").status_code == 401


def test_per_minute_limit_is_100_in_any_window_with_no_retry_after(make_fake_zoho, clock) -> None:
    fake = make_fake_zoho(clock=clock)
    books = Books(fake)
    for _ in range(100):
        assert books.call("GET", "/items").status_code == 200
        clock.advance(0.5)  # 100 calls within 50 s
    refused = books.call("GET", "/items")
    assert (refused.status_code, refused.json()["code"]) == (429, 44)
    assert "Retry-After" not in refused.headers
    clock.advance(10)  # the first call left the window: room for exactly one
    assert books.call("GET", "/items").status_code == 200
    assert books.call("GET", "/items").status_code == 429
    assert fake.answered_429 == 2 and fake.busiest_window() == 102  # arrivals, refused ones included


def test_the_daily_cap_resets_at_utc_midnight_and_the_headers_count_it(make_fake_zoho, clock) -> None:
    clock.now = clock.now.replace(hour=23, minute=0, second=0, microsecond=0)
    fake = make_fake_zoho(clock=clock)
    fake.configure(requests_per_day=3)
    books = Books(fake)
    answers = [books.call("GET", "/items") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[3].json()["code"] == 45
    assert [a.headers["X-Rate-Limit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    assert answers[0].headers["X-Rate-Limit-Limit"] == "3" and answers[0].headers["X-Rate-Limit-Reset"] == "3600"
    clock.advance(3600)
    assert Books(fake).call("GET", "/items").status_code == 200


@pytest.mark.parametrize("style, code", [("code_57", 57), ("invalid_oauthtoken", 14)])
def test_a_revoked_token_is_refused_as_zoho_says_it(fake_zoho: FakeZoho, style: str, code: int) -> None:
    books = Books(fake_zoho)
    fake_zoho.configure(refuse_tokens=1, refused_token_answer=style)
    refused = books.call("GET", "/items")
    assert (refused.status_code, refused.json()["code"]) == (401, code)
    assert ("INVALID_OAUTHTOKEN" in refused.text) == (style == "invalid_oauthtoken")
    assert books.call("GET", "/items").status_code == 200


def test_429_and_5xx_faults_do_nothing(fake_zoho: FakeZoho) -> None:
    books = Books(fake_zoho)
    customer = books.contact()
    fake_zoho.configure(rate_limit_429=1, error_5xx=1, error_5xx_status=503)
    assert books.salesorder(customer, "T2M-1").status_code == 429
    failed = books.salesorder(customer, "T2M-1")
    assert (failed.status_code, failed.json()["code"]) == (503, 1000)
    assert fake_zoho.salesorders == []
    assert books.salesorder(customer, "T2M-1").status_code == 201


def test_an_answer_lost_after_the_create_leaves_the_order_stored(fake_zoho: FakeZoho) -> None:
    books = Books(fake_zoho)
    customer = books.contact()
    fake_zoho.configure(timeout_after_create=1, timeout_hold_seconds=5)
    with pytest.raises(requests.ReadTimeout):
        requests.post(fake_zoho.api_url + "/salesorders", timeout=(5, 0.3),
                      params={"organization_id": fake_zoho.organization_id},
                      headers={"Authorization": f"Zoho-oauthtoken {books.token}"},
                      json={"customer_id": customer, "reference_number": "T2M-9", "line_items": [{"item_id": ITEM_ID}]})
    assert [o["reference_number"] for o in fake_zoho.salesorders] == ["T2M-9"]


def test_a_request_zoho_would_not_accept_is_answered_400_and_recorded() -> None:
    inspector = ZohoInspector(require_documents())  # its own: the violations it records are expected
    with FakeZoho(inspector=inspector) as fake:
        books = Books(fake)
        wrong = books.call("POST", "/salesorders", {"customer_id": 12, "line_items": []})  # an id must be a string
        missing_org = requests.get(fake.api_url + "/items", timeout=5,
                                   headers={"Authorization": f"Zoho-oauthtoken {books.token}"})
    assert (wrong.status_code, wrong.json()["code"]) == (400, 4)
    assert missing_org.status_code == 400
    assert len(inspector.violations) == 2
    assert "customer_id" in inspector.violations[0] and "organization_id" in inspector.violations[1]
    assert fake.salesorders == []


def test_an_unknown_path_is_zohos_404(fake_zoho: FakeZoho) -> None:
    answer = requests.get(fake_zoho.api_url + "/invoices", timeout=5)
    assert (answer.status_code, answer.json()["code"]) == (404, 5)


def test_fake_zoho_command_refuses_an_unknown_fault_or_value() -> None:
    refused = CliRunner().invoke(fake_zoho, ["--faults", "error_rate=0.5"])
    assert refused.exit_code == 2 and "a knob of ZohoFaults" in refused.output
    refused = CliRunner().invoke(fake_zoho, ["--faults", "refresh_refusal=invalid_grant"])
    assert refused.exit_code == 2 and "refresh_refusal must be one of None, invalid_code, access_denied" in \
        refused.output and "Traceback" not in refused.output


def test_fake_zoho_command_runs_standalone_until_ctrl_c() -> None:
    command = "from reconciler.providers.zoho.cli import fake_zoho; fake_zoho()"
    fake = subprocess.Popen([sys.executable, "-c", command, "--port", "0", "--faults", "token_expires_in=60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [fake.stdout.readline() for _ in range(7)]
        printed = dict(line.strip().split("=", 1) for line in lines if line.startswith("RECONCILER_"))
        assert set(printed) == {env_var_for(f"zoho.{key}") for key in (
            "accounts_url", "api_url", "organization_id", "client_id", "client_secret", "refresh_token")}
        issued = requests.post(printed["RECONCILER_ZOHO_ACCOUNTS_URL"] + "/oauth/v2/token", timeout=5, params={
            "refresh_token": printed["RECONCILER_ZOHO_REFRESH_TOKEN"], "client_id": printed["RECONCILER_ZOHO_CLIENT_ID"],
            "client_secret": printed["RECONCILER_ZOHO_CLIENT_SECRET"], "grant_type": "refresh_token"}).json()
        assert issued["expires_in"] == 60
        fake.send_signal(signal.SIGINT)
        assert fake.wait(timeout=10) == 0
        assert "stopped: 0 sales orders created, 0 API calls, 1 token requests" in fake.stderr.read()
    finally:
        if fake.poll() is None:
            fake.kill()
            fake.wait()
