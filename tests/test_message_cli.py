"""``order-ledger message check``: the messaging rules without sending anything."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from builders import at, cmd, lines, oid, released
from ledger.application import Ledger
from order_ledger.cli import main

ORDER = "203-1234567-7654321"
NOW = "2026-03-02T12:00:00+01:00"

ALLOWED = {
    "sv": {"language": "sv-SE", "buyer_language": "sv-SE",
           "body": f"Hej Anna! Gäller order {ORDER}. Vi behöver din portkod för leveransen."},
    "en": {"language": "en-GB", "buyer_language": "en-GB",
           "body": f"Hi Anna, about order {ORDER}: the carrier needs your door code to deliver "
                   "the parcel."},
    "zh": {"language": "zh-CN", "buyer_language": "zh-CN",
           "body": f"您好，关于订单 {ORDER}：快递员需要您的门禁密码才能送货，请回复此消息。"},
}

BLOCKED = {
    "sv": ({"language": "sv-SE", "buyer_language": "sv-SE",
            "body": f"Hej! Gäller order {ORDER}. Mejla kundtjanst@butiken.se 😊"},
           {"email-address": "kundtjanst@butiken.se", "emoji": "😊"}),
    "en": ({"language": "en-GB", "buyer_language": "en-GB",
            "body": f"Order {ORDER}: track it at http://tracking.example.com/abc"},
           {"insecure-link": "http://tracking.example.com/abc"}),
    "zh": ({"language": "zh-CN", "buyer_language": "zh-CN",
            "body": "您好，快递员需要您的门禁密码才能送货。请发邮件到 shop@example.cn"},
           {"order-id-missing": None, "email-address": "shop@example.cn"}),
}


def message(lang_case: dict, **extra) -> dict:
    return {"order_id": ORDER, "purpose": "order-information", "now": NOW, **lang_case, **extra}


def check(tmp_path, payload: str, *args: str, code: int):
    path = tmp_path / "msg.json"
    path.write_text(payload, encoding="utf-8")
    result = CliRunner().invoke(main, ["message", "check", str(path), *args])
    assert result.exit_code == code, result.output
    return result


@pytest.mark.parametrize("lang", sorted(ALLOWED))
def test_allowed_messages_exit_0(tmp_path, lang):
    result = check(tmp_path, json.dumps(message(ALLOWED[lang])), code=0)
    assert "allowed, no violations" in result.stdout
    out = json.loads(check(tmp_path, json.dumps(message(ALLOWED[lang])), "--json", code=0).stdout)
    assert (out["checked"], out["allowed"], out["blocked"]) == (1, 1, 0)
    assert out["messages"][0]["violations"] == []


@pytest.mark.parametrize("lang", sorted(BLOCKED))
def test_blocked_messages_list_every_violation(tmp_path, lang):
    case, expected = BLOCKED[lang]
    out = json.loads(check(tmp_path, json.dumps(message(case)), "--json", code=1).stdout)
    found = out["messages"][0]["violations"]
    assert {v["rule"]: v["found"] for v in found} == expected
    body = case["body"]
    for v in found:
        assert set(v) >= {"rule", "message", "found", "start", "end"}
        if v["found"] is not None:
            assert body[v["start"]:v["end"]] == v["found"]
    text = check(tmp_path, json.dumps(message(case)), code=1).stdout
    n = len(expected)
    assert f"blocked, {n} violation{'s' if n > 1 else ''}" in text
    for rule, what in expected.items():
        assert f"- {rule}: " in text
        if what:
            assert repr(what) in text


def test_json_lines_and_language_mismatch(tmp_path):
    msgs = [message(ALLOWED["sv"]),
            message({**ALLOWED["en"], "buyer_language": "sv-SE"}),
            message(ALLOWED["zh"], attachments=[{"name": "faktura.pdf", "kind": "invoice"}])]
    payload = "\n".join(json.dumps(m, ensure_ascii=False) for m in msgs) + "\n\n"
    out = json.loads(check(tmp_path, payload, "--json", code=1).stdout)
    assert (out["checked"], out["allowed"], out["blocked"]) == (3, 2, 1)
    assert [m["line"] for m in out["messages"]] == [1, 2, 3]
    assert [v["rule"] for v in out["messages"][1]["violations"]] == ["language-mismatch"]
    text = check(tmp_path, payload, code=1).stdout
    assert "3 messages: 2 allowed, 1 blocked" in text


def test_window_and_review_state_from_the_file(tmp_path):
    late = message(ALLOWED["en"], completed_at="2026-01-01T10:00:00+01:00")
    out = json.loads(check(tmp_path, json.dumps(late), "--json", code=1).stdout)
    assert [v["rule"] for v in out["messages"][0]["violations"]] == ["window-closed"]
    review = message({**ALLOWED["en"], "body": f"Order {ORDER}: please review the lamp."},
                     purpose="review-request", review_already_requested=True)
    out = json.loads(check(tmp_path, json.dumps(review), "--json", code=1).stdout)
    assert [v["rule"] for v in out["messages"][0]["violations"]] == ["review-repeat"]


def test_a_send_message_command_line_is_accepted(tmp_path):
    line = {"type": "send-message", "at": NOW, "command_id": "m-1",
            **{k: v for k, v in message(ALLOWED["sv"]).items() if k not in ("now",)}}
    out = json.loads(check(tmp_path, json.dumps(line), "--json", code=0).stdout)
    assert out["messages"][0]["allowed"] is True


def test_without_buyer_language_the_language_rule_is_not_checked(tmp_path):
    msg = message({k: v for k, v in ALLOWED["en"].items() if k != "buyer_language"})
    out = json.loads(check(tmp_path, json.dumps(msg), "--json", code=0).stdout)
    assert any("language rule was not checked" in n for n in out["messages"][0]["notes"])


def test_the_ledger_supplies_language_completion_and_review_state(db_url, tmp_path):
    o = oid(1)
    with Ledger(db_url) as led:
        outs = list(led.apply_lines(lines(
            *released(o),
            cmd("ship", at(hours=2), order_id=o, carrier_code="PostNord", ship_date="2026-03-02"),
            cmd("send-message", at(hours=3), order_id=o, purpose="review-request",
                language="sv-SE", body=f"Order {o}: vill du dela med dig av din upplevelse?"))))
        assert all(x.ok for x in outs), [x.error for x in outs]
    # the file claims English and no completion; the ledger knows better
    msg = {"order_id": o, "purpose": "review-request", "language": "en-GB",
           "buyer_language": "en-GB", "body": f"Order {o}: please review the mug.",
           "now": "2026-04-15T12:00:00+02:00"}
    out = json.loads(check(tmp_path, json.dumps(msg), "--json", "--db", db_url, code=1).stdout)
    rules = [v["rule"] for v in out["messages"][0]["violations"]]
    assert set(rules) == {"window-closed", "language-mismatch", "review-repeat"}
    assert any("taken from the ledger" in n for n in out["messages"][0]["notes"])
    # an order the ledger does not know: the file's values are used
    other = {**msg, "order_id": ORDER, "body": f"Order {ORDER}: please review the mug."}
    out = json.loads(check(tmp_path, json.dumps(other), "--json", "--db", db_url, code=0).stdout)
    assert any("not in the ledger" in n for n in out["messages"][0]["notes"])


@pytest.mark.parametrize("payload, text", [
    ('{"order_id": "x"', "not JSON"),
    (json.dumps({"order_id": ORDER, "purpose": "invoice", "language": "sv"}), "body is missing"),
    (json.dumps({**message(ALLOWED["sv"]), "bodyy": "x"}), "unknown field(s) bodyy"),
    (json.dumps({**message(ALLOWED["sv"]), "now": "tomorrow"}), "not an ISO-8601 time"),
    ("", "no message"),
])
def test_usage_errors_exit_2(tmp_path, payload, text):
    result = check(tmp_path, payload, code=2)
    assert text in result.output


def test_help():
    result = CliRunner().invoke(main, ["message", "check", "--help"])
    assert result.exit_code == 0 and "--db" in result.output and "--json" in result.output


def test_check_send_message_helper_for_check_only(sqlite_url, capsys):
    """What ``send-message --check-only`` calls: checks against the ledger, records nothing."""
    from order_ledger.feed_commands import check_send_message

    o = oid(1)
    with Ledger(sqlite_url) as led:
        assert all(x.ok for x in led.apply_lines(lines(*released(o))))
        head = led.head()
    common = dict(order_id=o, purpose="delivery-problem", attachments=None, phone_reason=None,
                  db=sqlite_url, now=None, as_json=True)
    with pytest.raises(SystemExit) as exc:
        check_send_message(language="en-GB", body=f"Order {o}: http://x.example/a", **common)
    assert exc.value.code == 1
    out = json.loads(capsys.readouterr().out)
    assert {v["rule"] for v in out["violations"]} == {"language-mismatch", "insecure-link"}
    with pytest.raises(SystemExit) as exc:
        check_send_message(language="sv-SE", body=f"Order {o}: vi behöver din portkod.", **common)
    assert exc.value.code == 0 and json.loads(capsys.readouterr().out)["allowed"] is True
    with Ledger(sqlite_url) as led:
        assert led.head() == head
