"""docs/rules.md §4 at the ledger level: a sent message is checked before
it is recorded; a rejected one records nothing and lists every violation."""

from __future__ import annotations

import pytest

from builders import oid
from test_rules_support import (
    A, cmd, last_event, names, ok, ok1, order_events, place, rejects, released, ship, t,
    two_items,
)

pytest.importorskip("ledger.messaging")

O = oid(1)
GOOD = (f"Hej Anna! Angående din beställning {O}: paketet lämnades till PostNord i dag och "
        "beräknas komma fram på torsdag. Med vänliga hälsningar, Butiken")
REVIEW = (f"Hej! Vi hoppas att beställning {O} kom fram som den skulle. Vi vore tacksamma för en "
          "ärlig recension av produkten. Hälsningar, Butiken")


def send(when: str, body: str = GOOD, purpose: str = "order-information", language: str = "sv-SE",
         order_id: str = O, **extra) -> dict:
    return cmd("send-message", when, order_id=order_id, purpose=purpose, language=language,
               body=body, **extra)


def test_good_message_is_accepted_and_recorded(ledger):
    ok(ledger, *released(O))
    out = ok1(ledger, send(t(hours=1), command_id="m-1"))
    assert out.events == ["MessageSent"]
    e = last_event(ledger, O, "MessageSent")
    assert e.message_id == "m-1" and e.purpose == "order-information" and e.body == GOOD
    assert e.language == "sv-SE" and e.actor == "seller"
    assert view_status(ledger) == "Unshipped"  # messages change no status


def view_status(ledger) -> str:
    return ledger.order(O).view()["status"]


@pytest.mark.parametrize("setup", [
    [place(O, t())],                                # in the hold
    [place(O, t()), cmd("tick", t(minutes=30))],    # Pending after the hold
])
def test_send_on_a_pending_order_is_rejected(ledger, setup):
    ok(ledger, *setup)
    err = rejects(ledger, send(t(hours=1)), "order-pending")
    assert "Unshipped" in err["hint"]


def test_language_other_than_the_buyers_is_rejected(ledger):
    ok(ledger, *released(O))
    err = rejects(ledger, send(t(hours=1), language="en-GB"), "message-rejected")
    rules = [v["rule"] for v in err["violations"]]
    assert rules == ["language-mismatch"]
    assert "sv-SE" in err["violations"][0]["message"]
    assert "language-mismatch" in err["message"]


def test_every_violation_is_listed(ledger):
    ok(ledger, *released(O))
    body = "Hej! Se http://example.com \U0001F600 och ring 070-123 45 67"  # no order id either
    err = rejects(ledger, send(t(hours=1), body=body), "message-rejected")
    rules = {v["rule"] for v in err["violations"]}
    assert {"order-id-missing", "insecure-link", "emoji", "phone-number"} <= rules
    assert all(v["message"] for v in err["violations"])
    assert err["hint"]


@pytest.mark.parametrize("purpose", ["order-confirmation", "shipping-confirmation", "thank-you",
                                     "marketing"])
def test_forbidden_purposes_are_rejected(ledger, purpose):
    ok(ledger, *released(O))
    err = rejects(ledger, send(t(hours=1), purpose=purpose), "message-rejected")
    assert "purpose-forbidden" in {v["rule"] for v in err["violations"]}


def test_second_review_request_is_rejected(ledger):
    ok(ledger, *released(O), ship(O, t(hours=1)))
    ok1(ledger, send(t(days=5), REVIEW, purpose="review-request"))
    err = rejects(ledger, send(t(days=6), REVIEW, purpose="review-request"), "message-rejected")
    assert [v["rule"] for v in err["violations"]] == ["review-repeat"]
    ok1(ledger, send(t(days=6), purpose="order-information"))  # other purposes still fine


def test_rejected_review_request_does_not_use_up_the_one_allowed(ledger):
    ok(ledger, *released(O), ship(O, t(hours=1)))
    rejects(ledger, send(t(days=5), REVIEW, purpose="review-request", language="en-US"),
            "message-rejected")
    ok1(ledger, send(t(days=5), REVIEW, purpose="review-request"))


def test_window_closes_30_days_after_completion(ledger):
    ok(ledger, *released(O), ship(O, t(days=1)))
    ok1(ledger, send(t(days=31)))                     # exactly 30 days after the shipment
    err = rejects(ledger, send(t(days=31, seconds=1)), "message-rejected")
    assert [v["rule"] for v in err["violations"]] == ["window-closed"]


def test_window_counts_from_the_cancellation(ledger):
    ok(ledger, *released(O), cmd("cancel", t(days=2), order_id=O, by="seller",
                                 reason="NoInventory"))
    ok1(ledger, send(t(days=3), purpose="order-problem",
                     body=f"Hej! Beställning {O} är avbruten eftersom varan är slut i lager. "
                          "Hela beloppet har återbetalats. Vänliga hälsningar, Butiken"))
    rejects(ledger, send(t(days=33)), "message-rejected")


def test_window_counts_from_the_last_ship_confirmation(ledger):
    ok(ledger, *released(O, items=two_items()), ship(O, t(days=1), [(A, 1)]), ship(O, t(days=10)))
    ok1(ledger, send(t(days=39)))  # 29 days after the last confirmation


def test_open_order_has_no_window_yet(ledger):
    ok(ledger, *released(O))
    ok1(ledger, send(t(days=29)))


def test_message_to_an_unknown_order_is_rejected(ledger):
    rejects(ledger, send(t(), order_id=oid(2)), "unknown-order")


def test_received_messages_are_recorded_on_any_order(ledger):
    ok1(ledger, place(O, t()))
    out = ok1(ledger, cmd("receive-message", t(minutes=5), order_id=O, body="Hej, när skickas den?",
                          command_id="in-1", **{"from": "buyer"}))
    assert out.events == ["MessageReceived"]
    e = last_event(ledger, O, "MessageReceived")
    assert (e.sender, e.body, e.message_id, e.requests_address_change) == (
        "buyer", "Hej, när skickas den?", "in-1", False)
    ok1(ledger, cmd("cancel", t(minutes=6), order_id=O, by="buyer"))
    ok1(ledger, cmd("receive-message", t(days=90), order_id=O, body="Tack!",
                    **{"from": "customer-service"}))
    assert names(order_events(ledger, O)).count("MessageReceived") == 2


def test_received_message_from_someone_else_is_rejected(ledger):
    ok1(ledger, place(O, t()))
    err = rejects(ledger, cmd("receive-message", t(minutes=5), order_id=O, body="x",
                              **{"from": "seller"}), "invalid-field")
    assert err["field"] == "from"
