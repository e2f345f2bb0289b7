"""Zoho's own OpenAPI documents (../shared/reference/zoho-books/ beside the repository) held against the fake
Zoho: every request it receives and every answer it sends, with openapi-core.

The documents describe success answers only; an error answer (4xx/5xx) is held to Zoho's error envelope
(`{"code": <non-zero int>, "message": <text>}`) instead. The accounts server's token endpoint (its
parameters in the query string, as Zoho's examples send them, or in a form body, as OAuth 2.0 does) and
GET /organizations/{id} are in none of the three documents: their shape is checked here by hand.
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import yaml
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.responses.exceptions import ResponseNotFound
from werkzeug.datastructures import Headers, ImmutableMultiDict

from reconciler.providers.zoho.fake import API_ROOT, TOKEN_PATH, ZohoRequest

DOCUMENTS_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "reference" / "zoho-books"
DOCUMENTS = {"/salesorders": "sales-order.yml", "/contacts": "contacts.yml", "/items": "items.yml"}
SERVER = "https://www.zohoapis.com"  # the documents' server: requests are matched as if sent there
TOKEN_PARAMETERS = {"refresh_token", "client_id", "client_secret", "grant_type"}


def _errata(name: str, document: dict[str, Any]) -> None:
    """Where the published documents contradict Zoho's real answers, corrected in memory (the files stay as
    published): sales-order.yml declares `salesorder` in the create and get answers as an array of sales
    orders, but Zoho answers one object, as its own examples and every client library read it."""
    if name == "sales-order.yml":
        schemas = document["components"]["schemas"]
        schemas["salesorder"] = {"$ref": "#/components/schemas/salesorder-response"}
        answer = schemas["get-a-sales-order-response"]["properties"]
        answer["salesorder"] = answer["salesorder"]["items"]


class ZohoDocuments:
    """The three documents, loaded once (about a second of parsing) and shared by every test of a session."""

    _loaded: "ZohoDocuments | None" = None
    _lock = threading.Lock()

    def __init__(self, directory: Path) -> None:
        self.apis: dict[str, OpenAPI] = {}
        for prefix, name in DOCUMENTS.items():
            document = yaml.load((directory / name).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            _errata(name, document)
            self.apis[prefix] = OpenAPI.from_dict(document)

    @classmethod
    def load(cls) -> "ZohoDocuments":
        with cls._lock:
            if cls._loaded is None:
                cls._loaded = cls(DOCUMENTS_DIR)
            return cls._loaded

    def api_for(self, path: str) -> OpenAPI | None:
        rest = path[len(API_ROOT):] if path.startswith(API_ROOT) else ""
        return next((api for prefix, api in self.apis.items() if rest == prefix or rest.startswith(prefix + "/")),
                    None)


def require_documents() -> ZohoDocuments:
    """The documents, or the test skips saying where they were looked for (fails in CI, which has ../shared)."""
    if not all((DOCUMENTS_DIR / name).is_file() for name in DOCUMENTS.values()):
        reason = f"Zoho's OpenAPI documents are not at {DOCUMENTS_DIR}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}: CI must have ../shared beside the clone")
        pytest.skip(reason)
    return ZohoDocuments.load()


class _OpenApiRequest:
    """openapi-core's request protocol over what the fake received (openapi-core fills in `parameters.path`,
    so the parameters are built once)."""

    host_url = SERVER

    def __init__(self, request: ZohoRequest) -> None:
        self.path = request.path
        self.full_url_pattern = SERVER + request.path
        self.method = request.method.lower()
        self.parameters = RequestParameters(query=ImmutableMultiDict(list(request.query)),
                                            header=Headers(request.headers), cookie=ImmutableMultiDict(), path={})
        self.body = request.body or None
        self.content_type = request.content_type


@dataclass(frozen=True)
class _OpenApiResponse:
    status_code: int
    data: bytes
    content_type: str = "application/json"

    @property
    def headers(self) -> Headers:
        return Headers({"Content-Type": self.content_type})


class ZohoInspector:
    """The fake's inspector: records every violation (a test's fixture asserts none at teardown)."""

    def __init__(self, documents: ZohoDocuments) -> None:
        self.documents = documents
        self.violations: list[str] = []
        self.checked = 0
        self._lock = threading.Lock()

    def check_request(self, request: ZohoRequest) -> str | None:
        problem = self._request_problem(request)
        self._record(request, "request", problem)
        return problem

    def check_response(self, request: ZohoRequest, status: int, body: bytes) -> None:
        self._record(request, f"answer {status}", self._response_problem(request, status, body))

    def _record(self, request: ZohoRequest, what: str, problem: str | None) -> None:
        with self._lock:
            self.checked += 1
            if problem is not None:
                self.violations.append(f"{request.method} {request.path} {what}: {problem}")

    def _request_problem(self, request: ZohoRequest) -> str | None:
        if request.path == TOKEN_PATH:
            form = parse_qsl(request.body.decode()) if request.content_type == "application/x-www-form-urlencoded" \
                else []
            missing = TOKEN_PARAMETERS - {key for key, _ in (*request.query, *form)}
            return f"token request without {', '.join(sorted(missing))}" if missing else None
        api = self.documents.api_for(request.path)
        if api is None:
            return None if request.path.startswith(API_ROOT + "/organizations") else "no document describes this path"
        try:
            api.validate_request(_OpenApiRequest(request))
        except Exception as exc:  # openapi-core's errors: a path, parameter or body the document does not allow
            return _explain(exc)
        return None

    def _response_problem(self, request: ZohoRequest, status: int, body: bytes) -> str | None:
        try:
            document = json.loads(body)
        except ValueError:
            return "not JSON"
        if request.path == TOKEN_PATH:
            if "error" in document or {"access_token", "expires_in", "token_type", "api_domain"} <= set(document):
                return None
            return f"not a token answer: {sorted(document)}"
        if status >= 400:
            good = isinstance(document.get("code"), int) and document["code"] != 0 and isinstance(
                document.get("message"), str)
            return None if good else f"not Zoho's error envelope: {document}"
        api = self.documents.api_for(request.path)
        if api is None:
            return None if document.get("code") == 0 else f"code {document.get('code')!r} with HTTP {status}"
        try:
            api.validate_response(_OpenApiRequest(request), _OpenApiResponse(status, body))
        except ResponseNotFound:
            return f"HTTP {status} is not a documented answer"
        except Exception as exc:
            return _explain(exc)
        return None


def _explain(exc: Exception) -> str:
    details = [error.message for error in getattr(exc.__cause__, "schema_errors", ()) or ()]
    return f"{type(exc).__name__}: {exc}" + (f" ({'; '.join(details)})" if details else "")
