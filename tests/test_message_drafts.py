"""Checking message drafts is library policy (ledger.messaging.check_draft): it
raises the library's MessageDraftError for a malformed draft; the command line
only prints."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from ledger.errors import LedgerError, MessageDraftError
from ledger.messaging import DRAFT_FIELDS, check_draft

NOW = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
DRAFT = {"order_id": "203-1234567-7654321", "purpose": "delivery-problem", "language": "sv-SE",
         "body": "Order 203-1234567-7654321: paketet är försenat en dag.", "buyer_language": "sv-SE"}


def test_a_draft_within_the_rules_is_allowed():
    result = check_draft(DRAFT, 1, now=NOW)
    assert result == {"line": 1, "order_id": "203-1234567-7654321", "allowed": True, "violations": [],
                      "notes": []}


def test_violations_are_listed_and_the_language_rule_needs_the_buyer_language():
    result = check_draft({**DRAFT, "purpose": "marketing", "buyer_language": None}, 3, now=NOW)
    assert not result["allowed"] and result["line"] == 3
    assert any(v["rule"] for v in result["violations"])
    assert result["notes"] == ["buyer_language not given: the language rule was not checked"]


def test_the_draft_time_comes_before_the_default():
    late = {**DRAFT, "purpose": "review-request", "completed_at": "2026-01-01T00:00:00Z"}
    # 59 days after completion by the draft's own time, 1 day by the default
    by_draft = check_draft({**late, "now": "2026-03-01T00:00:00Z"}, 1,
                           now=datetime(2026, 1, 2, tzinfo=timezone.utc))
    by_default = check_draft(late, 1, now=datetime(2026, 1, 2, tzinfo=timezone.utc))
    assert by_draft["violations"] != by_default["violations"]


@pytest.mark.parametrize("draft, says", [
    ([1, 2], "is not a JSON object"),
    ({**DRAFT, "colour": "red"}, "unknown field(s) colour"),
    ({k: v for k, v in DRAFT.items() if k != "body"}, "body is missing"),
    ({**DRAFT, "now": "yesterday"}, "is not an ISO-8601 time"),
    ({**DRAFT, "completed_at": "2026-03-01T10:00:00"}, "has no UTC offset"),
    ({**DRAFT, "attachments": "label.pdf"}, "attachments must be a list"),
])
def test_a_malformed_draft_raises_the_library_error(draft, says):
    with pytest.raises(MessageDraftError) as info:
        check_draft(draft, 7, now=NOW)
    assert isinstance(info.value, LedgerError)
    assert str(info.value).startswith("message 7") and says in str(info.value)


def test_a_send_message_command_line_is_a_draft():
    assert {"type", "at", "command_id", "actor"} <= DRAFT_FIELDS
    line = {**DRAFT, "type": "send-message", "at": "2026-03-01T10:00:00Z", "actor": "seller"}
    assert check_draft(line, 1, now=NOW)["allowed"]
