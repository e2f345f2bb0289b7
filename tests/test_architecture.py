"""The house rules that keep a second provider a new folder: read from the code's own imports."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROVIDER_FREE = ("engine", "http", "coordination", "webhooks")
SQL_BUILDERS = {"select", "insert", "update", "delete", "text", "bindparam", "literal_column"}


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) for every import in the file, wherever it stands (also inside functions)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


@pytest.mark.parametrize("package", PROVIDER_FREE)
def test_the_engine_and_its_shared_pieces_never_import_a_provider(package: str) -> None:
    offenders = [f"{path.relative_to(ROOT)}: {module}"
                 for path in sorted((ROOT / "reconciler" / package).rglob("*.py"))
                 for module, names in imports(path)
                 if module.startswith("reconciler.providers")
                 or (module == "reconciler" and "providers" in names)]
    assert offenders == []


def test_jobs_hold_no_sql() -> None:
    offenders = [f"{path.relative_to(ROOT)}: {module} {sorted(set(names) & SQL_BUILDERS)}"
                 for path in sorted((ROOT / "jobs").glob("*.py"))
                 for module, names in imports(path)
                 if module.startswith("sqlalchemy") and set(names) & SQL_BUILDERS]
    assert offenders == []


def test_the_rule_reader_sees_imports_inside_functions(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from reconciler.providers.mtn.client import MtnClient\n")
    assert imports(sample) == [("reconciler.providers.mtn.client", ["MtnClient"])]


def readme_metric_catalogue() -> dict[str, tuple[str, frozenset[str]]]:
    """The README's metric table: name -> (type, labels)."""
    rows = re.findall(r"^\| `(reconciler_\w+)` \| (\w+) \|\s*([\w, ]*?)\s*\|", (ROOT / "README.md").read_text(), re.M)
    return {name: (kind, frozenset(label.strip() for label in labels.split(",") if label.strip()))
            for name, kind, labels in rows}


def test_the_readme_lists_every_metric_the_daemon_exports_with_its_type_and_labels() -> None:
    from reconciler.app import metrics

    exported = {family.name + ("_total" if family.type == "counter" else ""): (family.type, frozenset(m._labelnames))
                for m in metrics() for family in m.describe()}
    catalogue = readme_metric_catalogue()
    assert len(exported) > 20
    assert {name: kind for name, kind in exported.items() if catalogue.get(name) != kind} == {}


def test_jobs_open_no_transaction_of_their_own() -> None:
    """A job reads as a story (claim, call, record); where its writes begin and end is the store's business."""
    offenders = [f"{path.relative_to(ROOT)}:{node.lineno}"
                 for path in sorted((ROOT / "jobs").glob("*.py"))
                 for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.Attribute) and node.attr in ("begin", "connect", "execute")]
    assert offenders == []
