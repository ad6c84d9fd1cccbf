"""Schemathesis walks every operation of /openapi.json with an export token (it may do every one): no 5xx, and
every answer matches the schema, status code and content type the document declares."""

import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings

from tests.payloads import openai_chat

EXAMPLES = 25  # per operation; bounded so that the walk stays a minute or two per store
# Opaque values the schema cannot describe fully (a cursor is a string, yet only one handed out is valid) are
# rightly refused with a 400; that is not a violation of the document, so schemathesis's guess that every
# schema-valid request must succeed is left out. Every conformance check stays.
EXCLUDED = [schemathesis.checks.positive_data_acceptance]


def test_every_operation_answers_as_documented(live_server, reader, export_token, app_keys):
    for text in ("hello", "=1+1", "second"):  # something to list, read and export
        assert reader.post("/track", json=openai_chat(app_keys, text=text)).status_code == 201
    schema = schemathesis.openapi.from_url(f"{live_server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15, [o.label for o in operations]
    for operation in operations:
        @hypothesis_settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                             suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def call(case):
            case.call_and_validate(base_url=live_server.url, headers={"Authorization": f"Bearer {export_token}"},
                                   excluded_checks=EXCLUDED)

        call()
