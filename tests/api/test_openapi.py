import re

from fleet.api import api as registry


def test_openapi_document_is_public_and_lists_every_route(app) -> None:  # type: ignore[no-untyped-def]
    client = app.test_client()
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    declared = {(op.method.lower(), op.rule) for op in registry.operations}
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert len(documented) == len(declared)
    assert ("post", "/api/v1/tokens") in documented
    assert ("post", "/api/v1/tokens/{name}/credentials/generate") in documented
    # every route the app serves under /api/v1 is documented
    served = {
        (method.lower(), re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule))
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert served - {("get", "/api/v1/openapi.json")} == documented
    schemas = doc["components"]["schemas"]
    assert {"TokenCreate", "TokenOut", "ScopeMapOut", "Error"} <= set(schemas)
    assert "expirationInDays" in schemas["TokenCreate"]["properties"]
