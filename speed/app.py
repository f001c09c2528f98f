"""The prediction service: a Flask app factory with one blueprint per concern.

One service serves every workload's production model at once, each held and hot-swapped on its own
(``speed.predictor.ModelSet``):

- ``predict``: ``POST /v1/<workload>/predict`` — one request, or a batch under the workload's batch key
  (``{"rides": [...]}`` for bike); ``POST /v1/predict`` — taxi's, as before workloads (``{"trips": [...]}``);
  ``POST /v1/predict/features`` — taxi feature columns computed by the stream
- ``models``: ``GET /v1/models/current``, ``GET /v1/<workload>/models/current``
- ``health``: ``GET /healthz`` (the process is up), ``GET /readyz`` (taxi's model is loaded; every model's state)
- ``metrics``: ``GET /metrics`` (Prometheus)
- ``openapi``: ``GET /openapi.json``

Bad input never reaches the model: the body size is capped (413), a batch is
capped (413), every request is validated by its workload's request model
(``core.events.request_model_of``: ``TripRequest`` for taxi) and the first
failing field is named (400); an unknown workload is a 404 naming the known ones. With ``LAMBDAML_SPEED__API_KEY`` set,
``/v1/*`` needs the ``X-API-Key`` header (401).

Overload is refused, never queued without bound: past ``max_in_flight`` prediction requests in a
worker, or ``max_pending_trips`` trips in its micro-batcher, a request gets 503 with
``Retry-After`` and a JSON error, counted in ``lambdaml_requests_rejected_total{reason}``
(``speed.admission``). Every 503 of ``/v1/predict*`` carries ``Retry-After``.
"""

from __future__ import annotations

import functools
import hmac
import logging
import time
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from pydantic import BaseModel
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from core.events import InvalidRequest, load_json_object, request_model_of, validate_request
from core.settings import Settings, get_settings
from core.workload import DEFAULT, Workload
from speed import metrics
from speed.admission import Admission, Overloaded
from speed.batcher import MicroBatcher
from speed.predictor import LoadedModel, ModelHolder, ModelSet, check_feature_columns, predict, predict_features

log = logging.getLogger("lambdaml.speed")


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None, details: list | None = None):
        super().__init__(message)
        self.status, self.message, self.field, self.details = status, message, field, details or []


def _error(status: int, message: str, field: str | None = None, details: list | None = None,
           retry_after_s: int | None = None) -> Response:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    if details:
        body["details"] = details
    if status == 503 and retry_after_s is not None:
        body["retry_after_s"] = retry_after_s
    resp = jsonify(body)
    resp.status_code = status
    if status == 503 and retry_after_s is not None:
        resp.headers["Retry-After"] = str(retry_after_s)
    return resp


def _discard_body() -> None:
    """Read and drop the request body (at most ``max_body_bytes``) before an early answer.

    gunicorn closes a keep-alive connection whose body was left unread, and a close with unread
    data in the socket resets the connection, so the client would see a broken connection instead
    of the answer. Reading a capped body costs little next to parsing and scoring it.
    """
    try:
        while request.stream.read(65536):
            pass
    except (HTTPException, OSError, ValueError):  # over the size limit, or the client went away
        pass


def _request_body() -> bytes:
    """The body, at most ``max_body_bytes``; 413 (``RequestEntityTooLarge``) past it.

    A body with Content-Length over the limit is refused before it is read. A chunked body is read
    up to the limit only: reaching the limit means it did not fit.
    """
    raw = request.get_data(cache=False)
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is None and limit is not None and len(raw) >= limit:
        raise RequestEntityTooLarge()
    return raw


class Service:
    """What the blueprints share: settings, the held models (one holder per workload) and how a batch of
    requests is scored (one micro-batcher per workload: a batch never mixes two models)."""

    def __init__(self, settings: Settings, models: ModelSet):
        self.settings = settings
        self.models = models
        s = settings.speed
        self.admission = Admission(s.max_in_flight)
        # The model each workload serves, by workload: the ``model`` label of its metrics.
        self.model_names = {name: model for model, name in models.by_model.items()}
        self.batchers = {name: MicroBatcher(self._runner(name), s.batch_max_size, s.batch_max_wait_ms / 1000.0,
                                            on_batch=functools.partial(metrics.observe_batch, self.model_names[name]),
                                            max_pending=s.max_pending_trips)
                         for name in models.workloads} if s.micro_batching else {}

    @property
    def holder(self) -> ModelHolder:
        """The default workload's holder (taxi's: ``/v1/predict``)."""
        return self.models.holders[DEFAULT]

    @property
    def batcher(self) -> MicroBatcher | None:
        return self.batchers.get(DEFAULT)

    def workload(self, name: str) -> Workload:
        """A served workload by name; 404 naming the served ones when it is not."""
        wl = self.models.workloads.get(name)
        if wl is None:
            raise ApiError(404, f"no such workload: {name!r}; this service serves "
                                f"{', '.join(sorted(self.models.workloads))} at /v1/<workload>/predict", "workload")
        return wl

    def _runner(self, name: str):
        holder = self.models.holders[name]

        def run(requests: list[BaseModel]) -> tuple[list[float], LoadedModel]:
            model = holder.current  # one snapshot per forward pass: a swap never splits a batch
            if model is None:
                raise ApiError(503, f"no {name} model loaded yet; see GET /readyz")
            return predict(model, requests).tolist(), model

        return run

    def score(self, requests: list[BaseModel], announced: bool = False,
              workload: str = DEFAULT) -> tuple[list[float], LoadedModel]:
        """``announced``: this request was announced to the workload's batcher when it was admitted."""
        batcher = self.batchers.get(workload)
        if batcher is None:
            out = self._runner(workload)(requests)
            metrics.observe_batch(self.model_names[workload], 1, len(requests))
            return out
        future = batcher.submit(requests, announced=announced)  # Overloaded past max_pending_trips
        try:
            return future.result(timeout=self.settings.speed.request_timeout_s)
        except FutureTimeout:
            future.cancel()  # still queued: the batcher drops it unscored
            raise ApiError(503, f"no prediction within {self.settings.speed.request_timeout_s}s; retry") from None


def _service() -> Service:
    return current_app.extensions["lambdaml"]


# --------------------------------------------------------------------------------------------------- predict
predict_bp = Blueprint("predict", __name__)


def parse_requests(raw: bytes, max_batch: int, workload: Workload | None = None) -> tuple[list[BaseModel], bool]:
    """The body as validated requests of ``workload`` (taxi's when None), and whether it was a batch (an object
    with the workload's batch key, ``trips`` for taxi). Raises ``ApiError`` naming the field.

    A body is read as the stream reads an event (``core.events``): one request is refused or accepted exactly
    as the stream would refuse or accept the same bytes on the request topic."""
    from core.workload import default

    wl = workload or default()
    model, key = request_model_of(wl.name), wl.batch_key
    try:
        body = load_json_object(raw)
        if key not in body:
            return [validate_request(model, body)], False
        items = body[key]
        if not isinstance(items, list):
            raise ApiError(400, f"{key} must be a list of request objects", key)
        if not items:
            raise ApiError(400, f"{key} is empty", key)
        if len(items) > max_batch:
            raise ApiError(413, f"batch of {len(items)} {key} is over the limit of {max_batch}", key)
        return [validate_request(model, item, (key, i)) for i, item in enumerate(items)], True
    except InvalidRequest as exc:
        raise ApiError(400, str(exc), exc.field, exc.details) from None


def parse_trips(raw: bytes, max_batch: int) -> tuple[list[BaseModel], bool]:
    """``parse_requests`` for the default workload (taxi)."""
    return parse_requests(raw, max_batch)


def _answer(wl: Workload, requests: list[BaseModel], values: list[float], model: LoadedModel, batch: bool):
    key, field = wl.request.key, wl.prediction_field
    digits = 3 if wl.task.kind == "regression" else 6  # seconds to the millisecond; probabilities finer
    if not batch:
        return jsonify({key: getattr(requests[0], key), field: round(values[0], digits),
                        "model_version": model.version})
    return jsonify(model_version=model.version,
                   predictions=[{key: getattr(r, key), field: round(v, digits)} for r, v in zip(requests, values)])


@predict_bp.post("/v1/predict")
def predict_route():
    return _predict(DEFAULT)


@predict_bp.post("/v1/<workload>/predict")
def workload_predict_route(workload: str):
    return _predict(workload)


def _predict(name: str):
    svc = _service()
    wl = svc.workload(name)
    requests, batch = parse_requests(_request_body(), svc.settings.speed.max_batch_trips, wl)
    announced = g.pop("announced", False)
    values, model = svc.score(requests, announced=announced, workload=name)
    return _answer(wl, requests, values, model, batch)


@predict_bp.post("/v1/predict/features")
def predict_features_route():
    """Scores taxi feature rows computed elsewhere (the stream's Spark form): one batch, one forward pass."""
    return _predict_features(DEFAULT, "trip_ids")


@predict_bp.post("/v1/<workload>/predict/features")
def workload_predict_features_route(workload: str):
    """Scores a workload's feature rows computed elsewhere (the stream): ``{"ids": [...], "features": {...}}``."""
    return _predict_features(workload, "ids")


def _predict_features(name: str, ids_key: str):
    svc = _service()
    wl = svc.workload(name)
    try:
        body = load_json_object(_request_body())
    except InvalidRequest as exc:
        raise ApiError(400, str(exc), exc.field) from None
    try:
        ids, columns = check_feature_columns(body, svc.settings.speed.max_batch_trips, wl.features, ids_key)
    except OverflowError as exc:
        raise ApiError(413, str(exc), ids_key) from None
    except ValueError as exc:
        raise ApiError(400, str(exc), str(exc).split(":", 1)[0]) from None
    model = svc.models.holders[name].current
    if model is None:
        raise ApiError(503, f"no {name} model loaded yet; see GET /readyz")
    values = predict_features(model, columns)
    metrics.observe_batch(svc.model_names[name], 1, len(ids))
    key, field = wl.request.key, wl.prediction_field
    digits = 3 if wl.task.kind == "regression" else 6
    return jsonify(model_version=model.version,
                   predictions=[{key: i, field: round(float(v), digits)} for i, v in zip(ids, values)])


# --------------------------------------------------------------------------------------------------- models
models_bp = Blueprint("models", __name__)


@models_bp.get("/v1/models/current")
def current_model():
    return _current(DEFAULT)


@models_bp.get("/v1/<workload>/models/current")
def workload_current_model(workload: str):
    return _current(workload)


def _current(name: str):
    svc = _service()
    svc.workload(name)
    holder = svc.models.holders[name]
    model = holder.current
    if model is None:
        return _error(503, f"no {name} model loaded yet", details=[{"last_error": holder.last_error}]
                      if holder.last_error else None)
    return jsonify(model.describe() | {"last_refusal": holder.last_error})


# --------------------------------------------------------------------------------------------------- health
health_bp = Blueprint("health", __name__)


@health_bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@health_bp.get("/readyz")
def readyz():
    """Ready once the default workload's model is loaded (``?workload=<name>``: that one's); ``models`` tells
    every served workload's version, or null."""
    svc = _service()
    name = request.args.get("workload", DEFAULT)
    if name not in svc.models.holders:
        return jsonify(ready=False, reason=f"no such workload: {name!r}"), 404
    versions = {n: (h.current.version if h.current else None) for n, h in svc.models.holders.items()}
    model = svc.models.holders[name].current
    if model is None:
        return jsonify(ready=False, reason=f"no {name} model loaded yet", models=versions), 503
    return jsonify(ready=True, model_version=model.version, models=versions)


# --------------------------------------------------------------------------------------------------- metrics
metrics_bp = Blueprint("metrics", __name__)


@metrics_bp.get("/metrics")
def metrics_route():
    body, content_type = metrics.exposition(_service().settings)
    return Response(body, content_type=content_type)


# --------------------------------------------------------------------------------------------------- openapi
openapi_bp = Blueprint("openapi", __name__)


@openapi_bp.get("/openapi.json")
def openapi_route():
    from speed.openapi import spec

    return jsonify(spec(_service().settings))


# --------------------------------------------------------------------------------------------------- factory
UNTIMED = {"metrics.metrics_route", "health.healthz", "health.readyz"}
CATCH_UP_WAIT_S = 15.0  # under gunicorn's worker timeout, which also bounds a worker's start

# the endpoints that score
ADMITTED = {"predict.predict_route", "predict.workload_predict_route", "predict.predict_features_route",
            "predict.workload_predict_features_route"}
BATCHED = {"predict.predict_route": DEFAULT, "predict.workload_predict_route": None}  # None: the URL's workload


def create_app(settings: Settings | None = None, holder: ModelHolder | None = None, watch: bool = True,
               holders: dict[str, ModelHolder] | None = None) -> Flask:
    """The service. ``holder``: the default workload's model holder; ``holders``: any workload's, by name (a
    fresh holder for each served workload not given). ``watch``: follow the ``models`` topic (the default under
    gunicorn)."""
    import torch

    settings = settings or get_settings()
    torch.set_num_threads(settings.speed.torch_threads)
    given = dict(holders or {})
    if holder is not None:
        given[DEFAULT] = holder
    models = ModelSet(settings, given)
    app = Flask("lambdaml.speed")
    app.config["MAX_CONTENT_LENGTH"] = settings.speed.max_body_bytes
    app.json.sort_keys = False
    svc = Service(settings, models)
    app.extensions["lambdaml"] = svc
    for bp in (predict_bp, models_bp, health_bp, metrics_bp, openapi_bp):
        app.register_blueprint(bp)

    api_key = settings.speed.api_key.get_secret_value() if settings.speed.api_key else None

    @app.before_request
    def _start():
        g.t0 = time.perf_counter()
        if api_key and request.path.startswith("/v1/"):
            given = request.headers.get("X-API-Key", "")
            if not hmac.compare_digest(given.encode(), api_key.encode()):
                _discard_body()
                resp = _error(401, "missing or wrong X-API-Key header", "X-API-Key")
                resp.headers["WWW-Authenticate"] = "ApiKey"
                return resp
        if request.endpoint in ADMITTED:
            if not svc.admission.try_enter():
                raise Overloaded("in_flight", f"{svc.admission.limit} requests are in flight in this worker")
            g.admitted = True
            metrics.IN_FLIGHT.inc()
            if request.endpoint in BATCHED:
                name = BATCHED[request.endpoint] or (request.view_args or {}).get("workload", "")
                batcher = svc.batchers.get(name)
                if batcher is not None:
                    batcher.announce()  # a batch being formed may wait for this one
                    g.announced, g.announced_for = True, name
        return None

    @app.teardown_request
    def _leave(_exc: BaseException | None) -> None:
        if g.pop("announced", False):  # it never reached the batcher (bad input): do not wait for it
            svc.batchers[g.pop("announced_for")].withdraw()
        if g.pop("admitted", False):
            svc.admission.leave()
            metrics.IN_FLIGHT.dec()

    @app.after_request
    def _record(resp: Response) -> Response:
        endpoint = request.endpoint or "unknown"
        if endpoint not in UNTIMED:
            # The model a /v1/ request was for (by its workload; /v1/predict is the default's); "" for the rest.
            model = svc.model_names.get((request.view_args or {}).get("workload", DEFAULT), "") \
                if request.path.startswith("/v1/") else ""
            metrics.REQUESTS.labels(endpoint, str(resp.status_code), model).inc()
            if "t0" in g:
                metrics.LATENCY.labels(endpoint, model).observe(time.perf_counter() - g.t0)
        return resp

    retry_after_s = settings.speed.retry_after_s

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return _error(exc.status, exc.message, exc.field, exc.details, retry_after_s)

    @app.errorhandler(Overloaded)
    def _overloaded(exc: Overloaded):
        metrics.REJECTED.labels(exc.reason).inc()
        _discard_body()
        return _error(503, f"overloaded: {exc.message}; retry after {retry_after_s}s", retry_after_s=retry_after_s)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        field = "body" if exc.code == 413 else None
        message = (f"body is over the limit of {settings.speed.max_body_bytes} bytes" if exc.code == 413
                   else exc.description or exc.name)
        resp = _error(exc.code or 500, message, field, retry_after_s=retry_after_s)
        if exc.code == 405 and getattr(exc, "valid_methods", None):
            resp.headers["Allow"] = ", ".join(exc.valid_methods)
        return resp

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.path)
        return _error(500, f"internal error: {type(exc).__name__}")

    if watch:
        from speed.watcher import ModelWatcher

        watcher = ModelWatcher(settings, models)
        watcher.start()
        app.extensions["lambdaml.watcher"] = watcher
        # A worker takes requests once it has caught up on the models topic and loaded what it announces, so a
        # fresh worker never answers 503 beside one that serves; bounded, so a worker without Kafka still starts
        # (and answers 503 until a model arrives).
        if not watcher.caught_up.wait(CATCH_UP_WAIT_S):
            log.warning("models topic not caught up after %.0fs; serving without a model until one arrives",
                        CATCH_UP_WAIT_S)
    return app
