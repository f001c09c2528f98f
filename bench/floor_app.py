"""The floor of the prediction endpoint: a Flask app that answers a constant.

``bench.endpoint`` runs it under the service's own gunicorn config (``speed/gunicorn_conf.py``,
same workers and threads). ``POST /v1/predict`` reads the body, as any handler must, but neither
parses nor validates nor scores it, and answers a fixed prediction-shaped JSON: what the real
service costs above this is its own, what is below is Flask and gunicorn.
"""

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
