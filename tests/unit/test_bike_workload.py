"""The bike workload's definition: found by name, its raw schema read from the files as they ship, its request
declared, its rules. Pure: no services, no Spark (the Spark forms are in ``test_bike_features.py``)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest
from pydantic import ValidationError

from core import contract, workload
from core.workload import Workload
from workloads.bike import WORKLOAD, features, schema
from workloads.bike import contract as bike_contract

# A few rows as the public monthly CSV writes them: text everywhere, ids that look like numbers, milliseconds on
# some times and not on others, an empty end station and empty end coordinates (a ride that ended off-dock).
CSV = b"""ride_id,rideable_type,started_at,ended_at,start_station_name,start_station_id,end_station_name,\
end_station_id,start_lat,start_lng,end_lat,end_lng,member_casual
5A3C2E1F0B9D8C7A,classic_bike,2024-05-01 08:15:42,2024-05-01 08:31:02,W 52 St & 11 Ave,6140.05,\
12 Ave & W 40 St,5905.10,40.76727216,-73.99392888,40.76087502,-74.00277668,member
0B1C2D3E4F5A6B7C,electric_bike,2024-05-01 08:15:42.123,2024-05-01 09:02:07.456,Hoboken Terminal - River St & \
Hudson Pl,HB101,,,40.7359,-74.0303,,,casual
FFEEDDCCBBAA9988,classic_bike,2024-05-01 23:59:59.999,2024-05-02 00:20:00.000,Grove St PATH,JC115,\
Newark Ave & Grove St,JC077,40.719586,-74.043117,40.72,-74.04,member
"""


def test_loads_the_bike_workload_from_its_folder():
    wl = workload.load("bike")
    assert wl is WORKLOAD and isinstance(wl, Workload)
    assert (wl.name, wl.dataset, wl.event_time, wl.partition_column) == ("bike", "raw/bike", "started_at",
                                                                         "start_date")
    assert wl.schema.equals(schema.RAW_SCHEMA) and wl.normalize is schema.normalize and wl.variant is schema.variant
    assert wl.request is bike_contract.REQUEST and wl.outcome is bike_contract.OUTCOME and wl.features is features
    assert {"bike", "taxi"} <= set(workload.known())


def test_the_raw_schema_types_times_ids_and_coordinates():
    types = dict(zip(schema.RAW_SCHEMA.names, schema.RAW_SCHEMA.types, strict=True))
    assert schema.RAW_SCHEMA.names == ["ride_id", "rideable_type", "started_at", "ended_at", "start_station_name",
                                       "start_station_id", "end_station_name", "end_station_id", "start_lat",
                                       "start_lng", "end_lat", "end_lng", "member_casual"]
    assert types["started_at"] == types["ended_at"] == pa.timestamp("us")
    assert types["start_station_id"] == types["end_station_id"] == pa.string()
    assert all(types[c] == pa.float64() for c in ("start_lat", "start_lng", "end_lat", "end_lng"))
    # The CSV types the ingest reads with: no integer column, so none is read as a double.
    assert WORKLOAD.csv_types() == types


def _expected(out: pa.Table) -> None:
    assert out.schema == schema.RAW_SCHEMA
    assert out.column("start_station_id").to_pylist() == ["6140.05", "HB101", "JC115"]
    assert out.column("end_station_id").to_pylist() == ["5905.10", None, "JC077"]
    assert out.column("end_station_name").to_pylist()[1] is None
    assert out.column("started_at").to_pylist() == [dt.datetime(2024, 5, 1, 8, 15, 42),
                                                    dt.datetime(2024, 5, 1, 8, 15, 42, 123000),
                                                    dt.datetime(2024, 5, 1, 23, 59, 59, 999000)]
    assert out.column("ended_at").to_pylist()[1] == dt.datetime(2024, 5, 1, 9, 2, 7, 456000)
    assert out.column("start_lat").to_pylist()[1] == 40.7359
    assert out.column("end_lat").to_pylist()[1] is None and out.column("end_lng").null_count == 1
    assert out.column("member_casual").to_pylist() == ["member", "casual", "member"]


def test_normalize_reads_the_csv_as_text():
    text = pcsv.read_csv(pa.BufferReader(CSV), convert_options=pcsv.ConvertOptions(
        column_types={name: pa.string() for name in schema.RAW_SCHEMA.names}))
    assert all(t == pa.string() for t in text.schema.types)
    _expected(schema.normalize(text))


def test_normalize_reads_the_csv_as_a_reader_infers_it():
    """Type inference reads the times as timestamp[ns] and a column of numeric-looking ids as numbers: "5905.10"
    becomes 5905.1, and is written back as the id it was."""
    inferred = pcsv.read_csv(pa.BufferReader(CSV))
    assert pa.types.is_timestamp(inferred.schema.field("started_at").type)
    _expected(schema.normalize(inferred))
    numeric = inferred.set_column(inferred.schema.get_field_index("end_station_id"), "end_station_id",
                                  pa.array([5905.1, None, 7141.07]))
    assert schema.normalize(numeric).column("end_station_id").to_pylist() == ["5905.10", None, "7141.07"]


def test_normalize_reads_the_csv_as_the_ingest_does():
    """``batch.ingest`` reads a CSV with ``Workload.csv_types()`` and the ISO 8601 parser."""
    table = pcsv.read_csv(pa.BufferReader(CSV), convert_options=pcsv.ConvertOptions(
        column_types=WORKLOAD.csv_types(), timestamp_parsers=[pcsv.ISO8601]))
    assert table.column("end_station_id").to_pylist()[1] == ""  # the CSV reader keeps empty text as ""
    _expected(schema.normalize(table))


def test_normalize_takes_a_parquet_typed_table_and_drops_what_it_does_not_know():
    typed = schema.normalize(pcsv.read_csv(pa.BufferReader(CSV), convert_options=pcsv.ConvertOptions(
        column_types={name: pa.string() for name in schema.RAW_SCHEMA.names})))
    # A copy written by another tool: times with a zone and in nanoseconds, a dictionary column, an extra column,
    # the optional names and end coordinates absent, the columns in another order.
    other = pa.table({
        "member_casual": typed.column("member_casual").dictionary_encode(),
        "started_at": typed.column("started_at").cast(pa.timestamp("ns", tz="UTC")),
        "ended_at": typed.column("ended_at").cast(pa.timestamp("ns")),
        "ride_id": typed.column("ride_id"),
        "rideable_type": typed.column("rideable_type"),
        "start_station_id": typed.column("start_station_id"),
        "end_station_id": typed.column("end_station_id"),
        "start_lat": typed.column("start_lat"),
        "start_lng": typed.column("start_lng"),
        "bike_number": pa.array([1, 2, 3]),
    })
    out = schema.normalize(other)
    assert out.schema == schema.RAW_SCHEMA and "bike_number" not in out.column_names
    assert out.column("started_at").equals(typed.column("started_at"))
    assert out.column("ended_at").equals(typed.column("ended_at"))
    assert out.column("member_casual").to_pylist() == ["member", "casual", "member"]
    assert out.column("start_station_name").null_count == 3 and out.column("end_lat").null_count == 3


def test_a_value_that_does_not_convert_becomes_null_as_spark_try_cast_does():
    text = pcsv.read_csv(pa.BufferReader(CSV), convert_options=pcsv.ConvertOptions(
        column_types={name: pa.string() for name in schema.RAW_SCHEMA.names}))
    bad = text.set_column(2, "started_at", pa.array(["n/a", "2024-02-30 08:00:00", "2024-05-01T07:00:00"]))
    bad = bad.set_column(8, "start_lat", pa.array(["40.7", "x", " "]))
    out = schema.normalize(bad)
    assert out.column("started_at").to_pylist() == [None, None, dt.datetime(2024, 5, 1, 7)]
    assert out.column("start_lat").to_pylist() == [40.7, None, None]


@pytest.mark.parametrize("drop", [["start_station_id"], ["ride_id", "member_casual"], ["started_at"]])
def test_a_missing_required_column_is_refused_naming_it(drop):
    table = pcsv.read_csv(pa.BufferReader(CSV)).drop(drop)
    with pytest.raises(ValueError, match="not a Citi Bike trip file: missing column") as refused:
        schema.normalize(table)
    for name in drop:
        assert name in str(refused.value)
    with pytest.raises(schema.MissingColumns):
        WORKLOAD.check_required(table.column_names)


def test_a_pre_2021_file_is_refused_saying_what_it_is():
    legacy = ["tripduration", "starttime", "stoptime", "start station id", "start station name", "usertype",
              "bikeid", "birth year", "gender"]
    with pytest.raises(ValueError, match="before February 2021") as refused:
        schema.check_required(legacy)
    assert "ride_id" in str(refused.value) and "started_at" in str(refused.value)
    schema.check_required(schema.REQUIRED)  # all there: no error


def test_variant_names_the_era_and_the_types():
    text = pcsv.read_csv(pa.BufferReader(CSV), convert_options=pcsv.ConvertOptions(
        column_types={name: pa.string() for name in schema.RAW_SCHEMA.names}))
    assert schema.variant(text.schema, counts=False) == "2021+ (ride_id, rideable_type)"
    assert schema.variant(text.schema) == "2021+ (ride_id, rideable_type), text times, text station ids"
    assert schema.variant(schema.RAW_SCHEMA) == "2021+ (ride_id, rideable_type), timestamp times, text station ids"
    numeric = pa.schema([("ride_id", pa.string()), ("started_at", pa.timestamp("ns")),
                         ("start_station_id", pa.float64()), ("rideable_kind", pa.string())])
    assert schema.variant(numeric) == ("2021+ (ride_id, rideable_type), extra column(s) rideable_kind, "
                                       "timestamp times, numeric station ids")
    assert schema.variant(pa.schema([("tripduration", pa.int64()), ("usertype", pa.string())]),
                          counts=False) == "pre-2021 (tripduration, usertype)"


# ---------------------------------------------------------------------------------------------------------- contract

GOOD = {"ride_id": "5A3C2E1F0B9D8C7A", "started_at": "2024-05-01 08:15:42.123", "start_station_id": "HB101",
        "rideable_type": "electric_bike", "member_casual": "casual"}


def test_the_request_model_builds_and_checks_what_it_declares():
    model = contract.request_model(bike_contract.REQUEST)
    assert model.__name__ == "RideRequest" and bike_contract.REQUEST.key == "ride_id"
    assert bike_contract.REQUEST.event_time == "started_at" == WORKLOAD.event_time
    ok = model.model_validate(GOOD)
    assert ok.ride_id == GOOD["ride_id"] and ok.started_at == dt.datetime(2024, 5, 1, 8, 15, 42, 123000, tzinfo=dt.UTC)
    for bad, field in [({"ride_id": " "}, "ride_id"), ({"ride_id": "x" * 65}, "ride_id"), ({"ride_id": 5}, "ride_id"),
                       ({"started_at": "2024-05-01 8:15"}, "started_at"), ({"started_at": "2000-01-01 00:00"},
                                                                           "started_at")]:
        with pytest.raises(ValidationError) as refused:
            model.model_validate({**GOOD, **bad})
        assert refused.value.errors()[0]["loc"] == (field,), bad


def test_the_request_declares_every_input_the_features_read():
    declared = {f.name: f for f in bike_contract.REQUEST.fields}
    assert set(features.INPUTS) <= set(declared)
    assert {name: f.values for name, f in declared.items() if f.kind == "category"} == {
        "rideable_type": schema.RIDEABLE_TYPES, "member_casual": schema.MEMBER_CASUAL}


def test_the_text_and_category_fields_are_checked_naming_them():
    model = contract.request_model(bike_contract.REQUEST)
    assert model.model_validate(GOOD).start_station_id == "HB101"
    assert model.model_validate({**GOOD, "start_station_id": "6140.05"}).start_station_id == "6140.05"
    for bad, field in [({"rideable_type": "scooter"}, "rideable_type"), ({"member_casual": "Subscriber"},
                                                                         "member_casual"),
                       ({"member_casual": None}, "member_casual"), ({"start_station_id": 6140.05}, "start_station_id"),
                       ({"start_station_id": "  "}, "start_station_id"),
                       ({"start_station_id": "x" * 33}, "start_station_id"), ({"ride_id": ""}, "ride_id")]:
        with pytest.raises(ValidationError) as refused:
            model.model_validate({**GOOD, **bad})
        assert refused.value.errors()[0]["loc"] == (field,), bad
    body = dict(GOOD)
    del body["rideable_type"]
    with pytest.raises(ValidationError, match="rideable_type"):
        model.model_validate(body)
    schema_json = model.model_json_schema()["properties"]
    assert schema_json["member_casual"]["enum"] == list(schema.MEMBER_CASUAL)


def test_recorded_rides_are_checked_with_the_same_values():
    recorded = {**GOOD, "started_at": "2024-05-01T08:15:42Z"}
    row = contract.check_recorded(bike_contract.REQUEST, recorded)
    assert row["start_station_id"] == "HB101" and row["rideable_type"] == "electric_bike"
    with pytest.raises(contract.Malformed, match="member_casual: expected one of member, casual"):
        contract.check_recorded(bike_contract.REQUEST, {**recorded, "member_casual": "Subscriber"})


def test_the_outcome_is_the_duration_and_the_label_derives_from_it():
    out = contract.outcome_model(bike_contract.REQUEST, bike_contract.OUTCOME)
    assert list(out.model_fields) == ["schema_version", "ride_id", "ended_at", "duration_s"]
    y = schema.overtime_numpy(np.array([30 * 60, 30 * 60 + 1, 45 * 60, 45 * 60 + 1, 31 * 60]),
                              np.array(["casual", "casual", "member", "member", None], dtype=object))
    assert y.tolist() == [0.0, 1.0, 0.0, 1.0, 1.0]


# ------------------------------------------------------------------------------------------------------------- rules

def test_rules_quarantine_each_bad_row_by_its_first_failed_rule():
    day = dt.date(2024, 5, 1)
    good = {"ride_id": "A", "rideable_type": "classic_bike", "started_at": dt.datetime(2024, 5, 1, 8),
            "ended_at": dt.datetime(2024, 5, 1, 8, 20), "start_station_id": "6140.05", "start_lat": 40.76,
            "start_lng": -73.99, "member_casual": "member"}
    cases = [({}, None), ({"end_station_id": None, "start_lat": None, "start_lng": None}, None),
             ({"rideable_type": "docked_bike"}, None),
             ({"ride_id": ""}, "null_required_field"), ({"ended_at": None}, "null_required_field"),
             ({"started_at": dt.datetime(2024, 4, 30, 23, 59)}, "outside_partition"),
             ({"start_station_id": None}, "null_start_station"), ({"start_station_id": ""}, "null_start_station"),
             ({"ended_at": dt.datetime(2024, 5, 1, 8)}, "non_positive_duration"),
             ({"ended_at": dt.datetime(2024, 5, 2, 8, 0, 0, 1)}, "duration_too_long"),
             ({"ended_at": dt.datetime(2024, 5, 2, 8)}, None),  # exactly 24 h: still a ride
             ({"rideable_type": None}, "unknown_rideable_type"), ({"rideable_type": "scooter"},
                                                                  "unknown_rideable_type"),
             ({"member_casual": "Customer"}, "unknown_member_casual"),
             ({"start_lat": 0.0, "start_lng": 0.0}, "start_outside_service_area"),
             ({"start_lat": None, "start_lng": 0.0}, "start_outside_service_area"),
             ({"start_lat": float("nan")}, "start_outside_service_area"),
             ({"start_station_id": None, "member_casual": "Customer"}, "null_start_station")]
    rows = [{**good, **change} for change, _ in cases]
    table = schema.normalize(pa.Table.from_pylist(rows, schema=pa.schema(
        [f for f in schema.RAW_SCHEMA if f.name in {*good, "end_station_id"}])))
    assert schema.failed_rule(table, day).tolist() == [rule for _, rule in cases]
    assert schema.RULE_NAMES == tuple(r.name for r in schema.RULES) and len(set(schema.RULE_NAMES)) == len(
        schema.RULES)


def test_the_ingest_reads_a_bike_file_through_the_definition():
    """``batch.ingest``'s pure steps take the bike workload as they take taxi: the CSV as shipped, the day split by
    ``started_at`` and the partition path ``raw/bike/start_date=...``."""
    from batch import ingest

    file_schema, table = ingest.read_table("202405-citibike-tripdata_1.csv", CSV, WORKLOAD)
    assert table.schema == schema.RAW_SCHEMA and file_schema.field("end_station_id").type == pa.string()
    _expected(table)
    split = ingest.split_by_day(table, WORKLOAD.event_time)
    assert sorted(split.parts) == [dt.date(2024, 5, 1)] and split.parts[dt.date(2024, 5, 1)].num_rows == 3
    assert WORKLOAD.partition("s3a://lake", dt.date(2024, 5, 1)) == "s3a://lake/raw/bike/start_date=2024-05-01"
    with pytest.raises(ingest.IngestError, match="missing column.*start_station_id"):
        ingest.read_table("x.csv", CSV.replace(b"start_station_id", b"station"), WORKLOAD)
