"""The intake held to its OpenAPI document, on SQLite and PostgreSQL: schemathesis (pinned in setup.cfg's test
extra) runs every phase (examples, coverage, fuzzing, and stateful runs along the document's links) with every
check (server errors, status codes, content types, headers, response schemas, valid data accepted, invalid data
rejected, missing headers, unsupported methods, auth enforced ...) against the live listener (waitress, a real
socket). Bounded: 50 examples per operation (some 500 requests), a fixed seed (SCHEMATHESIS_SEED changes it)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from reconciler.engine.clock import utcnow

from tests.providers.zoho.intake_server import KEY, intake_config, serve

ROOT = Path(__file__).resolve().parents[3]
MAX_EXAMPLES = 50


def test_the_server_keeps_to_its_openapi_document_under_every_check(engine, tmp_path):
    server = serve(intake_config(requests_per_minute=1_000_000), engine, utcnow)
    try:
        run = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run",
             f"http://127.0.0.1:{server.port}/t2mobile/openapi.json", "--checks", "all",
             "-H", f"Authorization: Bearer {KEY}", "--max-examples", str(MAX_EXAMPLES),
             "--seed", os.environ.get("SCHEMATHESIS_SEED", "1"), "--workers", "1", "--generation-database", "none",
             "--request-timeout", "10", "--no-color"],
            env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.providers.zoho.schemathesis_hooks",
                 "PYTHONPATH": str(ROOT)},
            cwd=tmp_path, capture_output=True, text=True, timeout=300)  # its cache of past failures stays there
    finally:
        server.stop()
    report = run.stdout[-8000:] + run.stderr[-2000:]
    assert run.returncode == 0, report
    generated = re.search(r"(\d+) generated", run.stdout)
    assert generated and int(generated.group(1)) >= 300, report
    assert "Selected: 4/4" in run.stdout, report  # every operation but the document itself, which schemathesis skips
