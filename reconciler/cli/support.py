"""What every command shares: the lazily loaded config, and the WHEN argument type."""
from __future__ import annotations

import getpass
import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click
from sqlalchemy import Engine

from reconciler.config import Config, ConfigError, load_config
from reconciler.engine.clock import utcnow
from reconciler.engine.db import make_engine

DEFAULT_CONFIG = Path("config.yaml")


class App:
    """What every command needs, loaded on first use so `--help` works whatever the config says."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            path = self.config_path
            if path is None and DEFAULT_CONFIG.exists():
                path = str(DEFAULT_CONFIG)
            try:
                self._config = load_config(path)
            except ConfigError as exc:
                click.echo(f"config error: {exc}", err=True)
                sys.exit(2)
        return self._config

    def engine(self) -> Engine:
        return make_engine(self.config.database.url)

    def require(self, *keys: str) -> Config:
        """The config, when these settings are set; else a config error naming the first missing one."""
        for key in keys:
            if not self.config.value(key):
                click.echo(f"config error: {key} is not set", err=True)
                sys.exit(2)
        return self.config


def actor() -> str:
    """Who did it, for status_history: cli:<login name>."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no login name in this environment (a container without USER)
        return "cli"


class When(click.ParamType):
    """A moment: ISO 8601 (UTC unless it says otherwise) or an age such as 90m, 2h, 3d, 1w."""

    name = "WHEN"
    _AGE = re.compile(r"^(\d+)([smhdw])$")
    _UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

    def convert(self, value, param, ctx) -> datetime:
        if isinstance(value, datetime):
            return value
        age = self._AGE.match(value.strip())
        if age:
            return utcnow() - timedelta(**{self._UNITS[age.group(2)]: int(age.group(1))})
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            self.fail(f"{value!r} is neither an ISO time nor an age like 2h or 3d", param, ctx)
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
