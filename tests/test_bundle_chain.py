"""Bundles carry the source's hash chain; a full bundle is verified against it on import."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys

import msgspec
import pytest

from builders import walkthrough_lines
from ledger.application import Ledger
from replay.bundle import BundleError, Trailer, export_bundle, import_bundle, read_bundle

N = 40


def _source(db: str) -> tuple[bytes, str]:
    with Ledger(db) as led:
        list(led.apply_lines(walkthrough_lines(N)))
        buf = io.BytesIO()
        export_bundle(led, buf)
        pos, h = led.recorder.chain_head()
        chain = dict(led.recorder.chain_rows(1, led.head()))
    data = buf.getvalue()
    _, lines = read_bundle(data)
    # every line carries the source's chain hash for its position
    assert [line.chain for line, _ in lines] == [chain[line.position].hex() for line, _ in lines]
    return data, f"{pos}:{h.hex()}"


def _reseal(rows: list[bytes]) -> bytes:
    """Rewrite the trailer so the bundle's own checksum passes (what a tamperer does)."""
    body = rows[1:-1]
    digest = hashlib.sha256(b"".join(body)).hexdigest()
    trailer = msgspec.json.encode(Trailer(count=len(body), sha256=digest)) + b"\n"
    return b"".join([rows[0], *body, trailer])


def _tamper(data: bytes, how: str) -> bytes:
    rows = data.splitlines(keepends=True)
    if how == "edit":  # one byte of one event's content (the reason of a cancel, a name ...)
        head, sep, event = rows[5].partition(b'"event":')
        assert b'"at":"2026' in event
        rows[5] = head + sep + event.replace(b'"at":"2026', b'"at":"2025', 1)
    elif how == "delete":
        del rows[5]
    elif how == "swap":
        rows[5], rows[6] = rows[6], rows[5]
        # keep positions increasing, as a careful tamperer would
        a, b = json.loads(rows[5]), json.loads(rows[6])
        a["position"], b["position"] = b["position"], a["position"]
        rows[5], rows[6] = (json.dumps(a, separators=(",", ":")).encode() + b"\n",
                            json.dumps(b, separators=(",", ":")).encode() + b"\n")
    elif how == "drop-chain":  # strip one line's hash
        line = json.loads(rows[3])
        del line["chain"]
        rows[3] = json.dumps(line, separators=(",", ":")).encode() + b"\n"
    elif how == "cut-tail":
        del rows[-2]
    return _reseal(rows)


def test_full_bundle_carries_and_verifies_the_chain(db_url, tmp_path):
    data, digest = _source(db_url)
    target = str(tmp_path / "copy.db")
    with Ledger(target) as dst:
        assert import_bundle(dst, data) > 0
    from replay.bundle import verify_chain

    assert verify_chain(*read_bundle(data)) == digest  # the source's digest at export


@pytest.mark.parametrize("how", ["edit", "delete", "swap", "drop-chain", "cut-tail"])
def test_a_resealed_tampered_bundle_is_refused(db_url, tmp_path, how):
    data, _ = _source(db_url)
    bad = _tamper(data, how)
    read_bundle(bad)  # its own checksum passes: only the chain tells
    with Ledger(str(tmp_path / "t.db")) as dst:
        with pytest.raises(BundleError) as exc:
            import_bundle(dst, bad)
        assert dst.head() == 0
    msg = str(exc.value)
    assert ("hash chain mismatch at position" in msg or "carries no chain hash" in msg
            or "cut from its end" in msg or "out of sequence" in msg), msg


def test_filtered_and_redacted_bundles_carry_hashes_but_are_not_checked(tmp_path):
    db = str(tmp_path / "src.db")
    with Ledger(db) as led:
        list(led.apply_lines(walkthrough_lines(N)))
        for kw in ({"redact": True}, {"orders": [next(iter(
                led.recorder.aggregate_ids("order:")))[len("order:"):]]}):
            buf = io.BytesIO()
            export_bundle(led, buf, **kw)
            _, lines = read_bundle(buf.getvalue())
            assert lines and all(line.chain for line, _ in lines)
            with Ledger(str(tmp_path / f"t{len(kw)}{id(buf)}.db")) as dst:
                assert import_bundle(dst, buf.getvalue()) == len(lines)


def test_cli_refuses_a_tampered_bundle_and_imports_the_true_one(tmp_path):
    src = str(tmp_path / "src.db")
    data, _ = _source(src)
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    run = lambda *a: subprocess.run([sys.executable, "-m", "order_ledger", *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=60)
    r = run("export", "--db", src, "--out", str(good))
    assert r.returncode == 0, r.stderr
    bad.write_bytes(_tamper(good.read_bytes(), "edit"))
    r = run("import", str(bad), "--db", str(tmp_path / "t.db"))
    assert r.returncode == 1
    assert "bundle refused, nothing imported: hash chain mismatch at position" in r.stderr
    assert "Traceback" not in r.stderr
    with Ledger(str(tmp_path / "t.db")) as dst:
        assert dst.head() == 0
    r = run("import", str(good), "--db", str(tmp_path / "t.db"))
    assert r.returncode == 0, r.stderr
    r = run("check", "--db", str(tmp_path / "t.db"))
    assert r.returncode == 0, r.stdout + r.stderr


def test_an_encrypted_source_carries_hashes_that_import_does_not_check(tmp_path, monkeypatch):
    import base64
    import os

    monkeypatch.setenv("ORDER_LEDGER_CIPHER_KEY", base64.b64encode(os.urandom(32)).decode())
    with Ledger(str(tmp_path / "enc.db")) as led:
        list(led.apply_lines(walkthrough_lines(N)))
        buf = io.BytesIO()
        export_bundle(led, buf)
    header, lines = read_bundle(buf.getvalue())
    assert header.encrypted and all(line.chain for line, _ in lines)
    # the chain is over ciphertext the bundle does not hold: carried, not checked
    from replay.bundle import verify_chain

    assert verify_chain(header, lines) is None
    with Ledger(str(tmp_path / "copy.db")) as dst:
        assert import_bundle(dst, buf.getvalue()) == len(lines)
