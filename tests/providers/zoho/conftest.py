"""The fake Zoho held to Zoho's OpenAPI documents: `zoho_inspector` records every violation and fails the
test that caused one at teardown; `make_fake_zoho(...)` starts fakes that use it (stopped afterwards)."""
from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest

from reconciler.providers.zoho.fake import FakeZoho

from tests.providers.zoho.documents import ZohoInspector, require_documents


@pytest.fixture
def zoho_inspector() -> Iterator[ZohoInspector]:
    inspector = ZohoInspector(require_documents())
    yield inspector
    assert not inspector.violations, "the fake Zoho saw or sent what Zoho's documents do not allow:\n" + "\n".join(
        inspector.violations)


@pytest.fixture
def make_fake_zoho(zoho_inspector: ZohoInspector) -> Iterator[Callable[..., FakeZoho]]:
    started: list[FakeZoho] = []

    def make(**kwargs: Any) -> FakeZoho:
        fake = FakeZoho(inspector=zoho_inspector, **kwargs).start()
        started.append(fake)
        return fake

    yield make
    for fake in started:
        fake.stop()


@pytest.fixture
def fake_zoho(make_fake_zoho: Callable[..., FakeZoho]) -> FakeZoho:
    return make_fake_zoho()
