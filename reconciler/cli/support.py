"""What every command shares: the lazily loaded config and database, the WHEN argument type, and the errors a
person can fix turned into one line with the documented exit code (0 ok, 1 failure, 2 usage or config error)."""
from __future__ import annotations

import getpass
import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import click
from sqlalchemy import Engine

from reconciler.config import Config, ConfigError, load_config, mask_passwords
from reconciler.engine.clock import utcnow
from reconciler.engine.daemon import is_database_unavailable
from reconciler.engine.db import database_error_cause, make_engine, missing_sqlite_file
from reconciler.engine.migrate import schema_problem

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

    def engine(self, create: bool = False) -> Engine:
        """The database, checked to be reachable and migrated. `create`: for the commands that migrate it
        themselves (db migrate, run); any other command refuses to create an empty SQLite file."""
        url = self.config.database.url
        missing = None if create else missing_sqlite_file(url)
        if missing is not None:
            raise click.ClickException(f"the database file {missing} does not exist (database.url): "
                                       f"run `reconciler db migrate` to create it")
        engine = make_engine(url)
        if not create:
            problem = schema_problem(engine)
            if problem is not None:
                raise click.ClickException(problem)
        return engine

    def require(self, *keys: str) -> Config:
        """The config, when these settings are set; else a config error naming the first missing one."""
        for key in keys:
            if not self.config.value(key):
                click.echo(f"config error: {key} is not set", err=True)
                sys.exit(2)
        return self.config


class ConfigProblem(click.ClickException):
    """A setting the person must change: exit 2, one line naming the key."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"config error: {self.format_message()}", err=True)


class Commands(click.Group):
    """The root group: whatever a command raises reaches the person as one line and an exit code, never as a
    traceback, and never with a password in it."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, BrokenPipeError):  # click ends EPIPE quietly
            raise
        except ConfigError as exc:
            raise ConfigProblem(str(exc)) from None
        except Exception as exc:
            if is_database_unavailable(exc):
                raise click.ClickException(f"cannot use the database: {database_error_cause(exc)} "
                                           f"(check database.url, and that the database is up)") from None
            raise click.ClickException(f"unexpected {type(exc).__name__}: {' '.join(mask_passwords(str(exc)).split())} "
                                       f"(a bug: please report it with the command that caused it)") from None


def actor() -> str:
    """Who did it, for status_history: cli:<login name>."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no login name in this environment (a container without USER)
        return "cli"


_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta | None:
    """90m, 2h, 3d, 1w (s, m, h, d, w); None when `text` is not one."""
    match = _DURATION.match(text.strip())
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))}) if match else None


class UsageProblem(click.ClickException):
    """A value the person must correct: exit 2, one line naming the option."""

    exit_code = 2


class OneLineErrors:
    """For a click.ParamType: a bad value is one line naming the option and exit 2, without the usage text."""

    def fail(self, message: str, param: click.Parameter | None = None, ctx: click.Context | None = None):
        name = param.opts[0] if param is not None and param.opts else "value"
        raise UsageProblem(f"{name}: {message}")


class Duration(OneLineErrors, click.ParamType):
    """A length of time such as 90m, 12h, 7d, 2w."""

    name = "DURATION"

    def convert(self, value, param, ctx) -> timedelta:
        if isinstance(value, timedelta):
            return value
        duration = parse_duration(value)
        if duration is None:
            self.fail(f"{value!r} is not a duration like 12h, 7d or 2w", param, ctx)
        return duration


class When(click.ParamType):
    """A moment: ISO 8601 (UTC unless it says otherwise) or an age such as 90m, 2h, 3d, 1w."""

    name = "WHEN"

    def convert(self, value, param, ctx) -> datetime:
        if isinstance(value, datetime):
            return value
        age = parse_duration(value)
        if age is not None:
            return utcnow() - age
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            self.fail(f"{value!r} is neither an ISO time nor an age like 2h or 3d", param, ctx)
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class FaultKnobs(click.ParamType):
    """`knob=value,...` of a fake provider's faults dataclass (`reconciler fake ...`), each value read as its
    knob's type: words separated by | for a tuple, true/false for a bool, none for an optional value."""

    name = "KNOB=VALUE,..."

    def __init__(self, faults: type, example: str) -> None:
        self.faults = faults
        self.example = example

    def convert(self, value, param, ctx) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        defaults, knobs = self.faults(), {}
        for item in filter(None, (part.strip() for part in value.split(","))):
            name, _, raw = item.partition("=")
            if name.startswith("_") or not hasattr(defaults, name) or not raw:
                self.fail(f"{item!r}: expected knob=value with a knob of {self.faults.__name__}, e.g. {self.example}",
                          param, ctx)
            default = getattr(defaults, name)
            try:
                if raw.lower() == "none" and default is None:
                    knobs[name] = None
                elif isinstance(default, bool):
                    knobs[name] = {"true": True, "false": False}[raw.lower()]
                elif isinstance(default, tuple):
                    knobs[name] = tuple(raw.split("|"))
                elif isinstance(default, (int, float)):
                    knobs[name] = type(default)(raw)
                else:
                    knobs[name] = raw
            except (KeyError, ValueError):
                self.fail(f"{item!r}: {raw!r} is not a {type(default).__name__}", param, ctx)
        return knobs
