"""Errors a person sees: one line that says what to do, the documented exit code (1 failure, 2 usage or config
error), no traceback, never a password."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from reconciler.cli.root import cli
from reconciler.engine.db import make_engine
from reconciler.engine.migrate import migrate
from reconciler.providers.mtn.fake import FakeMtn

from tests.conftest import PG_ADMIN_URL

PASSWORD = "S3cretPassw0rd"


def invoke(*args: str, **env: str):
    return CliRunner().invoke(cli, list(args), env={"RECONCILER_CONFIG": None, **env})


def assert_one_line(result, exit_code: int, *phrases: str) -> str:
    """The answer is one line on the terminal, with the exit code, the phrases, no traceback and no password."""
    output = result.output.strip()
    assert result.exit_code == exit_code, result.output
    assert len(output.splitlines()) == 1 and "Traceback" not in output and PASSWORD not in output, output
    for phrase in phrases:
        assert phrase in output
    return output


def pg_url(**parts) -> str:
    """The test server's URL with some parts changed (a database or role that does not exist, another port)."""
    return make_url(PG_ADMIN_URL).set(password=PASSWORD, **parts).render_as_string(hide_password=False)


@pytest.fixture
def postgres(pg_admin):
    if pg_admin is None:
        pytest.skip("PostgreSQL unavailable")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_postgres_url_is_accepted_like_postgresql_and_its_password_never_shown(postgres):
    url = pg_url().replace("postgresql://", "postgres://")
    result = invoke("check-config", "--connect", RECONCILER_DATABASE_URL=url)
    assert result.exit_code == 1  # reachable, but not migrated: see below
    assert f"postgres://{make_url(PG_ADMIN_URL).username}:***@" in result.stdout and PASSWORD not in result.output


@pytest.mark.parametrize("url", ["postgresql://me:{pw}@db.example:5x432/shop", "postgres://me:{pw}@db.example:99999/shop",
                                 "mysql://me:{pw}@db.example/shop", "postgresql//me:{pw}@db.example/shop"])
def test_a_bad_database_url_is_a_config_error_naming_the_key_with_the_password_masked(url):
    result = invoke("status", RECONCILER_DATABASE_URL=url.format(pw=PASSWORD))
    assert_one_line(result, 2, "config error: database.url:")


def test_a_read_only_command_on_a_missing_sqlite_file_says_migrate_and_creates_nothing(tmp_path):
    path = tmp_path / "reconciler.db"
    for command in (["status"], ["webhooks", "list"], ["retry", "A-1"]):
        result = invoke(*command, RECONCILER_DATABASE_URL=f"sqlite:///{path}")
        assert_one_line(result, 1, "does not exist", "run `reconciler db migrate`")
    assert not path.exists()


def test_every_command_on_an_unmigrated_database_says_run_db_migrate(db_url):
    if db_url.startswith("sqlite"):
        make_engine(db_url).connect().close()  # the file exists, empty
    for command in (["status"], ["enqueue", "mtn", "--phone", "0241234567", "--size", "1"], ["webhooks", "list"]):
        result = invoke(*command, RECONCILER_DATABASE_URL=db_url)
        assert_one_line(result, 1, "has no reconciler schema: run `reconciler db migrate`")
    assert invoke("db", "migrate", RECONCILER_DATABASE_URL=db_url).exit_code == 0
    assert invoke("status", RECONCILER_DATABASE_URL=db_url).exit_code == 0


@pytest.mark.parametrize("parts, cause", [
    ({"database": "no_such_database"}, 'database "no_such_database" does not exist'),
    ({"username": "no_such_role"}, 'role "no_such_role" does not exist'),
    ({"port": None}, "Connection refused"),
])
def test_an_unreachable_database_is_reported_with_the_drivers_cause(postgres, parts, cause):
    if "port" in parts:
        parts = {"port": closed_port()}
    result = invoke("status", RECONCILER_DATABASE_URL=pg_url(**parts))
    assert_one_line(result, 1, "cannot use the database:", cause, "check database.url")


def test_an_out_of_range_cli_value_is_a_usage_error(tmp_path):
    result = invoke("enqueue", "mtn", "--phone", "0241234567", "--size", "99999999999",
                    RECONCILER_DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}")
    assert result.exit_code == 2 and "Traceback" not in result.output and "--size" in result.output


def test_version_comes_from_the_package_metadata():
    from importlib.metadata import version

    result = invoke("--version")
    assert result.exit_code == 0 and result.output.strip() == f"reconciler, version {version('reconciler')}"


def test_check_config_connect_checks_the_database_and_each_configured_provider(db_url):
    engine = make_engine(db_url)
    with FakeMtn() as fake:
        env = {"RECONCILER_DATABASE_URL": db_url, "RECONCILER_MTN_BASE_URL": fake.url,
               "RECONCILER_MTN_API_KEY": fake.api_key}
        unmigrated = invoke("check-config", "--connect", **env)
        assert unmigrated.exit_code == 1
        [database] = [line for line in unmigrated.stdout.splitlines() if line.startswith("database:")]
        assert database.startswith("database: FAILED: ") and database.endswith("run `reconciler db migrate`")
        assert "mtn: ok (balance " in unmigrated.stdout
        migrate(engine)
        good = invoke("check-config", "--connect", **env)
        assert good.exit_code == 0, good.output
        assert "database: ok (reachable, schema current)" in good.stdout and "mtn: ok (balance " in good.stdout
        wrong_key = invoke("check-config", "--connect", **{**env, "RECONCILER_MTN_API_KEY": "wrong"})
        assert wrong_key.exit_code == 1 and "mtn: FAILED: " in wrong_key.stdout
    engine.dispose()
    assert invoke("check-config", **env).exit_code == 0  # without --connect nothing is reached


# `reconciler run` as a person starts it: a real process, stopped by SIGTERM.

def start_daemon(tmp_path: Path, **env: str) -> subprocess.Popen:
    settings = {"RECONCILER_ADMIN_PORT": str(closed_port()), "RECONCILER_RECEIVER_PORT": "0",
                "RECONCILER_RECEIVER_HOST": "127.0.0.1", **env}
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    return subprocess.Popen([sys.executable, "-m", "reconciler", "run"], cwd=tmp_path, env={**environ, **settings},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(daemon: subprocess.Popen, timeout: float = 20) -> tuple[int, str]:
    try:
        output, _ = daemon.communicate(timeout=timeout)
    finally:
        daemon.kill()
    return daemon.returncode, output


def test_run_answers_healthz_and_says_why_it_is_not_ready_while_the_database_is_unreachable(postgres, tmp_path):
    admin_port = closed_port()
    daemon = start_daemon(tmp_path, RECONCILER_DATABASE_URL=pg_url(database=f"missing_{uuid.uuid4().hex[:8]}"),
                          RECONCILER_ADMIN_PORT=str(admin_port))
    try:
        base = f"http://127.0.0.1:{admin_port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                ready = requests.get(base + "/readyz", timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and daemon.poll() is None, "the admin listener never came up"
                time.sleep(0.1)
        assert ready.status_code == 503 and "does not exist" in ready.text and PASSWORD not in ready.text
        assert requests.get(base + "/healthz", timeout=5).status_code == 200
    finally:
        daemon.send_signal(signal.SIGTERM)
        code, output = finish(daemon)
    assert code == 0
    assert "database unavailable at start: connection failed:" in output and "does not exist" in output
    assert PASSWORD not in output


@pytest.mark.parametrize("which", ["admin", "receiver"])
def test_run_on_a_port_in_use_says_which_key_in_one_line(tmp_path, which):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        daemon = start_daemon(tmp_path, RECONCILER_DATABASE_URL=f"sqlite:///{tmp_path / 'r.db'}",
                              **{f"RECONCILER_{which.upper()}_PORT": port})
        code, output = finish(daemon)
    assert code == 1
    [error] = [line for line in output.splitlines() if "Error" in line]
    assert error.startswith(f"Error: {which}.port: 127.0.0.1:{port} is in use") and "Address already in use" in error
    assert "Traceback" not in output


def test_run_on_a_host_that_is_not_this_machine_is_a_config_error(tmp_path):
    daemon = start_daemon(tmp_path, RECONCILER_DATABASE_URL=f"sqlite:///{tmp_path / 'r.db'}",
                          RECONCILER_RECEIVER_HOST="no-such-host.invalid")
    code, output = finish(daemon)
    assert code == 2 and "Traceback" not in output
    assert "config error: receiver.host: cannot listen on 'no-such-host.invalid'" in output
