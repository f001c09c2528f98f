"""Version strings and the outbox relay's acknowledged prefix: pure logic of core/registry.py."""

from __future__ import annotations

import datetime as dt

from core.registry import acknowledged_prefix, make_version, parse_version


def test_parse_version_inverts_make_version():
    when = dt.datetime(2026, 11, 23, 10, 15, tzinfo=dt.UTC)
    for name, minor, code in (("trip_duration", 4, "abc1234"), ("trip_duration", 0, "abc1234-dirty"),
                              ("it_model_ab12", 137, "nogit"), ("ns:model-x", 2, "abc1234")):
        parts = parse_version(name, make_version(name, minor, when, code))
        assert parts is not None
        assert (parts.name, parts.major, parts.minor, parts.when, parts.code) == (name, 1, minor, when, code)


def test_parse_version_refuses_strings_make_version_did_not_make():
    assert parse_version("m", "v1") is None
    assert parse_version("m", "other:1.2.0-20261123T1015-abc") is None
    assert parse_version("m", "m:1.x.0-20261123T1015-abc") is None
    assert parse_version("m", "m:1.2.0-2026-11-23-abc") is None
    assert parse_version("m", "m:1.2.0-20261123T1015-") is None


def test_only_the_acknowledged_prefix_is_marked_published():
    assert acknowledged_prefix([3, 5, 9], {3: None, 5: None, 9: None}) == ([3, 5, 9], None)
    assert acknowledged_prefix([], {}) == ([], None)
    # 5 failed: 9 was acknowledged but stays pending, so a retry re-sends 5 and then 9 (9 stays last).
    assert acknowledged_prefix([3, 5, 9], {3: None, 5: "Local: Message timed out", 9: None}) == \
        ([3], "Local: Message timed out")
    assert acknowledged_prefix([3, 5], {3: None}) == ([3], "no acknowledgement")
