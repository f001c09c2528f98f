"""The OpenAPI 3.1 description of the prediction service, built from the same pydantic models it validates with."""

from __future__ import annotations

from typing import Any

from core.events import TripRequest
from core.settings import Settings


def spec(settings: Settings) -> dict[str, Any]:
    trip = TripRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    trip.pop("$defs", None)
    error = {"type": "object", "required": ["error"], "properties": {
        "error": {"type": "string"}, "field": {"type": "string", "description": "The failing field, e.g. trips[3].PULocationID"},
        "details": {"type": "array", "items": {"type": "object"}}}}
    err = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    s = settings.speed
    security = [{"ApiKey": []}] if s.api_key else []
    return {
        "openapi": "3.1.0",
        "info": {"title": "lambdaml prediction service", "version": "1",
                 "description": "Trip-duration predictions from the production model, held in memory."},
        "servers": [{"url": s.url}],
        "paths": {
            "/v1/predict": {"post": {
                "summary": "Predict trip durations for one trip or a batch",
                "security": security,
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
                    {"$ref": "#/components/schemas/TripRequest"},
                    {"type": "object", "required": ["trips"], "properties": {"trips": {
                        "type": "array", "minItems": 1, "maxItems": s.max_batch_trips,
                        "items": {"$ref": "#/components/schemas/TripRequest"}}}},
                ]}}}},
                "responses": {
                    "200": {"description": "Predictions and the model version that made them",
                            "content": {"application/json": {"schema": {"oneOf": [
                                {"$ref": "#/components/schemas/Prediction"},
                                {"$ref": "#/components/schemas/BatchPrediction"}]}}}},
                    "400": {"description": "Invalid body; `field` names what is wrong", "content": err},
                    "401": {"description": "Missing or wrong X-API-Key", "content": err},
                    "413": {"description": f"Body over {s.max_body_bytes} bytes or batch over {s.max_batch_trips}",
                            "content": err},
                    "503": {"description": "No model loaded yet", "content": err},
                }}},
            "/v1/predict/features": {"post": {
                "summary": "Predict from feature columns already computed with core.features (used by the stream)",
                "security": security,
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["trip_ids", "features"], "properties": {
                        "trip_ids": {"type": "array", "items": {"type": "string"}, "maxItems": s.max_batch_trips},
                        "features": {"type": "object", "additionalProperties": {
                            "type": "array", "items": {"type": "number"}}}}}}}},
                "responses": {
                    "200": {"description": "Predictions", "content": {"application/json": {"schema": {
                        "$ref": "#/components/schemas/BatchPrediction"}}}},
                    "400": {"description": "Invalid body; `field` names what is wrong", "content": err},
                    "413": {"description": "Too many rows", "content": err},
                    "503": {"description": "No model loaded yet", "content": err},
                }}},
            "/v1/models/current": {"get": {"summary": "The model version being served", "security": security,
                                           "responses": {"200": {"description": "Model version and metrics"},
                                                         "503": {"description": "No model loaded yet"}}}},
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "Up"}}}},
            "/readyz": {"get": {"summary": "Readiness: true once a model is loaded",
                                "responses": {"200": {"description": "Ready"}, "503": {"description": "Not ready"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "Text format"}}}},
        },
        "components": {
            "schemas": {
                "TripRequest": trip,
                "Prediction": {"type": "object", "properties": {
                    "trip_id": {"type": "string"}, "predicted_duration_s": {"type": "number"},
                    "model_version": {"type": "string"}}},
                "BatchPrediction": {"type": "object", "properties": {
                    "model_version": {"type": "string"},
                    "predictions": {"type": "array", "items": {"type": "object", "properties": {
                        "trip_id": {"type": "string"}, "predicted_duration_s": {"type": "number"}}}}}},
                "Error": error,
            },
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
    }
