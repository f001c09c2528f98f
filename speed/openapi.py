"""The OpenAPI 3.1 description of the prediction service, built from the same definitions it validates with.

It says what the service enforces, no more and no less: each served workload's request schema is its request
model's (``core.events.request_model_of``: ranges, the timestamp pattern with its years, required fields), the
feature endpoint's columns are those of the default workload's features with their types and ranges, responses
name their required fields and allow nothing else, and every ``/v1`` operation documents 401 when an API key is
configured.
"""

from __future__ import annotations

from typing import Any

from core.events import request_model_of
from core.settings import Settings
from core.workload import DEFAULT, Workload
from core.workload import default as default_workload


def _closed(properties: dict[str, Any]) -> dict[str, Any]:
    """An object with exactly these properties, all required."""
    return {"type": "object", "required": list(properties), "additionalProperties": False, "properties": properties}


def _feature_column(f: Any, max_rows: int) -> dict[str, Any]:
    item = ({"type": "integer", "minimum": 0, "maximum": f.cardinality - 1} if f.kind == "categorical"
            else {"type": "number"})
    return {"type": "array", "minItems": 1, "maxItems": max_rows, "items": item,
            "description": "One value per id, in the same order (the service refuses another length)."}


def _schemas(wl: Workload, max_batch: int) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(request schema name, component schemas, request body schema) of one workload's predict operation."""
    model = request_model_of(wl.name)
    name = model.__name__
    request_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    request_schema.pop("$defs", None)
    key, field, batch_key = wl.request.key, wl.prediction_field, wl.batch_key
    # A single request is any object but the batch form: an object with the batch key is read as a batch.
    single = {"allOf": [{"$ref": f"#/components/schemas/{name}"}, {"not": {"required": [batch_key]}}]}
    batch = {"type": "object", "required": [batch_key], "properties": {batch_key: {
        "type": "array", "minItems": 1, "maxItems": max_batch, "items": {"$ref": f"#/components/schemas/{name}"}}}}
    prefix = "" if wl.name == DEFAULT else wl.name.capitalize()
    value = {"type": "number", "minimum": 0, "maximum": 1} if wl.task.kind == "binary" else {"type": "number"}
    components = {
        name: request_schema,
        f"{prefix}Prediction": _closed({key: {"type": "string"}, field: value, "model_version": {"type": "string"}}),
        f"{prefix}BatchPrediction": _closed({"model_version": {"type": "string"}, "predictions": {
            "type": "array", "items": _closed({key: {"type": "string"}, field: value})}}),
    }
    return prefix, components, {"oneOf": [single, batch]}


def _features_operation(wl: Workload, max_rows: int, security: list, errors: dict[str, Any]) -> dict[str, Any]:
    """``POST .../predict/features`` of one workload: its feature columns, computed elsewhere (the stream)."""
    ids = "trip_ids" if wl.name == DEFAULT else "ids"
    prefix = "" if wl.name == DEFAULT else wl.name.capitalize()
    feature_set = wl.features
    return {"post": {
        "summary": f"Predict with the {wl.name} model from feature columns already computed with its features "
                   "(used by the stream)",
        "security": security,
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": [ids, "features"], "properties": {
                ids: {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": max_rows},
                "features": {"type": "object", "required": list(feature_set.FEATURE_NAMES), "properties": {
                    f.name: _feature_column(f, max_rows) for f in feature_set.FEATURES}}}}}}},
        "responses": {
            "200": {"description": "Predictions", "content": {"application/json": {"schema": {
                "$ref": f"#/components/schemas/{prefix}BatchPrediction"}}}},
            **errors,
        }}}


def spec(settings: Settings, workloads: list[Workload] | None = None) -> dict[str, Any]:
    """The description of a service serving ``workloads`` (every served one: ``speed.predictor.served_workloads``)."""
    from speed.predictor import served_workloads

    s = settings.speed
    served = workloads if workloads is not None else served_workloads(settings)
    error = {"type": "object", "required": ["error"], "properties": {
        "error": {"type": "string"},
        "field": {"type": "string", "description": "The failing field: a request field, or one of a batch's "
                                                   "(`<batch key>[3].<field>`)"},
        "details": {"type": "array", "items": {"type": "object"}},
        "retry_after_s": {"type": "integer"}}}
    err = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    security = [{"ApiKey": []}] if s.api_key else []
    keyed = {"401": {"description": "Missing or wrong X-API-Key", "content": err}} if s.api_key else {}
    overloaded = {"503": {"description": "No model loaded yet, or overloaded (with Retry-After)", "content": err}}
    too_large = {"413": {"description": f"Body over {s.max_body_bytes} bytes or more than {s.max_batch_trips} "
                                        "requests in a batch", "content": err}}
    bad = {"400": {"description": "Invalid body; `field` names what is wrong", "content": err}}
    schemas: dict[str, Any] = {"Error": error}
    predict_paths: dict[str, Any] = {}
    for wl in served:
        prefix, components, body = _schemas(wl, s.max_batch_trips)
        schemas |= components
        path = "/v1/predict" if wl.name == DEFAULT else f"/v1/{wl.name}/predict"
        also = f" (also at /v1/{wl.name}/predict)" if wl.name == DEFAULT else ""
        predict_paths[path] = {"post": {
            "summary": f"Predict with the {wl.name} model ({wl.model_name}) for one request or a batch under "
                       f"`{wl.batch_key}`{also}",
            "security": security,
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {
                "200": {"description": "Predictions and the model version that made them",
                        "content": {"application/json": {"schema": {"oneOf": [
                            {"$ref": f"#/components/schemas/{prefix}Prediction"},
                            {"$ref": f"#/components/schemas/{prefix}BatchPrediction"}]}}}},
                **bad, **keyed, **too_large, **overloaded,
            }}}
    schemas.setdefault("BatchPrediction", _schemas(default_workload(), s.max_batch_trips)[1]["BatchPrediction"])
    return {
        "openapi": "3.1.0",
        "info": {"title": "lambdaml prediction service", "version": "1",
                 "description": "Predictions from each workload's production model, held in memory: "
                                + ", ".join(f"{wl.name} ({wl.model_name})" for wl in served) + "."},
        "servers": [{"url": s.url}],
        "paths": {
            **predict_paths,
            **{("/v1/predict/features" if wl.name == DEFAULT else f"/v1/{wl.name}/predict/features"):
               _features_operation(wl, s.max_batch_trips, security, {**bad, **keyed, **overloaded, "413": {
                   "description": "Too many rows", "content": err}}) for wl in served},
            **{("/v1/models/current" if wl.name == DEFAULT else f"/v1/{wl.name}/models/current"): {"get": {
                "summary": f"The {wl.name} model version being served", "security": security,
                "responses": {"200": {"description": "Model version and metrics", "content": {"application/json": {
                    "schema": {"type": "object", "required": ["name", "version", "sha256", "workload"]}}}},
                    **keyed, "503": {"description": "No model loaded yet", "content": err}}}} for wl in served},
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "Up"}}}},
            "/readyz": {"get": {
                "summary": "Readiness: true once the taxi model (or the named workload's) is loaded; `models` gives "
                           "every served workload's version",
                "parameters": [{"name": "workload", "in": "query", "required": False,
                                "schema": {"type": "string", "enum": [wl.name for wl in served]}}],
                "responses": {"200": {"description": "Ready"}, "503": {"description": "Not ready"},
                              "404": {"description": "Not a served workload"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "Text format"}}}},
            "/openapi.json": {"get": {"summary": "This description", "responses": {"200": {"description": "OpenAPI"}}}},
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
    }
