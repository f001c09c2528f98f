"""The OpenAPI 3.1 description of the prediction service, built from the same definitions it validates with.

It says what the service enforces, no more and no less: the request schema is ``core.events.TripRequest``'s
(ranges, the pickup_ts pattern with its years, required fields), the feature endpoint's columns are those of
``workloads.taxi.features`` with their types and ranges, responses name their required fields and allow nothing else,
and every ``/v1`` operation documents 401 when an API key is configured.
"""

from __future__ import annotations

from typing import Any

from core.events import TripRequest
from core.settings import Settings
from core.workload import default as default_workload

features = default_workload().features


def _closed(properties: dict[str, Any]) -> dict[str, Any]:
    """An object with exactly these properties, all required."""
    return {"type": "object", "required": list(properties), "additionalProperties": False, "properties": properties}


def _feature_column(f: Any, max_rows: int) -> dict[str, Any]:
    item = ({"type": "integer", "minimum": 0, "maximum": f.cardinality - 1} if f.kind == "categorical"
            else {"type": "number"})
    return {"type": "array", "minItems": 1, "maxItems": max_rows, "items": item,
            "description": "One value per trip id, in the same order (the service refuses another length)."}


def spec(settings: Settings) -> dict[str, Any]:
    s = settings.speed
    trip = TripRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    trip.pop("$defs", None)
    # A single trip is any object but the batch form: an object with `trips` is read as a batch.
    single = {"allOf": [{"$ref": "#/components/schemas/TripRequest"}, {"not": {"required": ["trips"]}}]}
    batch = {"type": "object", "required": ["trips"], "properties": {"trips": {
        "type": "array", "minItems": 1, "maxItems": s.max_batch_trips,
        "items": {"$ref": "#/components/schemas/TripRequest"}}}}
    error = {"type": "object", "required": ["error"], "properties": {
        "error": {"type": "string"},
        "field": {"type": "string", "description": "The failing field, e.g. trips[3].PULocationID"},
        "details": {"type": "array", "items": {"type": "object"}},
        "retry_after_s": {"type": "integer"}}}
    err = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    security = [{"ApiKey": []}] if s.api_key else []
    keyed = {"401": {"description": "Missing or wrong X-API-Key", "content": err}} if s.api_key else {}
    overloaded = {"503": {"description": "No model loaded yet, or overloaded (with Retry-After)", "content": err}}
    too_large = {"413": {"description": f"Body over {s.max_body_bytes} bytes or more than {s.max_batch_trips} "
                                        "trips", "content": err}}
    bad = {"400": {"description": "Invalid body; `field` names what is wrong", "content": err}}
    prediction = _closed({"trip_id": {"type": "string"}, "predicted_duration_s": {"type": "number"},
                          "model_version": {"type": "string"}})
    batch_prediction = _closed({"model_version": {"type": "string"}, "predictions": {"type": "array", "items": _closed(
        {"trip_id": {"type": "string"}, "predicted_duration_s": {"type": "number"}})}})
    return {
        "openapi": "3.1.0",
        "info": {"title": "lambdaml prediction service", "version": "1",
                 "description": "Trip-duration predictions from the production model, held in memory."},
        "servers": [{"url": s.url}],
        "paths": {
            "/v1/predict": {"post": {
                "summary": "Predict trip durations for one trip or a batch",
                "security": security,
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "oneOf": [single, batch]}}}},
                "responses": {
                    "200": {"description": "Predictions and the model version that made them",
                            "content": {"application/json": {"schema": {"oneOf": [
                                {"$ref": "#/components/schemas/Prediction"},
                                {"$ref": "#/components/schemas/BatchPrediction"}]}}}},
                    **bad, **keyed, **too_large, **overloaded,
                }}},
            "/v1/predict/features": {"post": {
                "summary": "Predict from feature columns already computed with workloads.taxi.features "
                           "(used by the stream)",
                "security": security,
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["trip_ids", "features"], "properties": {
                        "trip_ids": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                                     "maxItems": s.max_batch_trips},
                        "features": {"type": "object", "required": list(features.FEATURE_NAMES), "properties": {
                            f.name: _feature_column(f, s.max_batch_trips) for f in features.FEATURES}}}}}}},
                "responses": {
                    "200": {"description": "Predictions", "content": {"application/json": {"schema": {
                        "$ref": "#/components/schemas/BatchPrediction"}}}},
                    **bad, **keyed, "413": {"description": "Too many rows", "content": err}, **overloaded,
                }}},
            "/v1/models/current": {"get": {
                "summary": "The model version being served", "security": security,
                "responses": {"200": {"description": "Model version and metrics", "content": {"application/json": {
                    "schema": {"type": "object", "required": ["name", "version", "sha256"]}}}},
                    **keyed, "503": {"description": "No model loaded yet", "content": err}}}},
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "Up"}}}},
            "/readyz": {"get": {"summary": "Readiness: true once a model is loaded",
                                "responses": {"200": {"description": "Ready"}, "503": {"description": "Not ready"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "Text format"}}}},
            "/openapi.json": {"get": {"summary": "This description", "responses": {"200": {"description": "OpenAPI"}}}},
        },
        "components": {
            "schemas": {"TripRequest": trip, "Prediction": prediction, "BatchPrediction": batch_prediction,
                        "Error": error},
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
    }
