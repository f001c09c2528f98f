"""JSON objects of many rows at once, formatted column by column with Arrow compute.

The replay sends hundreds of thousands of events. Building a pydantic model per event, dumping it and running
``json.dumps`` on the dict cost about 10 µs an event, five times what librdkafka needs to send it
(``bench/kafka_producer.py``). Here each column becomes JSON text in one Arrow call, the columns are joined into
objects in one more, and Python touches each row once, to take its bytes.

The text is byte for byte what ``core.kafka.encode(model.model_dump(mode="json"))`` gives for the same values
(``tests/unit/test_jsonrows.py`` holds the two side by side): keys in the given order, no spaces, ``null`` for a
missing value, strings escaped as ``json.dumps`` does (``ensure_ascii``), floats as Python's ``repr``, integers in
decimal, and timestamps as pydantic writes a naive ``datetime`` (``2026-01-05T08:30:00``, with ``.ffffff`` only
when there are microseconds) or an aware one in UTC (the same with ``Z``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Kind = Literal["string", "integer", "number", "timestamp", "timestamp_utc"]

# JSON string characters that need no escape with ensure_ascii: printable ASCII but '"' and '\'.
_PLAIN_ASCII = r'^[ !#-\[\]-~]*$'
# Python's repr writes a float in positional notation exactly when 1e-4 <= |x| < 1e16. Arrow's cast prints the same
# shortest round-trip digits, but integral values without ".0", and in exponent notation from 1e15 and for some
# values of 16 digits below it: those are recognised and mended, or written by repr.
_POSITIONAL = (1e-4, 1e15)


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    values: pa.Array | np.ndarray  # timestamps: microseconds since the epoch (int64), or Arrow timestamps
    present: np.ndarray | None = None  # False where the value is missing (null); None: present everywhere


def encode(columns: Sequence[Column], length: int | None = None) -> list[bytes]:
    """One JSON object per row, the columns' keys in the given order: ``[b'{"a":1,"b":"x"}', ...]``."""
    if not columns:
        return [b"{}"] * (length or 0)
    parts: list[pa.Array | str] = []  # literal text between the columns broadcasts to every row
    for i, column in enumerate(columns):
        parts.append(("{" if i == 0 else ",") + json.dumps(column.name) + ":")
        parts.append(_text(column))
    parts.append("}")
    n = len(parts[1])
    if length is not None and n != length:
        raise ValueError(f"columns of {n} rows, expected {length}")
    return pc.binary_join_element_wise(*parts, "").cast(pa.binary()).to_pylist()


def constant(name: str, value: int | str, length: int) -> Column:
    """A column holding one value on every row (e.g. ``schema_version``)."""
    kind: Kind = "integer" if isinstance(value, int) else "string"
    return Column(name, kind, pa.array([value] * length))


def _text(column: Column) -> pa.Array:
    values = column.values if isinstance(column.values, pa.Array) else pa.array(column.values)
    if column.present is not None:
        values = pc.if_else(pa.array(column.present, pa.bool_()), values, pa.nulls(len(values), values.type))
    if column.kind == "string":
        text = _strings(values.cast(pa.string()))
    elif column.kind == "integer":
        text = values.cast(pa.int64()).cast(pa.string())
    elif column.kind == "number":
        text = _floats(values.cast(pa.float64()))
    else:
        text = _timestamps(values, utc=column.kind == "timestamp_utc")
    return pc.fill_null(text, "null")


def _strings(values: pa.Array) -> pa.Array:
    """Quoted; escaped by ``json.dumps`` once per distinct value when any value needs an escape."""
    if pc.all(pc.match_substring_regex(values, _PLAIN_ASCII)).as_py() is not False:
        return pc.binary_join_element_wise('"', values, '"', "")
    codes = pc.dictionary_encode(values)
    quoted = pa.array([json.dumps(v) for v in codes.dictionary.to_pylist()], pa.string())
    return pc.take(quoted, codes.indices)


def _floats(values: pa.Array) -> pa.Array:
    """Python's ``repr`` of each value: Arrow's text where the two agree, with ``.0`` after an integral value;
    ``repr`` itself for the rest (tiny, huge, or not finite)."""
    text = values.cast(pa.string())
    size = pc.abs(values)
    positional = pc.and_(pc.greater_equal(size, _POSITIONAL[0]), pc.less(size, _POSITIONAL[1]))
    integral = pc.and_(positional, pc.match_substring_regex(text, r"^-?[0-9]+$"))
    text = pc.if_else(integral, pc.binary_join_element_wise(text, ".0", ""), text)
    agrees = pc.and_(pc.and_(positional, pc.match_substring(text, ".")), pc.invert(pc.match_substring(text, "e")))
    odd = np.flatnonzero(~pc.fill_null(agrees, True).to_numpy(zero_copy_only=False))
    if len(odd) == 0:
        return text
    fixed = text.to_pylist()
    numbers = values.to_numpy(zero_copy_only=False)
    for i in odd:
        fixed[i] = repr(float(numbers[i]))
    return pa.array(fixed, pa.string())


def _timestamps(values: pa.Array, *, utc: bool) -> pa.Array:
    """Arrow's cast writes ``2026-01-05 08:30:00.000000`` (fixed width for years 1000..9999); a "T" replaces the
    space and a zero fraction goes, as pydantic writes them. (``strftime`` is 30 times slower.)"""
    micros = values.cast(pa.timestamp("us")) if pa.types.is_timestamp(values.type) else values
    micros = micros.cast(pa.int64())
    text = pc.binary_replace_slice(micros.cast(pa.timestamp("us")).cast(pa.string()), 10, 11, "T")
    whole = pc.equal(pc.subtract(micros, pc.multiply(pc.divide(micros, 1_000_000), 1_000_000)), 0)
    text = pc.if_else(whole, pc.utf8_slice_codeunits(text, 0, 19), text)
    return pc.binary_join_element_wise('"', text, 'Z"' if utc else '"', "")
