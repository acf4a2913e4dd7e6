"""The OpenAPI 3.1 document at /api/v1/openapi.json matches the implementation
(R-REPO-1; issue #4: "an OpenAPI 3.1 document that matches the implementation").

(a) Every route under /api/v1 is described with the same methods and path parameters,
every described path exists, and the document is valid OpenAPI 3.1: against the
official 3.1 schema (the copy schemathesis ships, checked with jsonschema_rs) and every
Schema Object against the JSON Schema 2020-12 meta-schema; every ``$ref`` resolves.

(b) schemathesis fuzzes every operation, authenticated with a token holding every
scope and with a strong (TOTP) session cookie: no response is a server error, and
every response's status, content type and body conform to the document.
"""

from __future__ import annotations

import re

import jsonschema_rs
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from access.openapi import document
from tests.accounts import WebArchive
from tests.conftest import make_archive_env

API = "/api/v1"
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture
def app(local_archive):
    web = WebArchive(local_archive)
    yield web.app
    web.close()


def _served(app) -> dict:
    response = app.test_client().get(f"{API}/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    return response.get_json()


# ---- (a) the document describes exactly the routes ----------------------------------


def test_every_route_is_documented_and_every_documented_path_exists(app):
    doc = _served(app)
    assert doc == document()
    documented = {(path, method.upper()) for path, item in doc["paths"].items()
                  for method in item if method in HTTP_METHODS}
    routes = set()
    parameters = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(API):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        parameters[path] = set(rule.arguments)
        routes |= {(path, method) for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert routes == documented, {"undocumented": sorted(routes - documented),
                                  "no such route": sorted(documented - routes)}
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == parameters[path], (method, path)
            assert operation["responses"], (method, path)
            assert operation.get("summary"), (method, path)


def _walk(node, path=()):
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, (*path, index))


def _schema_objects(doc: dict):
    """Every Schema Object of the document (components, parameters, media types)."""
    yield from doc["components"]["schemas"].items()
    for path, node in _walk(doc["paths"]):
        if "schema" in node and isinstance(node["schema"], dict):
            yield "/".join(map(str, path)), node["schema"]


def test_the_document_is_valid_openapi_3_1(app):
    from schemathesis.specs.openapi.definitions import OPENAPI_31

    doc = _served(app)
    assert doc["openapi"].startswith("3.1.")
    validator = jsonschema_rs.Draft202012Validator(OPENAPI_31)
    errors = [f"{'/'.join(map(str, e.instance_path))}: {e.message}"
              for e in validator.iter_errors(doc)]
    assert not errors, errors
    for where, schema in _schema_objects(doc):
        jsonschema_rs.meta.validate(schema)  # raises naming the problem
        assert where
    for where, node in _walk(doc):
        ref = node.get("$ref")
        if isinstance(ref, str):
            assert ref.startswith("#/"), (where, ref)
            target = doc
            for part in ref[2:].split("/"):
                assert part in target, (where, ref)
                target = target[part]
    # Each operation's security is the document's default unless it says otherwise.
    assert doc["security"] == [{"bearer": []}, {"session": []}]
    assert set(doc["components"]["securitySchemes"]) == {"bearer", "session"}
    # The served document is what schemathesis loads without complaint (it leaves out
    # the document's own path).
    loaded = schemathesis.openapi.from_wsgi(f"{API}/openapi.json", app)
    labels = {r.ok().label for r in loaded.get_all_operations()}
    assert labels == {f"{method.upper()} {path}" for path, item in doc["paths"].items()
                      for method in item if method in HTTP_METHODS} - {
        f"GET {API}/openapi.json"}


# ---- (b) fuzzing from the document --------------------------------------------------

# Credentials are sent by the test (a token or a session cookie), so schemathesis
# does not make up values for the security schemes. Few examples per operation keep the
# run under two minutes; a fixed seed makes it repeatable.
CONFIG = schemathesis.Config.from_dict({"generation": {
    "max-examples": 8, "deterministic": True, "database": "none",
    "with-security-parameters": False}})
SCHEMA = schemathesis.openapi.from_dict(document(), config=CONFIG)


class Fuzz:
    """An archive with records, a token with every scope, and strong (TOTP) sessions of
    an auditor and an administrator (between them every operation can answer 200)."""

    def __init__(self, web: WebArchive):
        from tests.test_api import CORPUS, ingest

        self.web = web
        self.records = [ingest(web.aenv, name, **meta)[0] for name, meta in CORPUS.items()]
        self.token = web.token(["records:read", "records:download", "records:ingest",
                                "agents:read", "audit:read"], clearance="toi-mat",
                               fonds=("PHONG-01", "PHONG-09"))
        web.add_user("kiem", "auditor", "mat", fonds=("*",))
        web.add_user("quantri", "administrator")
        self.cookies = {name: web.login(name).get_cookie("kls_session").value
                        for name in ("kiem", "quantri")}

    def call(self, case, credentials: str, *, negative_check: bool = True):
        from schemathesis.checks import not_a_server_error
        from schemathesis.specs.openapi import checks

        if credentials == "token":
            response = case.call(app=self.web.app,
                                 headers={"Authorization": f"Bearer {self.token}"})
        else:
            response = case.call(app=self.web.app,
                                 cookies={"kls_session": self.cookies[credentials]})
        wanted = [not_a_server_error, checks.status_code_conformance,
                  checks.content_type_conformance, checks.response_schema_conformance]
        if negative_check:
            wanted.append(checks.negative_data_rejection)  # invalid input is refused
        case.validate_response(response, checks=wanted)
        return response


@pytest.fixture(scope="module")
def fuzz(request, tmp_path_factory):
    aenv = make_archive_env("local-sqlite", tmp_path_factory.mktemp("fuzz"), request)
    web = WebArchive(aenv)
    try:
        yield Fuzz(web)
    finally:
        web.close()
        aenv.close()


@SCHEMA.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
@pytest.mark.parametrize("credentials", ["token", "kiem", "quantri"])
def test_fuzzing_finds_no_server_error_and_no_undocumented_answer(case, fuzz, credentials):
    fuzz.call(case, credentials)
    if case.path_parameters and "record_id" in case.path_parameters:
        # Again for records that exist ("mật" among them), so found records' answers
        # are checked too; the id is valid now, so no rejection is expected.
        for rid in fuzz.records[:2]:
            case.path_parameters["record_id"] = rid
            fuzz.call(case, credentials, negative_check=False)
