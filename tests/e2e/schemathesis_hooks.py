"""A schemathesis check for /v1/embeddings, loaded by test_http_contract.py (SCHEMATHESIS_HOOKS).

schemathesis' own ``positive_data_acceptance`` takes a list of statuses; allowing 400 there let any
refusal of a schema-valid request pass. This check allows exactly one: ``dimensions`` above the
model's width, which no schema can state (it differs per model; OpenAI's API answers it with 400
too). Every other schema-valid request must be answered 2xx.
"""

import schemathesis


@schemathesis.check
def embeddings_accept_what_the_schema_admits(ctx, response, case):
    if case.operation.path != "/v1/embeddings" or case.meta is None or not case.meta.generation.mode.is_positive:
        return None
    if 200 <= response.status_code < 300:
        return None
    try:
        error = response.json()["error"]
    except Exception:  # noqa: BLE001
        error = {}
    if response.status_code == 400 and error.get("param") == "dimensions" and \
            str(error.get("message", "")).startswith("dimensions must be at most"):
        return None
    raise AssertionError(f"a schema-valid request was refused with {response.status_code}: {error or response.text[:300]}")
