"""The floors of the prediction endpoint: Flask apps that do the least a handler must.

``bench.endpoint`` runs them under the service's own gunicorn config (``speed/gunicorn_conf.py``,
same workers and threads):

- ``app``: ``POST /v1/predict`` reads the body, as any handler must, but neither parses nor
  validates nor scores it, and answers a fixed prediction-shaped JSON: what the real service costs
  above this is its own, what is below is Flask and gunicorn.
- ``model_app()``: reads the body as the service does (``core.events.parse_request``: JSON, the
  request model's validation), computes the features and runs the forward pass of a production-size
  model (``speed.predictor.predict``, one request a pass) and answers the prediction. No admission
  control, no metrics, no micro-batching, no model watcher: the work no handler that scores a
  request can skip, on top of Flask and gunicorn.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, request

PREDICTION = {"trip_id": "floor", "predicted_duration_s": 600.0, "model_version": "floor"}

app = Flask("lambdaml.bench.floor")
app.json.sort_keys = False


@app.post("/v1/predict")
def predict() -> Response:
    request.get_data(cache=False)
    return jsonify(PREDICTION)


@app.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


def model_app() -> Flask:
    """The scoring floor (gunicorn: ``bench.floor_app:model_app()``, built in each worker)."""
    import hashlib

    import torch

    from bench.endpoint import MODEL_VERSION, production_size_artifact
    from core.events import parse_request
    from core.settings import get_settings
    from speed.predictor import build
    from speed.predictor import predict as score

    torch.set_num_threads(get_settings().speed.torch_threads)
    data = production_size_artifact()
    model = build("floor-model", MODEL_VERSION, hashlib.sha256(data).hexdigest(), "memory", data)
    scoring = Flask("lambdaml.bench.floor_model")
    scoring.json.sort_keys = False

    @scoring.post("/v1/predict")
    def predict_one() -> Response:
        trip = parse_request(request.get_data(cache=False))
        return jsonify(trip_id=trip.trip_id, predicted_duration_s=round(float(score(model, [trip])[0]), 3),
                       model_version=model.version)

    scoring.add_url_rule("/healthz", view_func=healthz)
    return scoring
