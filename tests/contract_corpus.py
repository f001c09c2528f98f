"""One corpus of request payloads, fed to both readers of the request contract (the API's body parser and
the stream's event reader): each entry is (payload bytes or None, the field the refusal names, or None when
the payload is a valid trip)."""

from __future__ import annotations

import json

GOOD = {"trip_id": "ok-1", "pickup_ts": "2026-01-05T08:30:00Z", "PULocationID": 161, "DOLocationID": 236,
        "passenger_count": 1, "trip_distance": 2.1, "VendorID": 2}


def trip(**changes) -> bytes:
    return json.dumps(GOOD | changes).encode()


def without(name: str) -> bytes:
    return json.dumps({k: v for k, v in GOOD.items() if k != name}).encode()


CORPUS: list[tuple[bytes | None, str | None]] = [
    (trip(), None),
    (trip(passenger_count=None, pickup_ts="2026-01-10T23:59:00+05:00"), None),
    (without("passenger_count"), None),
    (without("VendorID"), None),
    (trip(pickup_ts="2026-01-05 08:30:00"), None),
    (trip(pickup_ts="2026-01-05T08:30"), None),
    (trip(pickup_ts="2026-01-05T08:30:00.123456Z"), None),
    (trip(trip_id=" a "), None),
    (trip(PULocationID=263, DOLocationID=1), None),
    (trip(trip_distance=0.01), None),
    (trip(passenger_count=0), None),  # accepted on purpose, as validation accepts it (workloads/taxi/tlc.py)
    (trip(extra={"nested": [1, 2]}), None),
    (b" " + trip() + b"\n", None),
    (trip(PULocationID=161.0, passenger_count=2.0, VendorID=1e0), None),  # integers, as JSON Schema says
    # the JSON itself
    (None, "body"),
    (b"", "body"),
    (b"not json at all", "body"),
    (b"[1, 2, 3]", "body"),
    (b"null", "body"),
    (b'"a string"', "body"),
    (trip() + b"x", "body"),
    (trip() + b"{}", "body"),
    (b'{"trip_id": "a", "trip_id": "b", "pickup_ts": "2026-01-05T08:30:00Z", "PULocationID": 161, '
     b'"DOLocationID": 236, "trip_distance": 2.1}', "body"),
    (b'{"trip_id": "a", "extra": {"k": 1, "k": 2}, "pickup_ts": "2026-01-05T08:30:00Z", "PULocationID": 161, '
     b'"DOLocationID": 236, "trip_distance": 2.1}', "body"),
    (trip().replace(b"2.1", b"NaN"), "body"),
    (trip().replace(b"2.1", b"Infinity"), "body"),
    (b"\xff\xfe" + trip(), "body"),
    (b"[" * 100_000 + b"]" * 100_000, "body"),
    # fields
    (without("trip_id"), "trip_id"),
    (trip(trip_id=5), "trip_id"),
    (trip(trip_id=""), "trip_id"),
    (trip(trip_id="   "), "trip_id"),
    (trip(trip_id="x" * 65), "trip_id"),
    (trip(trip_id="  " + "x" * 63), "trip_id"),
    (trip(trip_id=None), "trip_id"),
    (without("pickup_ts"), "pickup_ts"),
    (trip(pickup_ts="soon"), "pickup_ts"),
    (trip(pickup_ts=1767601800), "pickup_ts"),
    (trip(pickup_ts="1767601800"), "pickup_ts"),
    (trip(pickup_ts="2026-01-05"), "pickup_ts"),
    (trip(pickup_ts="2000-12-31T23:59:59Z"), "pickup_ts"),
    (trip(pickup_ts="2100-01-01T00:00:00Z"), "pickup_ts"),
    (trip(pickup_ts="2026-02-30T08:00:00Z"), "pickup_ts"),
    (trip(PULocationID=0), "PULocationID"),
    (trip(PULocationID=266), "PULocationID"),
    (trip(PULocationID=264), "PULocationID"),  # "Unknown" in the TLC lookup: validation quarantines it
    (trip(DOLocationID=265), "DOLocationID"),
    (trip(PULocationID=1.5), "PULocationID"),
    (trip(PULocationID="161"), "PULocationID"),
    (trip(PULocationID=True), "PULocationID"),
    (trip(PULocationID=10 ** 400), "PULocationID"),
    (trip(DOLocationID="x"), "DOLocationID"),
    (trip(trip_distance=-3), "trip_distance"),
    (trip(trip_distance=0), "trip_distance"),  # a trip the meter did not measure: validation quarantines it
    (trip(trip_distance=0.001), "trip_distance"),
    (trip(trip_distance=200.5), "trip_distance"),
    (trip(trip_distance=500.5), "trip_distance"),
    (trip(trip_distance="2.1"), "trip_distance"),
    (trip(trip_distance=True), "trip_distance"),
    (trip().replace(b"2.1", b"1e400"), "trip_distance"),
    (trip(passenger_count=12), "passenger_count"),
    (trip(passenger_count=-(10 ** 300)), "passenger_count"),
    (trip(VendorID="x"), "VendorID"),
    (trip(VendorID=1.5), "VendorID"),
    (trip(VendorID=10 ** 30), "VendorID"),
    (trip(schema_version=2), "schema_version"),
    (trip(schema_version="1"), "schema_version"),
]
