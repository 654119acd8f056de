"""schemathesis against ``/api/v1/openapi.json`` on a real ``fleet serve``: every operation, with
the API key, valid and invalid inputs; no answer is a 5xx and every answer matches the document
(status code, content type, body schema).

The document is loaded from the running server. The operations are listed for pytest from the
application's own document at import time (the server is not up yet) and a test proves the two
lists are the same, so no operation is left out. Each operation runs schemathesis' own Hypothesis
strategies (positive and negative data) under ``@given``: ``schemathesis.pytest.from_fixture``
reads a private pytest attribute that pytest 9.2 removed.

``FLEET_FUZZ_EXAMPLES`` is the per-operation number of generated examples: small by default so
``scripts/test`` stays quick; ``scripts/fuzz`` runs the nightly size (10,000+ requests in all).
The requests each run made are counted and printed at the end of the session.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from fleet.api import PREFIX, api
from tests.e2e.fuzz.conftest import FuzzServer, seed

pytestmark = pytest.mark.e2e  # a real fleet serve and mosquitto

DEFAULT_EXAMPLES = 20
MAX_EXAMPLES = 100_000
EXAMPLES = int(os.environ.get("FLEET_FUZZ_EXAMPLES", DEFAULT_EXAMPLES))
if not 1 <= EXAMPLES <= MAX_EXAMPLES:
    raise ValueError(f"FLEET_FUZZ_EXAMPLES must be 1..{MAX_EXAMPLES}, not {EXAMPLES}")
# What every answer is held to: the "no 5xx, every answer as documented".
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
OPERATIONS = [
    (method.upper(), path)
    for path, methods in api.document(PREFIX)["paths"].items()
    for method in methods
]
# Where a path parameter names a row; half the time it is replaced by the name of a row made
# before fuzzing (tests/e2e/fuzz/conftest.py), so requests reach real rows, not only 404s.
PATH_KINDS = (
    ("/scope-maps/", "name", "scope_map"),
    ("/tokens/", "name", "token"),
    ("/groups/", "name", "group"),
    ("", "device_id", "device"),
    ("", "secret_id", "secret_id"),
    ("", "slot", "slot"),
)


@pytest.fixture(scope="module")
def api_schema(fuzz_server: FuzzServer) -> Any:
    schema = schemathesis.openapi.from_url(
        f"{fuzz_server.url}{PREFIX}/openapi.json", headers=fuzz_server.headers
    )
    schema.config.update(base_url=fuzz_server.url, headers=fuzz_server.headers)
    # The failure reports show the bodies as sent: fields such as "passwordLifetimeDays" are
    # not secrets, and the only secret here is a throwaway test key.
    schema.config.output.sanitization.update(enabled=False)
    return schema


def _kind_of(path: str, parameter: str) -> str | None:
    for fragment, name, kind in PATH_KINDS:
        if name == parameter and fragment in path:
            return kind
    return None


def test_every_operation_of_the_served_document_is_fuzzed(api_schema: Any) -> None:
    served = sorted(
        (result.ok().method.upper(), result.ok().path) for result in api_schema.get_all_operations()
    )
    assert served == sorted(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_answer_is_documented(
    api_schema: Any, fuzz_server: FuzzServer, method: str, path: str
) -> None:
    seed(fuzz_server)
    operation = api_schema[path][method]
    cases = st.one_of(
        operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
        operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
    )

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases, data=st.data())
    def run(case: schemathesis.Case, data: st.DataObject) -> None:
        for parameter in list(case.path_parameters or {}):
            kind = _kind_of(path, parameter)
            if kind and data.draw(st.booleans(), label=f"a real {parameter}"):
                case.path_parameters[parameter] = data.draw(
                    st.sampled_from(fuzz_server.names[kind]), label=parameter
                )
        started = time.monotonic()
        response = case.call(headers=fuzz_server.headers)
        fuzz_server.record(response.status_code, time.monotonic() - started)
        case.validate_response(response, checks=CHECKS)

    run()
