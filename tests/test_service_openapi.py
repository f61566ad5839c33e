"""``/schema/openapi.json`` describes every command ``POST /api/commands`` takes, with all
its fields, as derived from the ledger's own command Structs (``COMMAND_TYPES``)."""

from __future__ import annotations

import json

import jsonschema
import msgspec
import pytest
from litestar.testing import TestClient

from builders import walkthrough_lines
from ledger.commands import COMMAND_TYPES
from order_ledger.service.app import create_app
from order_ledger.service.runtime import ServiceConfig

PREFIX = "#/components/schemas/"


@pytest.fixture(scope="module")
def doc(tmp_path_factory):
    db = str(tmp_path_factory.mktemp("openapi") / "ledger.db")
    with TestClient(create_app(ServiceConfig(db=db, tick_interval=0))) as c:
        r = c.get("/schema/openapi.json")
        assert r.status_code == 200
        return r.json()


def command_schema(doc: dict) -> dict:
    return doc["paths"]["/api/commands"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]["items"]


def component(doc: dict, ref: str) -> dict:
    assert ref.startswith(PREFIX), ref
    return doc["components"]["schemas"][ref[len(PREFIX):]]


def test_every_command_type_and_field_is_in_the_document(doc):
    union = command_schema(doc)
    assert union["discriminator"]["propertyName"] == "type"
    mapping = union["discriminator"]["mapping"]
    tags = {str(cls.__struct_config__.tag): cls for cls in COMMAND_TYPES}
    assert set(mapping) == set(tags)
    assert sorted(o["$ref"] for o in union["oneOf"]) == sorted(mapping.values())
    for tag, cls in tags.items():
        body = component(doc, mapping[tag])
        assert body["properties"]["type"] == {"enum": [tag]}
        assert body["additionalProperties"] is False
        fields = msgspec.structs.fields(cls)
        assert set(body["properties"]) == {"type"} | {f.encode_name for f in fields}, tag
        required = {f.encode_name for f in fields if f.required} - {"at"}
        assert set(body["required"]) == {"type"} | required, tag
        assert "at" not in body["required"]  # the service stamps a line without one


def test_nested_structs_are_components_with_all_their_fields(doc):
    """Fields that are Structs themselves (an order's items, buyer, address ...) refer to
    components that list every field of theirs."""
    seen: set[type] = set()

    def nested(t: msgspec.inspect.Type) -> list[msgspec.inspect.StructType]:
        if isinstance(t, msgspec.inspect.StructType):
            return [t]
        out = []
        for attr in ("item_type", "types"):
            inner = getattr(t, attr, None)
            for x in (inner if isinstance(inner, tuple) else [inner] if inner else []):
                out += nested(x)
        return out

    for cls in COMMAND_TYPES:
        for field in msgspec.inspect.type_info(cls).fields:
            for struct in nested(field.type):
                seen.add(struct.cls)
                body = doc["components"]["schemas"]["command." + struct.cls.__name__]
                assert set(body["properties"]) == {f.encode_name for f in struct.fields}
    assert len(seen) >= 5  # PlaceItem, Buyer, Address, ShipItem, AdjustItem, ...


def test_the_schema_accepts_the_walkthrough_and_rejects_what_the_ledger_rejects(doc):
    validator = jsonschema.Draft202012Validator(
        {"components": doc["components"], **command_schema(doc)})
    lines = [json.loads(line) for line in walkthrough_lines()]
    assert len({line["type"] for line in lines}) >= 8
    for line in lines:
        validator.validate(line)
        without_at = {k: v for k, v in line.items() if k != "at"}
        validator.validate(without_at)  # at is optional: the service stamps it
    place = next(line for line in lines if line["type"] == "place")
    for bad in ({**place, "colour": "blue"},  # unknown field
                {**place, "type": "plaec"},  # unknown type
                {k: v for k, v in place.items() if k != "order_id"},  # missing field
                {**place, "order_id": "12-34"},  # pattern
                {**place, "items": []}):  # at least one item
        assert not validator.is_valid(bad), bad
