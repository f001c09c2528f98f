"""core.jsonrows against the path it replaces: a dict per row through ``core.kafka.encode``, byte for byte."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from core import jsonrows, kafka

EPOCH = dt.datetime(1970, 1, 1)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
TIMES = st.datetimes(min_value=dt.datetime(1000, 1, 1), max_value=dt.datetime(9999, 12, 31))


class Event(BaseModel):  # how a pydantic model dumps each kind: the reference
    n: float | None
    i: int | None
    s: str | None
    t: dt.datetime
    u: dt.datetime


def micros(t: dt.datetime) -> int:
    return (t - EPOCH) // dt.timedelta(microseconds=1)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.none() | FLOATS, st.none() | st.integers(-2**63, 2**63 - 1), st.none() | st.text(),
                          TIMES, TIMES), min_size=1, max_size=40))
def test_rows_are_what_a_model_dumps(rows):
    numbers, integers, texts, naive, aware = zip(*rows, strict=True)
    columns = [
        jsonrows.Column("n", "number", np.array([0.0 if x is None else x for x in numbers]),
                        np.array([x is not None for x in numbers])),
        jsonrows.Column("i", "integer", pa.array(integers, pa.int64())),
        jsonrows.Column("s", "string", pa.array(texts, pa.string())),
        jsonrows.Column("t", "timestamp", np.array([micros(t) for t in naive], np.int64)),
        jsonrows.Column("u", "timestamp_utc", pa.array(aware, pa.timestamp("us"))),
    ]
    expected = [kafka.encode(Event(n=n, i=i, s=s, t=t, u=u.replace(tzinfo=dt.UTC)).model_dump(mode="json"))
                for n, i, s, t, u in rows]
    assert jsonrows.encode(columns, length=len(rows)) == expected


def test_floats_in_every_notation_python_uses():
    values = [0.0, -0.0, 1.0, -3.0, 0.1, 1e-4, 9.99e-5, 2.5e-5, 1e15, 1e16 - 2, 1e16, 123456789012345.6, 1e22,
              5e-324, 1.7976931348623157e308, 3.0000000000000004, 1324.0, 594.175]
    got = jsonrows.encode([jsonrows.Column("x", "number", np.array(values))])
    assert got == [kafka.encode({"x": v}) for v in values]
    assert all(math.isfinite(v) for v in values)


def test_strings_escaped_as_json_dumps_does():
    values = ['plain', 'a "quote"', "back\\slash", "tab\tnew\nline", "café", "€", "\x00", "😀", ""]
    got = jsonrows.encode([jsonrows.Column("s", "string", pa.array(values)), jsonrows.constant("v", 1, len(values))])
    assert got == [kafka.encode({"s": v, "v": 1}) for v in values]


def test_lengths_must_agree():
    import pytest

    with pytest.raises(ValueError, match="3 rows, expected 2"):
        jsonrows.encode([jsonrows.Column("x", "integer", pa.array([1, 2, 3]))], length=2)
