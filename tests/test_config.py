"""Configuration: defaults, the documented config.yaml, ${ENV} references, overrides and clear errors."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from reconciler.cli.root import cli
from reconciler.config import ConfigError, env_var_for, iter_settings, load_config

CONFIG_YAML = Path(__file__).resolve().parent.parent / "config.yaml"


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(body)
    return path


def test_config_yaml_documents_every_setting_with_its_default_and_a_comment():
    document = yaml.safe_load(CONFIG_YAML.read_text())
    lines = CONFIG_YAML.read_text().splitlines()
    loaded = load_config(CONFIG_YAML, env={})
    for key, meta in iter_settings():
        section, name = key.split(".")
        assert name in document.get(section, {}), f"{key} missing from config.yaml"
        [line] = [ln for ln in lines if re.match(rf"\s+{name}:", ln) and ln.index(name) == 2
                  and _section_of(lines, ln) == section]
        assert "#" in line.split(":", 1)[1], f"{key} has no comment"
        assert loaded.value(key) == meta["default"], f"{key}: config.yaml says {loaded.value(key)!r}"


def _section_of(lines: list[str], line: str) -> str:
    section = ""
    for candidate in lines:
        if re.match(r"^[a-z_]+:", candidate):
            section = candidate.split(":")[0]
        if candidate is line:
            return section
    raise AssertionError(line)


def test_env_references_and_overrides(tmp_path):
    path = write(tmp_path, "database:\n  url: ${DB_URL}\nmtn:\n  api_key: ${MTN_KEY}\n"
                           "  retry_schedule_seconds: [5, 10]\ndaemon:\n  batch_size: ${BATCH:-25}\n")
    config = load_config(path, env={"DB_URL": "sqlite:///x.db", "MTN_KEY": "k-123"})
    assert (config.database.url, config.mtn.api_key, config.daemon.batch_size) == ("sqlite:///x.db", "k-123", 25)
    assert config.mtn.retry_schedule_seconds == (5.0, 10.0)

    overridden = load_config(path, env={"DB_URL": "sqlite:///x.db", "MTN_KEY": "k",
                                        "RECONCILER_DATABASE_URL": "postgresql://db/prod",
                                        "RECONCILER_MTN_RETRY_SCHEDULE_SECONDS": "1,2,3"})
    assert overridden.database.url == "postgresql://db/prod"
    assert overridden.mtn.retry_schedule_seconds == (1.0, 2.0, 3.0)
    assert env_var_for("daemon.lease_seconds") == "RECONCILER_DAEMON_LEASE_SECONDS"
    assert load_config(path, env={"DB_URL": "x", "MTN_KEY": "k", "RECONCILER_DATABASE_URL": "sqlite://",
                                  "RECONCILER_MTN_CHECK_NETWORK_PREFIX": "off"}).mtn.check_network_prefix is False


@pytest.mark.parametrize("body, env, message", [
    ("daemon:\n  batch_size: 0\n", {}, "daemon.batch_size: must be > 0, got 0"),
    ("daemon:\n  batch_size: many\n", {}, "daemon.batch_size: expected a whole number, got 'many'"),
    ("admin:\n  port: 99999\n", {}, "admin.port: must be a port number 0-65535, got 99999"),
    ("database:\n  url: mysql://x\n", {}, "database.url: must be sqlite:///FILE or postgresql://"),
    ("mtn:\n  retry_schedule_seconds: []\n", {}, "mtn.retry_schedule_seconds: must be a non-empty list"),
    ("mtn:\n  api_key: ${MTN_KEY}\n", {}, "mtn.api_key: environment variable MTN_KEY is not set"),
    ("mtn:\n  timeout: 3\n", {}, "mtn.timeout: unknown setting"),
    ("partner:\n  webhook_url: ftp://t2.example/hooks\n", {}, "partner.webhook_url: must be an http(s) URL"),
    ("partner:\n  timezone: Mars/Olympus\n", {}, "partner.timezone: must be an IANA time zone"),
    ("partner:\n  products: {}\n", {}, "partner.products: must list at least one product"),
    ("partner:\n  products:\n    X: {name: x, item_id: '1', currency: NGN, prices: {2_WEEKS: 5}}\n", {},
     "partner.products: must list at least one product, each with name, item_id, currency and prices for tenures"),
    ("partner:\n  products:\n    X: {name: x, item_id: '1', currency: NGN, prices: {1_MONTH: free}}\n", {},
     "partner.products: expected products, each with name, item_id, currency and prices per tenure"),
    ("", {"RECONCILER_PARTNER_PRODUCTS": "{not json"}, "partner.products: expected products"),
    ("daemon:\n  lease_seconds: 25\nzoho:\n  organization_id: '123'\n", {},
     "daemon.lease_seconds: must be longer than zoho.connect_timeout_seconds"),
    ("daemon: [1, 2]\n", {}, "daemon: must be a mapping of settings"),
    ("daemon:\n  batch_size: 10\n", {"RECONCILER_DAEMON_LEASE_SECONDS": "-1"}, "daemon.lease_seconds: must be > 0"),
    ("daemon:\n  lease_seconds: 10\n", {}, "daemon.lease_seconds: must be longer than webhooks.connect_timeout"),
    ("daemon:\n  lease_seconds: 25\nmtn:\n  request_timeout_seconds: 30\n", {},
     "daemon.lease_seconds: must be longer than mtn.connect_timeout_seconds"),
    ("mtn:\n  check_network_prefix: maybe\n", {}, "mtn.check_network_prefix: expected true or false, got 'maybe'"),
    ("mtn:\n  base_url: https://reseller.example\n", {},
     "mtn.api_key: must be set when mtn.base_url is (variable RECONCILER_MTN_API_KEY)"),
    ("zoho:\n  organization_id: '1234'\n", {"RECONCILER_ZOHO_CLIENT_ID": "cid"},
     "zoho.client_secret: must be set when zoho.organization_id is (variable RECONCILER_ZOHO_CLIENT_SECRET); "
     "missing: zoho.client_secret, zoho.refresh_token, partner.webhook_url"),
    ("", {"RECONCILER_ZOHO_ORGANIZATION_ID": "1234", "RECONCILER_ZOHO_CLIENT_ID": "cid",
          "RECONCILER_ZOHO_CLIENT_SECRET": "s", "RECONCILER_ZOHO_REFRESH_TOKEN": "r"},
     "partner.webhook_url: must be set when zoho.organization_id is"),
    ("mtn:\n  bundles: {}\n", {}, "mtn.bundles: must list at least one size > 0, each with a price > 0"),
    ("mtn:\n  bundles:\n    1.5: 5\n", {}, "mtn.bundles: expected sizes with prices, like 1:5,2:10, got {1.5: 5}"),
    ("", {"RECONCILER_MTN_BUNDLES": "5GB"}, "mtn.bundles: expected sizes with prices, like 1:5,2:10, got '5GB'"),
    ("", {"RECONCILER_MTN_BUNDLES": "1:5,2:0"}, "mtn.bundles: must list at least one size > 0, each with a price > 0"),
])
def test_a_bad_value_names_its_key(tmp_path, body, env, message):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, body), env=env)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_a_provider_configured_whole_or_not_at_all_loads(tmp_path):
    zoho = {"RECONCILER_ZOHO_ORGANIZATION_ID": "1234", "RECONCILER_ZOHO_CLIENT_ID": "cid",
            "RECONCILER_ZOHO_CLIENT_SECRET": "s", "RECONCILER_ZOHO_REFRESH_TOKEN": "r",
            "RECONCILER_PARTNER_WEBHOOK_URL": "https://t2.example/hooks", "RECONCILER_PARTNER_WEBHOOK_SECRET": "w",
            "RECONCILER_MTN_BASE_URL": "https://reseller.example", "RECONCILER_MTN_API_KEY": "k"}
    assert load_config(None, env=zoho).zoho.organization_id == "1234"
    unsigned = {key: value for key, value in zoho.items() if key != "RECONCILER_PARTNER_WEBHOOK_SECRET"}
    with pytest.raises(ConfigError, match="^partner.webhook_secret: must be set when zoho.organization_id is"):
        load_config(None, env=unsigned)
    assert load_config(None, env={}).mtn.base_url == ""


def test_a_half_configured_provider_stops_the_daemon_with_exit_2_and_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "reconciler", "run"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "RECONCILER_MTN_BASE_URL": "https://reseller.example",
                               "RECONCILER_MTN_API_KEY": "", "RECONCILER_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"},
                          cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "config error: mtn.api_key: must be set when mtn.base_url is (variable RECONCILER_MTN_API_KEY); missing: "
        "mtn.api_key; or leave mtn.base_url empty to switch the flow off"]
    assert not (tmp_path / "x.db").exists()


def test_a_lease_need_not_outlast_the_calls_of_a_flow_that_is_off(tmp_path):
    """The demo and the MTN-only daemon run short leases; the Zoho call timeouts count once Zoho is on."""
    assert load_config(write(tmp_path, "daemon:\n  lease_seconds: 25\n"), env={}).daemon.lease_seconds == 25


def test_bundles_are_sizes_with_a_price_each_in_the_file_or_the_environment(tmp_path):
    path = write(tmp_path, "mtn:\n  bundles:\n    1: 4.5\n    10: 40\n")
    assert load_config(path, env={}).mtn.bundles == {1: 4.5, 10: 40.0}
    assert load_config(path, env={"RECONCILER_MTN_BUNDLES": "1:5, 2:10,5:25"}).mtn.bundles == {1: 5.0, 2: 10.0, 5: 25.0}
    inline = write(tmp_path, 'mtn:\n  bundles: "${BUNDLES}"\n')
    assert load_config(inline, env={"BUNDLES": "{3: 12}"}).mtn.bundles == {3: 12.0}


def test_the_catalogue_comes_from_the_file_or_one_line_of_json_in_the_environment(tmp_path):
    assert set(load_config(CONFIG_YAML, env={}).partner.products["ZOHO_CRM_STD"].prices) == {
        "1_MONTH", "3_MONTHS", "6_MONTHS", "12_MONTHS", "24_MONTHS"}
    config = load_config(None, env={"RECONCILER_PARTNER_PRODUCTS": '{"P1": {"name": "Books", "item_id": "9", '
                                                                   '"currency": "USD", "prices": {"1_MONTH": 9.5}}}'})
    [(product_id, product)] = config.partner.products.items()
    assert (product_id, product.item_id, product.currency, dict(product.prices)) == ("P1", "9", "USD", {"1_MONTH": 9.5})


def test_a_secret_written_into_the_file_is_refused_without_echoing_it(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "partner:\n  webhook_secret: whsec_c2VjcmV0\n"), env={})
    assert "partner.webhook_secret" in str(caught.value) and "whsec_c2VjcmV0" not in str(caught.value)


def test_check_config_never_prints_secrets(tmp_path):
    path = write(tmp_path, "mtn:\n  api_key: ${MTN_KEY}\n")
    result = CliRunner().invoke(cli, ["--config", str(path), "check-config"], env={
        "MTN_KEY": "sk-live-998877", "RECONCILER_DATABASE_URL": "postgresql://shop:pg-pass-4411@db/orders"})
    assert result.exit_code == 0
    assert "sk-live-998877" not in result.output and "pg-pass-4411" not in result.output
    assert '"api_key": "<set>"' in result.output
    assert "postgresql://shop:***@db/orders" in result.output


def test_a_bad_config_stops_any_command_with_exit_2_and_one_line(tmp_path):
    path = write(tmp_path, "daemon:\n  lease_seconds: soon\n")
    for command in (["check-config"], ["status"], ["run"], ["db", "migrate"]):
        done = subprocess.run([sys.executable, "-m", "reconciler", "--config", str(path), *command],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, command
        assert done.stderr.strip().splitlines() == [
            "config error: daemon.lease_seconds: expected a number, got 'soon'"]


def test_a_missing_config_file_is_a_config_error(tmp_path):
    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "nope.yaml"), "check-config"])
    assert result.exit_code == 2
    assert "nope.yaml not found" in result.output
