"""The messaging rules' guarded regular expressions find exactly what the plain ones
find: the same matches, the same masks, the same violations of whole messages."""

from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

import ledger.messaging as m

#: pieces that the rules look for (and near misses), characters that fold to ASCII
#: letters under IGNORECASE, and the separators around them
_TOKENS = [
    "coupon", "Coupons", "discount", "DISCOUNTS", "promo code", "promotional codes", "promos",
    "voucher", "50% off", "12,5 % OFF", "percent off", "special offer", "limited-time",
    "newsletter", "shop now", "new arrivals", "summer sale", "sale ends", "kupong", "rabatten",
    "sommarrea", "rean", "kampanj", "superErbjudande", "nyhetsbrev", "köp nu", "优惠券", "折扣",
    "gutschein", "code promo", "soldes", "cupón", "descuentos", "rebajas", "oferta especial",
    "unsubscribe", "un-subscribed", "opt-out", "opting out", "stop receiving", "avregistrera",
    "退订", "abmelden", "désabonner", "darse de baja", "free", "feel free", "refund", "gift",
    "cash back", "money", "in exchange for", "gratis", "återbetalning", "免费", "kostenlos",
    "positive review", "5 stars", "five-star", "remove your review", "change your feedback",
    "thanks", "Thank you!", "tack", "Hej", "Hello", "Best regards", "Med vänliga hälsningar",
    "if you have any questions", "don't hesitate", "order 203-0000136-2311551",
    "203‐1234567‐7654321", "anna@example.se", "anna (at) example (dot) se", "x＠y.com",
    "+46 70 123 45 67", "070-123 45 67", "(08) 123 456", "0701234567", "13912345678",
    "tracking number 0701234567", "call 0701234567", "phone: +46701234567", "2026-03-02",
    "12/3/2026", "12345-6789", "SE-123 45 Stockholm", "123 45 STOCKHOLM", "SEK 1 234,50",
    "199 kr", "99:-", "$25", "warranty", "carrier", "PostNord", "manufacturer",
    "http://example.se/x", "https://example.se", "<img src='http://x/pixel.gif' width=1>",
    "![logo](http://x/a.png)", "😀", "👍🏽", "🇸🇪", "1️⃣", "©️", ":)", ":-(", ";D", "ſ", "K", "İ",
    "ı", "ß", "ﬀ", "µ", "Σ", "ς",
]
_text = st.lists(st.one_of(
    st.sampled_from(_TOKENS),
    st.sampled_from([" ", "  ", "\n", "\n\n\n", ".", ",", "!", "?", "-", "(", ")", ":", "#"]),
    st.text(alphabet="aeiouskrtlnä0123456789 .-+@()", max_size=6),
    st.text(max_size=3),
), max_size=25).map("".join)


def test_the_rules_patterns_are_guarded():
    """The patterns that scan every message body have a guard (on this Python)."""
    guarded = [name for name, value in vars(m).items()
               if isinstance(value, re.Pattern) and value in m._PLAIN]
    for name in ("_MARKETING", "_OPT_OUT", "_INCENTIVE", "_REMOVAL", "_EMAIL", "_PHONE",
                 "_NOT_PHONE", "_EMOJI"):
        assert name in guarded


@settings(max_examples=400, deadline=None)
@given(_text, st.integers(0, 30))
def test_every_guarded_pattern_matches_as_the_plain_one(text, pos):
    for guarded, plain in m._PLAIN.items():
        assert ([(x.span(), x.groups()) for x in guarded.finditer(text)]
                == [(x.span(), x.groups()) for x in plain.finditer(text)]), plain.pattern
        got, want = guarded.search(text, pos), plain.search(text, pos)
        assert (got and got.span()) == (want and want.span())
        got, want = guarded.match(text, pos), plain.match(text, pos)
        assert (got and got.span()) == (want and want.span())
        assert guarded.sub("#", text) == plain.sub("#", text)


@contextmanager
def _plain_rules():
    """The messaging module with every guarded pattern swapped for its plain one."""
    saved = dict(vars(m))
    try:
        for name, value in saved.items():
            if isinstance(value, re.Pattern) and value in m._PLAIN:
                setattr(m, name, m._PLAIN[value])
        m._PHONE_REASON_WORDS = {k: m._PLAIN.get(v, v) for k, v in saved["_PHONE_REASON_WORDS"].items()}
        yield
    finally:
        for name, value in saved.items():
            setattr(m, name, value)


@settings(max_examples=150, deadline=None)
@given(body=_text, purpose=st.sampled_from(["delivery-problem", "review-request", "thank-you"]),
       phone_reason=st.sampled_from([None, "warranty", "carrier", "fax"]))
def test_whole_messages_get_the_same_violations(body, purpose, phone_reason):
    now = datetime(2026, 3, 10, tzinfo=timezone.utc)
    kwargs = dict(order_id="203-0000136-2311551", purpose=purpose, language="sv-SE", body=body,
                  phone_reason=phone_reason, buyer_language="sv-SE",
                  completed_at=now - timedelta(days=2), now=now)
    fast = [v.as_dict() for v in m.check_message(**kwargs)]
    with _plain_rules():
        assert m._MARKETING not in m._PLAIN  # the plain rules are the ones checking now
        plain = [v.as_dict() for v in m.check_message(**kwargs)]
    assert fast == plain
