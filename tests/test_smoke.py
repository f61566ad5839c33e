from builders import at, lines, oid, released


def test_released_order_is_unshipped_on_both_backends(ledger):
    outs = list(ledger.apply_lines(lines(*released(oid(1)))))
    assert [o.status for o in outs] == ["applied"] * 3
    assert ledger.order(oid(1)).status == "Unshipped"
    assert ledger.now().isoformat() == at(30)
