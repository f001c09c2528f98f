"""The request contract as a declaration: what ``core.contract`` derives from one, tested on a made-up workload and
on the taxi declaration. Pure: no services."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import BaseModel, ValidationError

from core import contract
from core.contract import Malformed

SHOP = contract.Request(
    model_name="BasketRequest",
    fields=(
        contract.key("basket_id", 16),
        contract.timestamp("opened_at"),
        contract.integer("store", 1, 40, recorded=(1, 50), column="store_id"),
        contract.number("amount", 0.5, 999.0, required=False, column="amount"),
        contract.integer("channel", 0, 3, required=False),
    ),
)


def test_the_model_types_and_bounds_every_declared_field():
    model = contract.request_model(SHOP)
    assert model.__name__ == "BasketRequest"
    assert list(model.model_fields) == ["basket_id", "opened_at", "store", "amount", "channel", "schema_version"]
    ok = model.model_validate({"basket_id": "b1", "opened_at": "2026-03-01 10:00", "store": 40.0, "extra": 1})
    assert ok.store == 40 and ok.amount is None and ok.opened_at == dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC)
    assert model.model_validate({"basket_id": "b", "opened_at": "2026-03-01T10:00:00+02:00", "store": 1}
                                ).opened_at == dt.datetime(2026, 3, 1, 8, tzinfo=dt.UTC)
    for bad, field in [({"store": 41}, "store"), ({"store": "1"}, "store"), ({"store": 1.5}, "store"),
                       ({"amount": 0.1}, "amount"), ({"amount": float("nan")}, "amount"),
                       ({"basket_id": " "}, "basket_id"), ({"basket_id": "x" * 17}, "basket_id"),
                       ({"opened_at": "2000-01-01T00:00:00Z"}, "opened_at"),
                       ({"opened_at": "2026-02-30T00:00:00Z"}, "opened_at"), ({"channel": 4}, "channel")]:
        body = {"basket_id": "b1", "opened_at": "2026-03-01T10:00:00Z", "store": 3, **bad}
        with pytest.raises(ValidationError) as refused:
            model.model_validate(body)
        assert refused.value.errors()[0]["loc"] == (field,), (bad, refused.value.errors())
    with pytest.raises(ValidationError):
        model.model_validate({"basket_id": "b1", "opened_at": "2026-03-01T10:00:00Z"})  # store is required


def test_the_json_schema_states_what_is_enforced():
    schema = contract.request_model(SHOP).model_json_schema()
    assert schema["required"] == ["basket_id", "opened_at", "store"]
    props = schema["properties"]
    assert (props["store"]["minimum"], props["store"]["maximum"]) == (1, 40)
    assert props["basket_id"]["maxLength"] == 16 and props["opened_at"]["pattern"] == contract.TIMESTAMP_PATTERN


def test_the_prediction_echoes_the_stored_fields_and_the_sync_checks_them_with_the_recorded_ranges():
    class Base(BaseModel):
        """A prediction."""

        model_version: str

    assert [f.name for f in SHOP.stored] == ["basket_id", "opened_at", "store", "amount"]
    prediction = contract.prediction_model(SHOP, Base)
    assert list(prediction.model_fields) == ["basket_id", "model_version", "opened_at", "store", "amount"]
    recorded = {"basket_id": "b1", "opened_at": "2026-03-01T10:00:00.1234Z", "store": 48, "channel": 99}
    assert contract.check_recorded(SHOP, recorded) == {
        "basket_id": "b1", "opened_at": dt.datetime(2026, 3, 1, 10, 0, 0, 123000), "store_id": 48, "amount": None}
    for bad, message in [({"store": 51}, "store: expected an integer in 1..50"),
                         ({"amount": "1"}, "amount: expected a number"), ({"basket_id": ""}, "basket_id"),
                         ({"opened_at": 5}, "opened_at: expected an ISO-8601")]:
        with pytest.raises(Malformed, match=message):
            contract.check_recorded(SHOP, {**recorded, **bad})


@pytest.mark.parametrize("fields, message", [
    ((contract.timestamp("t"),), "first field must be the key"),
    ((contract.key("k"), contract.integer("n", 0, 1)), "exactly one timestamp"),
    ((contract.key("k"), contract.timestamp("t"), contract.key("j")), "exactly one key"),
    ((contract.key("k"), contract.timestamp("t"), contract.integer("t", 0, 1)), "unique"),
    ((contract.key("k"), contract.timestamp("t"), contract.number("x", 2.0, 1.0)), "low <= high"),
    ((contract.key("k"), contract.timestamp("t"), contract.category("c", ())), "distinct, non-empty"),
    ((contract.key("k"), contract.timestamp("t"), contract.category("c", ("a", "a"))), "distinct, non-empty"),
])
def test_a_declaration_that_cannot_work_is_refused_at_once(fields, message):
    with pytest.raises(ValueError, match=message):
        contract.Request("Bad", fields)


def test_the_taxi_request_is_derived_from_its_declaration():
    from core import events
    from workloads.taxi import contract as taxi

    assert events.REQUEST is taxi.REQUEST and events.TripRequest is contract.request_model(taxi.REQUEST)
    assert events.TripRequest.__name__ == "TripRequest" and taxi.REQUEST.key == "trip_id"
    assert taxi.REQUEST.event_time == "pickup_ts"
    assert list(events.Prediction.model_fields)[0] == "trip_id"


def test_the_outcome_event_and_its_recorded_check_come_from_the_declaration():
    paid = contract.Outcome("BasketPaid", time="paid_at", value="total", value_range=(0.0, 5000.0), positive=True)
    model = contract.outcome_model(SHOP, paid)
    assert list(model.model_fields) == ["schema_version", "basket_id", "paid_at", "total"]
    with pytest.raises(ValidationError):
        model(basket_id="b1", paid_at=dt.datetime(2026, 3, 1, tzinfo=dt.UTC), total=0.0)
    event = model(basket_id="b1", paid_at=dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC), total=12.5)
    assert contract.check_recorded_outcome(SHOP, paid, event.model_dump(mode="json")) == (
        "b1", dt.datetime(2026, 3, 1, 10), 12.5)
    for bad, message in [({"total": 0}, "total: must be positive"), ({"total": 6000}, "total: expected a finite"),
                         ({"paid_at": None}, "paid_at: expected an ISO-8601"), ({"basket_id": 3}, "basket_id")]:
        with pytest.raises(Malformed, match=message):
            contract.check_recorded_outcome(SHOP, paid, {**event.model_dump(mode="json"), **bad})
