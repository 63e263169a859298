"""The one ``-dump-vmstate`` schema model (miglab.vmstate.schema): parsed once, read by all."""

from __future__ import annotations

import pytest

from miglab.analysis.schema_tables import schema_frame
from miglab.compat.schema_check import check_schemas
from miglab.errors import DescriptionError, DescriptionLimitExceeded, LimitExceeded
from miglab.limits import LIMITS
from miglab.vmstate.from_schema import SchemaIndex
from miglab.vmstate.schema import load_schema, with_hints
from tests.helpers import DATA

OLD = DATA / "schema-7.2-pc-i440fx-2.2.json"  # QEMU 7.2: no "num"
NEW = DATA / "schema-10.0-pc-i440fx-10.0.json"  # QEMU 10.0: "num" on arrays


def test_one_parse_feeds_the_decoder_the_check_and_the_tables() -> None:
    schema = load_schema(OLD)
    assert schema.machine == "pc-i440fx-2.2"
    assert SchemaIndex.load(schema).schema is schema
    assert load_schema(schema) is schema
    assert check_schemas(schema, schema) == check_schemas(OLD, OLD)
    assert schema_frame(schema).equals(schema_frame(OLD))
    # ioapic's redirection table: 7.2's dump gives no length, 10.0's gives 24
    table = [f for f in schema.devices["ioapic"].fields if f.name == "ioredtbl"]
    assert [f.num for f in table] == [None]
    hinted = with_hints(schema, load_schema(NEW))
    assert [f.num for f in hinted.devices["ioapic"].fields if f.name == "ioredtbl"] == [24]


def test_an_array_over_the_limit_is_both_error_kinds() -> None:
    field = {"field": "a", "version_id": 0, "size": 1, "num": LIMITS.max_array_elements + 1}
    schema = {"x": {"Description": {"name": "x", "version_id": 1, "Fields": [field]}}}
    with pytest.raises(DescriptionLimitExceeded) as err:
        load_schema(schema)
    assert isinstance(err.value, LimitExceeded) and isinstance(err.value, DescriptionError)
    assert err.value.path == "schema:x.a"
