"""Schemathesis against the API's own OpenAPI document: requests generated from each
operation's schema (valid and invalid ones) never get a server error, and every refusal is
a problem document. Bounded: :data:`EXAMPLES` per operation and mode, well under a minute.

The operations are driven by hand with Hypothesis (``as_strategy``), one served API for
all of them: schemathesis's pytest plugin does not run under this pytest.
"""

from __future__ import annotations

from collections.abc import Callable

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fixtures.api import make_token, serve_api
from tests.fixtures.stack import Stack

#: examples per operation and generation mode
EXAMPLES = 50


def test_no_generated_request_gets_a_server_error(
    make_stack: Callable[..., Stack], pg_url: str, redis_url: str
) -> None:
    from tests.fixtures.services import clean_ledger

    stack = make_stack(pg_url, redis_url)
    clean_ledger(stack.db)
    token = make_token(stack.db, "fuzz", "send", "read", "admin")
    checked: list[str] = []
    statuses: list[int] = []
    with serve_api(stack.settings) as url:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        schema.config.update(base_url=url)
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @given(case=operation.as_strategy(generation_mode=mode))
                @settings(max_examples=EXAMPLES, deadline=None, database=None,
                          suppress_health_check=list(HealthCheck))
                def run(case: schemathesis.Case) -> None:
                    response = case.call(headers={"Authorization": f"Bearer {token}"},
                                         timeout=30)
                    status = response.status_code
                    statuses.append(status)
                    health = case.path.startswith("/v1/health") and status == 503
                    assert status < 500 or health, (
                        case.method, case.path, status, response.text[:300]
                    )
                    # the answer is what the document says: a documented status, its media
                    # type, its schema
                    case.validate_response(response, checks=[
                        status_code_conformance, content_type_conformance,
                        response_schema_conformance,
                    ])
                    if 400 <= status < 500:
                        content_type = response.headers.get("content-type", [""])[0]
                        assert content_type.startswith("application/problem+json"), (
                            case.method, case.path, status, content_type
                        )
                        assert "Traceback" not in response.text

                try:
                    run()
                except Unsatisfiable:
                    # nothing to make invalid (an operation without parameters or body)
                    assert mode is GenerationMode.NEGATIVE, operation.path
            checked.append(f"{operation.method.upper()} {operation.path}")
    assert len(checked) >= 10, checked
    # it did reach the routes: answers, and refusals
    assert {200, 422} <= set(statuses), sorted(set(statuses))
    assert len(statuses) >= 10 * EXAMPLES
