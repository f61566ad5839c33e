"""Seller metrics (docs/rules.md §8): inclusion rules, lateness, tracking,
window edges on both sides, thresholds, and the output shape."""

from __future__ import annotations

from datetime import timedelta

from builders import oid, released
from test_projections_support import (
    T0,
    at,
    build,
    cmd,
    item,
    place,
    seller_cancel,
    ship,
    timeline,
    views_and_memory,
    when,
)

from ledger.store import to_us
from projections.model import MetricOrder
from projections.read import compute_metrics
from projections.rows import plain

O = [oid(n) for n in range(100)]


def request(o, t):
    return cmd("request-cancel", t, order_id=o)


def adjust(o, t, item_id, qty, reason, **amounts):
    return cmd("adjust", t, order_id=o, items=[
        {"order_item_id": item_id, "reason": reason, "quantity_cancelled": qty, **amounts}])


async def metrics_at(tmp_path, cmds, *times):
    """Seller metrics at each time (stored views and memory agree); one result if one time."""
    led = build(tmp_path, timeline(*cmds))
    try:
        out = [(await views_and_memory(led, tmp_path, t, views=f"v{i}.db"))["metrics"]
               for i, t in enumerate(times)]
    finally:
        led.close()
    return out[0] if len(out) == 1 else out


async def test_cancellation_rate_counts_seller_caused_cancellations_once(tmp_path):
    two = [item("I1", quantity=2)]
    m = await metrics_at(tmp_path, [
        released(O[1], when_minutes=1), ship(O[1], at(60)),                        # fine
        released(O[2], when_minutes=2), seller_cancel(O[2], at(61)),               # counted
        released(O[3], when_minutes=3), request(O[3], at(50)),
        seller_cancel(O[3], at(62), "BuyerCanceled"),                              # buyer's wish
        released(O[4], when_minutes=4), seller_cancel(O[4], at(63), "BuyerCanceled"),  # no request
        released(O[5], when_minutes=5, items=two), adjust(O[5], at(64), "I1", 1, "NoInventory"),
        seller_cancel(O[5], at(65), "GeneralAdjustment"),                          # still once
        released(O[6], when_minutes=6, items=two), request(O[6], at(51)),
        adjust(O[6], at(66), "I1", 1, "CustomerCancel"),                           # buyer's wish
        released(O[7], when_minutes=7), adjust(O[7], at(67), "10000000000001", 0,
                                               "GeneralAdjustment", item_price_adj="5"),
        place(O[8], at(8)), cmd("cancel", at(9), order_id=O[8], by="buyer"),      # in the hold
        place(O[9], at(9)), cmd("verify-payment", at(10), order_id=O[9], outcome="declined"),
        place(O[10], at(10)), cmd("verify-payment", at(45), order_id=O[10], outcome="fraud"),
        place(O[11], at(11)), cmd("verify-payment", at(12), order_id=O[11], outcome="extended"),
        cmd("tick", at(0, days=1)),
    ], when(at(0, days=3)))
    c = m["cancellation_rate"]
    assert (c["numerator"], c["denominator"]) == (3, 7)
    assert c["breakdown"] == {"BuyerCanceled": 1, "NoInventory": 2}
    assert c["rate"] == 3 / 7 and c["breached"] is True and c["target"] == 0.025


async def test_thirty_day_rule_counts_and_payment_not_verified_does_not(tmp_path):
    cmds = [
        released(O[1]),                                                            # never shipped
        released(O[2], when_minutes=1), ship(O[2], at(60)),
        place(O[3], at(2)),                                                        # never verified
        cmd("tick", at(0, days=31)),
    ]
    m, later = await metrics_at(tmp_path, cmds, when(at(0, days=3)), when(at(0, days=31)))
    c = m["cancellation_rate"]
    assert (c["numerator"], c["denominator"], c["breakdown"]) == (
        1, 2, {"ShipmentNotConfirmed": 1})
    # 30 days on: the canceled order is not due for shipping any more; O[2] was on time
    late = later["late_shipment_rate"]["30d"]
    assert (late["numerator"], late["denominator"]) == (0, 1)


async def test_cancellation_window_edges_are_start_inclusive_end_exclusive(tmp_path):
    T = when(at(0, days=7))
    cmds = []
    for n, minutes in ((1, -1), (2, 0), (3, 7 * 24 * 60 - 1), (4, 7 * 24 * 60)):
        # purchased at T-7d-1min, T-7d, T-1min, T; all released, all seller-canceled
        cmds += [released(O[n], when_minutes=minutes),
                 seller_cancel(O[n], at(minutes + 40))]
    m = await metrics_at(tmp_path, cmds, T)
    c = m["cancellation_rate"]
    assert (c["numerator"], c["denominator"]) == (2, 2)         # O[2] and O[3]
    assert c["window"] == {"days": 7, "by": "purchase date", "from": "2026-03-02T09:00:00+01:00",
                           "to": "2026-03-09T09:00:00+01:00", "edges": "[from, to)"}


async def test_late_shipment_rules(tmp_path):
    two = [item("I1"), item("I2", "SKU-2")]
    promise = at(0, days=2)                                   # default latest ship date of O[n]
    m = await metrics_at(tmp_path, [
        released(O[1]), ship(O[1], at(0, days=1)),                                 # on time
        released(O[2]), ship(O[2], at(1, days=2)),                                 # late
        released(O[3]), ship(O[3], promise),                                       # at: not late
        released(O[4], items=two), ship(O[4], at(0, days=1), [("I1", 1)]),
        ship(O[4], at(0, days=3)),                                                 # rest late
        released(O[5], items=two), ship(O[5], at(0, days=1), [("I1", 1)]),
        seller_cancel(O[5], at(0, days=3)),                                        # rest canceled
        released(O[6]),                                                            # still open
        released(O[7]), seller_cancel(O[7], at(60)),                               # canceled
        place(O[8], at(0)), cmd("tick", at(30)),                                   # released late:
        cmd("verify-payment", at(0, days=1), order_id=O[8], outcome="verified"),
        ship(O[8], at(0, days=2, hours=12)),                                       # promise shifted
    ], when(at(0, days=5)))
    for window in ("10d", "30d"):
        late = m["late_shipment_rate"][window]
        assert (late["numerator"], late["denominator"]) == (3, 7), window   # O[2], O[4], O[6]
        assert late["breached"] is True and late["target"] == 0.04


async def test_late_shipment_window_edges_by_latest_ship_date(tmp_path):
    T = when(at(0, days=40))
    cmds = []
    # latest ship date at T-30d-1min, T-30d, T-10d-1min, T-10d, T-1min, T
    for n, days, minutes in ((1, 10, -1), (2, 10, 0), (3, 30, -1), (4, 30, 0), (5, 40, -1),
                             (6, 40, 0)):
        cmds += [place(O[n], at(n), latest_ship_date=at(minutes, days=days),
                       latest_delivery_date=at(0, days=days + 5)),
                 cmd("verify-payment", at(n + 1), order_id=O[n], outcome="verified")]
    cmds.append(cmd("tick", at(40)))
    # all still open, so every order due in a window is late at T
    m = await metrics_at(tmp_path, cmds, T)
    ten, thirty = m["late_shipment_rate"]["10d"], m["late_shipment_rate"]["30d"]
    assert (ten["numerator"], ten["denominator"]) == (2, 2)          # O[4], O[5]
    assert (thirty["numerator"], thirty["denominator"]) == (4, 4)    # O[2] .. O[5]
    assert ten["window"]["by"] == "latest ship date"


async def test_valid_tracking_rate_by_confirmation_time(tmp_path):
    T = when(at(0, days=31))
    day = 24 * 60
    cmds = []
    # confirmations at T-30d-1min (out), T-30d (in), T-1min (in, no tracking), T (out)
    for n, placed, shipped, tracking in ((1, 1, day - 1, "T1"), (2, 2, day, "T2"),
                                         (3, 25 * day, 31 * day - 1, None),
                                         (4, 25 * day + 1, 31 * day, None)):
        cmds += [place(O[n], at(placed)),
                 cmd("verify-payment", at(placed + 1), order_id=O[n], outcome="verified"),
                 ship(O[n], at(shipped), tracking=tracking)]
    m = await metrics_at(tmp_path, cmds, T)
    v = m["valid_tracking_rate"]
    assert (v["numerator"], v["denominator"], v["rate"]) == (1, 2, 0.5)
    assert v["breached"] is True and v["target"] == 0.95
    assert v["window"]["by"] == "confirmation time"


async def test_each_partial_confirmation_is_a_shipment(tmp_path):
    two = [item("I1"), item("I2", "SKU-2")]
    m = await metrics_at(tmp_path, [
        released(O[1], items=two), ship(O[1], at(60), [("I1", 1)], tracking="T1"),
        ship(O[1], at(70), tracking=None),
    ], when(at(0, days=1)))
    v = m["valid_tracking_rate"]
    assert (v["numerator"], v["denominator"]) == (1, 2)


def test_thresholds_and_empty_windows():
    T = T0
    start = to_us(T - timedelta(days=3))

    # cancellation: 1 of 40 is 2.5 % -> breached (the target is strictly below 2.5 %)
    def cancel(n, k):
        orders = [MetricOrder(f"o{i}", start, True, start, None, "Shipped",
                              "NoInventory" if i < k else None, None) for i in range(n)]
        return plain(compute_metrics(orders, [], T))["cancellation_rate"]
    assert cancel(40, 1)["breached"] is True
    assert cancel(41, 1)["breached"] is False
    assert cancel(0, 0) | {"window": None} == {
        "window": None, "numerator": 0, "denominator": 0, "rate": None, "target": 0.025,
        "target_text": "< 2.5%", "breached": False, "breakdown": {}}

    def late(n, k):
        orders = [MetricOrder(f"o{i}", start, True, start, start + (1 if i < k else 0),
                              "Shipped", None, None) for i in range(n)]
        return plain(compute_metrics(orders, [], T))["late_shipment_rate"]["10d"]
    assert late(25, 1)["breached"] is True                     # 4 % is not below 4 %
    assert late(26, 1)["breached"] is False

    def tracking(n, k):
        m = compute_metrics([], [(start, i < k) for i in range(n)], T)
        return plain(m)["valid_tracking_rate"]
    assert tracking(100, 95)["breached"] is True               # 95 % is not above 95 %
    assert tracking(100, 96)["breached"] is False
    assert tracking(0, 0)["rate"] is None and tracking(0, 0)["breached"] is False


async def test_unreleased_orders_never_count(tmp_path):
    m = await metrics_at(tmp_path, [place(O[1], at(0)), place(O[2], at(1)),
                                    cmd("verify-payment", at(2), order_id=O[2],
                                        outcome="extended")], when(at(0, days=3)))
    for metric in (m["cancellation_rate"], m["late_shipment_rate"]["10d"],
                   m["late_shipment_rate"]["30d"], m["valid_tracking_rate"]):
        assert (metric["numerator"], metric["denominator"], metric["rate"],
                metric["breached"]) == (0, 0, None, False)
