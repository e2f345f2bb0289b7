"""Settings: one schema with defaults, read from config.yaml, ${ENV} references and env overrides.

Every key is declared once here; config.yaml documents the same keys (a test keeps them equal).
A bad value raises ConfigError with one line naming the key; secrets only come from the environment.
"""
from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml
from sqlalchemy.engine import make_url

ENV_PREFIX = "RECONCILER_"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)\S*@")


def mask_passwords(text: str) -> str:
    """`postgresql://user:PASSWORD@host/db` -> `postgresql://user:***@host/db` anywhere in `text`: for every
    message a person or a log may see. A regex, so it works on URLs too broken to parse."""
    return _URL_PASSWORD.sub(r"\1***@", text)


def _shown(value: Any) -> str:
    """A bad value as an error message may quote it: passwords masked, and a would-be URL whose password cannot
    be found (user:pw@host without a scheme) not quoted at all."""
    text = mask_passwords(repr(value))
    return text if "@" not in text or "://" in text else "a value that is not a URL (not shown: it may hold a password)"


class ConfigError(ValueError):
    """A setting is missing or invalid; str() is one line that names the key."""


def _positive(value: float) -> bool:
    return value > 0


def _non_negative(value: float) -> bool:
    return value >= 0


def _port(value: int) -> bool:
    return 0 <= value <= 65535


def _http_url(value: str) -> bool:
    return value == "" or value.startswith(("http://", "https://"))


def _db_url(value: str) -> bool:
    try:
        url = make_url(value)
        port = url.port  # make_url reads the port lazily in some versions: a bad one raises here or above
    except Exception:  # sqlalchemy.exc.ArgumentError or ValueError: not a URL at all, or a port that is no number
        return False
    return url.get_backend_name() in ("sqlite", "postgresql", "postgres") and (port is None or 0 < port <= 65535)


def _signature_style(value: str) -> bool:
    return value in ("standard", "sha256")


def _schedule(value: tuple[float, ...]) -> bool:
    return len(value) > 0 and all(v > 0 for v in value)


def _bundles(value: dict[int, float]) -> bool:
    return len(value) > 0 and all(size > 0 and price > 0 for size, price in value.items())


TENURES = {"1_MONTH": 1, "3_MONTHS": 3, "6_MONTHS": 6, "12_MONTHS": 12, "24_MONTHS": 24}  # tenure -> months


@dataclass(frozen=True)
class Product:
    """One licence T2Mobile may sell: its Zoho Books item and its price per tenure (a subset of TENURES)."""
    name: str
    item_id: str
    currency: str
    prices: Mapping[str, float]


def _products(value: dict[str, Product]) -> bool:
    return len(value) > 0 and all(
        pid.strip() and p.name.strip() and p.item_id.strip() and p.currency.strip() and p.prices
        and all(t in TENURES and price > 0 for t, price in p.prices.items())
        for pid, p in value.items())


def _timezone(value: str) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _setting(default: Any, help: str, check: Callable[[Any], bool] | None = None,
             rule: str = "", secret: bool = False) -> Any:
    metadata = {"help": help, "check": check, "rule": rule, "secret": secret}
    if isinstance(default, dict):  # a mutable default must be built afresh for each instance
        return field(default_factory=lambda: dict(default), metadata=metadata)
    return field(default=default, metadata=metadata)


# The seed's example product, sold by the fake Zoho (reconciler/providers/zoho/fake.py) as item 4815000000044208.
DEFAULT_PRODUCTS = {"ZOHO_CRM_STD": Product(
    name="Zoho CRM Standard", item_id="4815000000044208", currency="NGN",
    prices={"1_MONTH": 15000.0, "3_MONTHS": 42000.0, "6_MONTHS": 80000.0, "12_MONTHS": 150000.0,
            "24_MONTHS": 280000.0})}

# The fake reseller's plans (reconciler/providers/mtn/fake.py) at its 5 per GB.
DEFAULT_BUNDLES = {size: 5.0 * size for size in (1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 25, 30, 40, 50, 100)}


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = _setting("sqlite:///reconciler.db", "sqlite:///FILE or postgresql://USER:PASSWORD@HOST[:PORT]/DB "
                        "(postgres:// too)", _db_url,
                        "must be sqlite:///FILE or postgresql://USER:PASSWORD@HOST[:PORT]/DB with a port 1-65535")


@dataclass(frozen=True)
class MtnConfig:
    base_url: str = _setting("", "reseller API root, e.g. https://reseller.example", _http_url, "must be an http(s) URL")
    api_key: str = _setting("", "X-API-KEY for the reseller API", secret=True)
    webhook_secret: str = _setting("", "HMAC secret the reseller signs webhooks with", secret=True)
    connect_timeout_seconds: float = _setting(5.0, "connect timeout of one API call", _positive, "must be > 0")
    request_timeout_seconds: float = _setting(15.0, "read timeout of one API call", _positive, "must be > 0")
    retry_schedule_seconds: tuple[float, ...] = _setting((300.0, 900.0, 3600.0), "delays between attempts; then dead",
                                                   _schedule, "must be a non-empty list of numbers > 0")
    in_doubt_grace_seconds: float = _setting(1800.0, "how long history must not show an in-doubt order before it is queued again",
                                             _positive, "must be > 0")
    reconcile_interval_seconds: float = _setting(60.0, "how often order history is fetched and matched", _positive, "must be > 0")
    completed_watch_hours: float = _setting(72.0, "how long completed orders are watched for a reversal", _non_negative, "must be >= 0")
    balance_alert_threshold: float = _setting(100.0, "alert when the reseller balance falls below this", _non_negative, "must be >= 0")
    poll_interval_seconds: float = _setting(1.0, "how often due orders are looked for and stored webhooks applied",
                                            _positive, "must be > 0")
    max_in_flight: int = _setting(8, "orders sent to the reseller at once, per process", _positive, "must be > 0")
    bundles: dict[int, float] = _setting(DEFAULT_BUNDLES, "sizes on sale (GB) and what each costs: another size is "
                                         "rejected, and an order is sent only when the balance covers its price",
                                         _bundles, "must list at least one size > 0, each with a price > 0")
    balance_cache_seconds: float = _setting(30.0, "how long a balance reading is trusted before it is fetched again",
                                            _non_negative, "must be >= 0")
    check_network_prefix: bool = _setting(True, "reject numbers whose prefix belongs to another network (off: ported numbers)")
    match_window_seconds: float = _setting(600.0, "how far apart an in-doubt attempt and a history order may be to match",
                                           _positive, "must be > 0")
    auth_pause_seconds: float = _setting(300.0, "after a 401, wait this long before probing the key again", _positive,
                                         "must be > 0")
    rate_limit_pause_seconds: float = _setting(30.0, "after a 429 without Retry-After, send nothing for this long",
                                               _positive, "must be > 0")
    requests_per_second: float = _setting(0.0, "client-side ceiling on reseller calls per second, shared by all replicas; 0 = off",
                                          _non_negative, "must be >= 0")


@dataclass(frozen=True)
class ZohoConfig:
    accounts_url: str = _setting("https://accounts.zoho.com", "Zoho accounts server (OAuth) of the organisation's data "
                                 "centre: .com, .eu, .in, .com.au, .jp or zohocloud.ca", _http_url, "must be an http(s) URL")
    api_url: str = _setting("https://www.zohoapis.com/books/v3", "Zoho Books API root", _http_url, "must be an http(s) URL")
    organization_id: str = _setting("", "Zoho Books organization_id sent with every call")
    client_id: str = _setting("", "OAuth client id")
    client_secret: str = _setting("", "OAuth client secret", secret=True)
    refresh_token: str = _setting("", "OAuth refresh token", secret=True)
    connect_timeout_seconds: float = _setting(5.0, "connect timeout of one API call", _positive, "must be > 0")
    request_timeout_seconds: float = _setting(30.0, "read timeout of one API call", _positive, "must be > 0")
    retry_schedule_seconds: tuple[float, ...] = _setting((60.0, 300.0, 900.0, 3600.0), "delays between attempts; then dead",
                                                   _schedule, "must be a non-empty list of numbers > 0")
    requests_per_minute: int = _setting(100, "API calls per minute for the organisation, shared by all replicas",
                                        _positive, "must be > 0")
    rate_window_seconds: float = _setting(60.0, "the window requests_per_minute counts over (tests and benchmarks "
                                          "may shorten it)", _positive, "must be > 0")
    requests_per_day: int = _setting(1000, "API calls per day for the organisation (Zoho's daily cap by plan); "
                                     "when used up, the flow pauses until the next day", _positive, "must be > 0")
    poll_interval_seconds: float = _setting(1.0, "how often due orders are looked for", _positive, "must be > 0")
    token_refresh_ahead_seconds: float = _setting(300.0, "refresh the shared access token this long before it expires",
                                                  _non_negative, "must be >= 0")
    auth_pause_seconds: float = _setting(300.0, "after Zoho refuses the refresh token, wait this long before trying "
                                         "again", _positive, "must be > 0")
    in_doubt_grace_seconds: float = _setting(60.0, "how long an in-doubt order waits before the sales orders are "
                                             "searched for it", _non_negative, "must be >= 0")


@dataclass(frozen=True)
class PartnerConfig:
    webhook_url: str = _setting("", "where T2Mobile's events go (ORDER_FULFILLED, ORDER_FAILED, EXPIRY_REMINDER, "
                                "SUBSCRIPTION_RENEWED); empty: the Zoho flow is off", _http_url, "must be an http(s) URL")
    webhook_secret: str = _setting("", "whsec_... secret that signs partner webhooks (two, space-separated, while rotating)",
                                   secret=True)
    signature: str = _setting("standard", "standard (Standard Webhooks) or sha256 (X-Webhook-Signature: sha256=<hex>)",
                              _signature_style, "must be standard or sha256")
    retry_schedule_seconds: tuple[float, ...] = _setting((30.0, 120.0, 300.0, 600.0, 1200.0), "delays between delivery attempts; then dead",
                                                   _schedule, "must be a non-empty list of numbers > 0")
    api_keys: str = _setting("", "Bearer keys T2Mobile may call the intake API with, space-separated (several while "
                             "rotating); empty: the intake API refuses every call", secret=True)
    requests_per_minute: int = _setting(100, "intake API calls per minute per API key, shared by all replicas",
                                        _positive, "must be > 0")
    idempotency_ttl_hours: float = _setting(24.0, "how long a stored answer to an Idempotency-Key is kept",
                                            _positive, "must be > 0")
    products: dict[str, Product] = _setting(DEFAULT_PRODUCTS, "the catalogue: product id -> name, Zoho item id, "
                                            "currency and price per tenure", _products,
                                            "must list at least one product, each with name, item_id, currency and "
                                            "prices for tenures among " + ", ".join(TENURES) + " (each > 0)")
    timezone: str = _setting("Africa/Lagos", "the partner's time zone: reminders run at 02:00 and the renewal check "
                             "at 03:00 there", _timezone, "must be an IANA time zone such as Africa/Lagos")
    reminder_days: int = _setting(7, "licences expiring within this many days get an EXPIRY_REMINDER",
                                  _positive, "must be > 0")


@dataclass(frozen=True)
class NotifyConfig:
    webhook_secret: str = _setting("", "whsec_... secret that signs events sent to an order's notify_url", secret=True)
    signature: str = _setting("standard", "standard (Standard Webhooks) or sha256 (X-Webhook-Signature: sha256=<hex>)",
                              _signature_style, "must be standard or sha256")


@dataclass(frozen=True)
class WebhooksConfig:
    poll_interval_seconds: float = _setting(1.0, "how often due deliveries are looked for", _positive, "must be > 0")
    connect_timeout_seconds: float = _setting(5.0, "connect timeout of one delivery", _positive, "must be > 0")
    timeout_seconds: float = _setting(15.0, "total time one delivery may take", _positive, "must be > 0")
    breaker_failures: int = _setting(5, "consecutive failures that pause an endpoint", _positive, "must be > 0")
    breaker_pause_seconds: float = _setting(60.0, "first pause of a failing endpoint; doubles while probes fail (max 1 h)",
                                            _positive, "must be > 0")
    max_per_second: float = _setting(10.0, "deliveries per second to one endpoint, all replicas together", _positive, "must be > 0")


@dataclass(frozen=True)
class ReceiverConfig:
    host: str = _setting("0.0.0.0", "public listener address (provider webhooks, partner intake)")
    port: int = _setting(8080, "public listener port", _port, "must be a port number 0-65535")
    max_body_bytes: int = _setting(1_048_576, "largest request body accepted (413 above)", _positive, "must be > 0")


@dataclass(frozen=True)
class AdminConfig:
    host: str = _setting("127.0.0.1", "admin listener address; keep it off the internet")
    port: int = _setting(9100, "admin listener port (/metrics, /healthz, /readyz)", _port, "must be a port number 0-65535")


@dataclass(frozen=True)
class DaemonConfig:
    batch_size: int = _setting(100, "rows claimed per statement", _positive, "must be > 0")
    lease_seconds: float = _setting(300.0, "how long a claim is owned before the rescuer may take it back",
                                    _positive, "must be > 0")
    shutdown_grace_seconds: float = _setting(30.0, "on SIGTERM, how long in-flight work may take to finish",
                                             _non_negative, "must be >= 0")
    rescue_interval_seconds: float = _setting(30.0, "how often expired leases are taken back", _positive, "must be > 0")
    metrics_interval_seconds: float = _setting(15.0, "how often outbox gauges are refreshed from the database",
                                               _positive, "must be > 0")
    log_level: str = _setting("INFO", "DEBUG, INFO, WARNING or ERROR",
                              lambda v: v in ("DEBUG", "INFO", "WARNING", "ERROR"), "must be DEBUG, INFO, WARNING or ERROR")
    log_format: str = _setting("text", "text (one line per event) or json (one JSON object per line)",
                               lambda v: v in ("text", "json"), "must be text or json")


@dataclass(frozen=True)
class Config:
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    mtn: MtnConfig = field(default_factory=MtnConfig)
    zoho: ZohoConfig = field(default_factory=ZohoConfig)
    partner: PartnerConfig = field(default_factory=PartnerConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    receiver: ReceiverConfig = field(default_factory=ReceiverConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)

    def value(self, key: str) -> Any:
        section, name = key.split(".")
        return getattr(getattr(self, section), name)

    def redacted(self) -> dict[str, dict[str, Any]]:
        """The settings as a nested dict with every secret shown as set/unset, never its value."""
        out: dict[str, dict[str, Any]] = {}
        for key, meta in iter_settings():
            value = self.value(key)
            if meta["secret"]:
                value = "<set>" if value else "<unset>"
            elif key == "database.url":
                value = mask_passwords(value)
            elif key == "partner.products":
                value = {pid: {**asdict(product), "prices": dict(product.prices)} for pid, product in value.items()}
            section, name = key.split(".")
            out.setdefault(section, {})[name] = value
        return out


def iter_settings() -> list[tuple[str, Mapping[str, Any]]]:
    """Every dotted key with its metadata (default, help, check, secret), in declaration order."""
    out = []
    for section in fields(Config):
        for f in fields(section.default_factory):
            default = f.default_factory() if callable(f.default_factory) else f.default
            out.append((f"{section.name}.{f.name}", {**f.metadata, "default": default, "type": f.type}))
    return out


def env_var_for(key: str) -> str:
    """The environment variable that overrides a key: database.url -> RECONCILER_DATABASE_URL."""
    return ENV_PREFIX + key.replace(".", "_").upper()


def _expand(key: str, raw: str, env: Mapping[str, str]) -> str:
    def substitute(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(f"{key}: environment variable {name} is not set")
    return _ENV_REF.sub(substitute, raw)


def _coerce(key: str, type_name: str, value: Any, secret: bool) -> Any:
    try:
        if type_name == "str":
            if value is None:
                return ""
            if isinstance(value, (dict, list)):
                raise ValueError
            return str(value)
        if type_name == "tuple[float, ...]":
            if isinstance(value, str):  # from the environment: "30,120,300" or "[30, 120, 300]"
                value = [v for v in value.replace("[", "").replace("]", "").split(",") if v.strip()]
            if not isinstance(value, (list, tuple)):
                raise ValueError
            return tuple(_number(v, float) for v in value)
        if type_name == "dict[int, float]":
            pairs = value
            if isinstance(value, str):  # from the environment: "1:5,2:10,5:25" (or "{1: 5, 2: 10}")
                pairs = dict(pair.split(":", 1) for pair in value.strip().strip("{}").split(",") if pair.strip())
            if not isinstance(pairs, dict):
                raise ValueError
            return {_number(size, int): _number(price, float) for size, price in pairs.items()}
        if type_name == "dict[str, Product]":
            return _catalogue(yaml.safe_load(value) if isinstance(value, str) else value)
        if type_name == "bool":
            if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:  # from the environment
                return _BOOL_WORDS[value.strip().lower()]
            if not isinstance(value, bool):
                raise ValueError
            return value
        if type_name == "int":
            return _number(value, int)
        if type_name == "float":
            return _number(value, float)
    except (ValueError, TypeError, AttributeError, yaml.YAMLError):
        pass
    shown = "<secret>" if secret else _shown(value)
    raise ConfigError(f"{key}: expected {_TYPE_WORDS[type_name]}, got {shown}")


def _catalogue(value: Any) -> dict[str, Product]:
    """The catalogue from YAML (or, from the environment, the same as one line of JSON)."""
    if not isinstance(value, dict):
        raise ValueError
    products = {}
    for product_id, entry in value.items():
        if isinstance(entry, Product):  # the default
            products[product_id] = entry
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("prices"), dict) or set(entry) - {
                "name", "item_id", "currency", "prices"}:
            raise ValueError
        products[str(product_id)] = Product(
            name=str(entry.get("name", "")), item_id=str(entry.get("item_id", "")),
            currency=str(entry.get("currency", "")),
            prices={str(tenure): _number(price, float) for tenure, price in entry["prices"].items()})
    return products


_TYPE_WORDS = {"str": "text", "int": "a whole number", "float": "a number",
               "tuple[float, ...]": "a list of numbers", "bool": "true or false",
               "dict[int, float]": "sizes with prices, like 1:5,2:10",
               "dict[str, Product]": "products, each with name, item_id, currency and prices per tenure"}
_BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def _number(value: Any, kind: type) -> Any:
    if isinstance(value, bool):
        raise ValueError
    parsed = float(value.strip() if isinstance(value, str) else value)
    if kind is int:
        if parsed != int(parsed):
            raise ValueError
        return int(parsed)
    return parsed


def load_config(path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read the file (if any) over the defaults, expand ${VAR}, apply RECONCILER_* overrides, validate."""
    env = os.environ if env is None else env
    file_values: dict[str, Any] = {}
    if path is not None:
        file_values = _read_file(Path(path))

    sections: dict[str, dict[str, Any]] = {}
    for key, meta in iter_settings():
        section, name = key.split(".")
        value = meta["default"]
        if key in file_values:
            value = file_values[key]
            if isinstance(value, str):
                if meta["secret"] and value and not _ENV_REF.fullmatch(value.strip()):
                    raise ConfigError(f"{key}: secrets are read from the environment only; write ${{VARIABLE}} in the file")
                value = _expand(key, value, env)
        if env_var_for(key) in env:
            value = env[env_var_for(key)]
        value = _coerce(key, meta["type"], value, meta["secret"])
        check = meta["check"]
        if check is not None and not check(value):
            shown = "<secret>" if meta["secret"] else _shown(value)
            raise ConfigError(f"{key}: {meta['rule']}, got {shown}")
        sections.setdefault(section, {})[name] = value

    config = Config(**{f.name: f.default_factory(**sections[f.name]) for f in fields(Config)})
    _check_relations(config)
    return config


# The key that switches a provider's flow on, and the keys it cannot work without: a flow half configured is a
# mistake to stop at, not a flow that fails on every call.
FLOW_KEYS = {
    "mtn.base_url": ("mtn.api_key",),
    # the flow's every outcome is an event to the partner: with no secret it could sign none of them
    "zoho.organization_id": ("zoho.client_id", "zoho.client_secret", "zoho.refresh_token", "partner.webhook_url",
                             "partner.webhook_secret"),
}


def _check_relations(config: Config) -> None:
    """Rules between keys. A lease must outlast one unit of work, or no work would ever start; a provider's flow
    is configured whole or not at all."""
    delivery = config.webhooks.connect_timeout_seconds + config.webhooks.timeout_seconds
    if config.daemon.lease_seconds <= delivery:
        raise ConfigError(f"daemon.lease_seconds: must be longer than webhooks.connect_timeout_seconds + "
                          f"webhooks.timeout_seconds ({delivery:g}), got {config.daemon.lease_seconds:g}")
    used = ("mtn", "zoho") if config.zoho.organization_id else ("mtn",)  # Zoho's timeouts matter once it is on
    for provider in used:
        call = config.value(f"{provider}.connect_timeout_seconds") + config.value(f"{provider}.request_timeout_seconds")
        if config.daemon.lease_seconds <= call:
            raise ConfigError(f"daemon.lease_seconds: must be longer than {provider}.connect_timeout_seconds + "
                              f"{provider}.request_timeout_seconds ({call:g}), got {config.daemon.lease_seconds:g}")
    for switch, needed in FLOW_KEYS.items():
        missing = [key for key in needed if not config.value(key)]
        if config.value(switch) and missing:
            raise ConfigError(f"{missing[0]}: must be set when {switch} is (variable {env_var_for(missing[0])}); "
                              f"missing: {', '.join(missing)}; or leave {switch} empty to switch the flow off")


def _read_file(path: Path) -> dict[str, Any]:
    try:
        document = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config: file {path} not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config: {path} is not valid YAML{where}") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(f"config: {path} must be a mapping of sections")
    known = {key for key, _ in iter_settings()}
    flat: dict[str, Any] = {}
    for section, values in document.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{section}: must be a mapping of settings")
        for name, value in values.items():
            key = f"{section}.{name}"
            if key not in known:
                raise ConfigError(f"{key}: unknown setting")
            flat[key] = value
    return flat
