"""A rejection's code and field come from the line and the command types, never from
the wording of the JSON decoder's messages (which changed between msgspec releases)."""

from __future__ import annotations

import msgspec
import pytest

import ledger.commands as commands
from ledger.commands import parse_command
from ledger.errors import CommandRejected
from test_bad_input import CASES
from test_reliability_fuzz import NASTY

LINES = [(name, line) for name, line, *_ in CASES] + [(name, line) for name, line, _ in NASTY]


def _outcome(line):
    try:
        parse_command(line)
    except CommandRejected as exc:
        return exc.code, exc.field
    return None


class _Reworded:
    """The real decoder, but every message it raises is reworded."""

    def __init__(self, real):
        self.real = real

    def decode(self, line):
        try:
            return self.real.decode(line)
        except msgspec.ValidationError:
            raise msgspec.ValidationError("Quelque chose ne va pas") from None
        except msgspec.DecodeError:
            raise msgspec.DecodeError("Données invalides") from None


def test_codes_and_fields_do_not_depend_on_the_decoders_wording(monkeypatch):
    expected = {name: _outcome(line) for name, line in LINES}
    monkeypatch.setattr(commands, "_decoder", _Reworded(commands._decoder))
    reworded = {name: _outcome(line) for name, line in LINES}
    assert reworded == expected


@pytest.mark.parametrize("line", [
    b'{"type":"tick","at":"2026-03-02T10:00:00+01:00","actor":"\xff\xfe"}',
    b'{"type":"tick","at":"2026-03-02T10:00:00+01:00","actor":"\xc0\xaf"}',  # overlong "/"
    b'{"type":"tick","at":"2026-03-02T10:00:00+01:00","actor":"\xed\xa0\x80"}',  # surrogate
    b"\xc3\x28",
])
def test_bytes_that_are_not_utf8_are_malformed_whatever_the_decoder_says(line, monkeypatch):
    monkeypatch.setattr(commands, "_decoder", _Reworded(commands._decoder))
    with pytest.raises(CommandRejected) as err:
        parse_command(line)
    assert err.value.code == "malformed-json"
    assert "UTF-8" in err.value.message and "byte" in err.value.message


def test_a_field_error_names_the_exact_field_and_what_it_accepts():
    line = ('{"type":"place","at":"2026-03-02T10:00:00+01:00","order_id":"203-1234567-7654321",'
            '"currency":"SEK","ship_service_level":"Standard",'
            '"buyer":{"name":"A","language":"sv-SE"},'
            '"ship_to":{"name":"A","address_1":"x","city":"y","postal_code":"1","country":"SE"},'
            '"items":[{"order_item_id":"1","sku":"S","title":"T","quantity":1,"item_price":"1"},'
            '{"order_item_id":"2","sku":"S","title":"T","quantity":0,"item_price":"1"}]}')
    with pytest.raises(CommandRejected) as err:
        parse_command(line)
    assert (err.value.code, err.value.field) == ("invalid-field", "items[1].quantity")
    assert "an integer >= 1 and <= 1,000,000,000" in err.value.message
    assert "not 0" in err.value.message
