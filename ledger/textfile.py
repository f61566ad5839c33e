"""Is this file UTF-8 text at all? Decided once, from its first bytes.

A command file or a feed that is not UTF-8 text -- a binary file, a
compressed one, UTF-16 or UTF-32 (with or without a byte-order mark) --
must be refused as a whole, with one message saying what the file looks
like and how to fix it, instead of one rejected line per physical line.
:func:`sniff` looks at a sample (the first :data:`SAMPLE_BYTES` bytes):

1. a UTF-32 or UTF-16 byte-order mark;
2. the signature of a common binary format (gzip, zip, PDF, SQLite, ...);
3. NUL bytes: every second byte NUL is UTF-16, three of four UTF-32, else
   binary data (a NUL never occurs in a UTF-8 command file or feed);
4. undecodable bytes and control characters making up more than
   :data:`BINARY_SHARE` of the sample: binary data;
5. at least :data:`MIN_FAILING_LINES` lines of the sample that are not
   UTF-8, and more than half of its lines: the whole file is in another
   encoding (Latin-1 / Windows-1252 is named when it decodes as that).

A single bad line in an otherwise UTF-8 file is *not* a whole-file error:
it stays one rejected line (``malformed-json`` for a command file). A UTF-8
byte-order mark is fine (readers skip it).
"""

from __future__ import annotations

import codecs
import io
import re
from typing import IO, Iterator

#: how much of a file is looked at
SAMPLE_BYTES = 64 * 1024
#: share of undecodable bytes and control characters that makes a sample binary
BINARY_SHARE = 0.10
#: lines of the sample that must fail to decode (and be more than half of its
#: lines) for the whole file to be in another encoding; fewer stay rejected lines
MIN_FAILING_LINES = 5

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "UTF-32 (little-endian, with a byte-order mark)"),
    (codecs.BOM_UTF32_BE, "UTF-32 (big-endian, with a byte-order mark)"),
    (codecs.BOM_UTF16_LE, "UTF-16 (little-endian, with a byte-order mark)"),
    (codecs.BOM_UTF16_BE, "UTF-16 (big-endian, with a byte-order mark)"),
)

_MAGIC: tuple[tuple[bytes, str, str], ...] = (
    (b"\x1f\x8b", "a gzip-compressed file", "decompress it first (gunzip)"),
    (b"PK\x03\x04", "a zip archive (or an Excel .xlsx workbook)",
     "extract the file, or export the sheet as UTF-8 text"),
    (b"BZh", "a bzip2-compressed file", "decompress it first (bunzip2)"),
    (b"\xfd7zXZ\x00", "an xz-compressed file", "decompress it first (unxz)"),
    (b"\x28\xb5\x2f\xfd", "a zstd-compressed file", "decompress it first (unzstd)"),
    (b"%PDF-", "a PDF document", "give the text file itself"),
    (b"SQLite format 3\x00", "an SQLite database (a ledger?)",
     "give a command file; a ledger is opened with --db"),
    (b"\xd0\xcf\x11\xe0", "an old Office document (.xls/.doc)",
     "export it as UTF-8 text"),
    (b"\x89PNG", "a PNG image", "give the text file itself"),
)

#: control characters no text file of ours holds (tab, LF, VT, FF, CR are fine)
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")

SAVE_AS_UTF8 = "save it as UTF-8 (with or without a byte-order mark)"


class NotText(ValueError):
    """The whole file is not UTF-8 text; ``looks_like`` says what it seems to be."""

    def __init__(self, looks_like: str, fix: str) -> None:
        super().__init__(f"the file is not UTF-8 text: it looks like {looks_like}; {fix}")
        self.looks_like = looks_like
        self.fix = fix


def sniff(sample: bytes, *, complete: bool = False) -> NotText | None:
    """Why ``sample`` (a file's first bytes; all of it when ``complete``) is not
    UTF-8 text, or None when it is (or is text with only a line or so bad)."""
    if sample.startswith(codecs.BOM_UTF8):
        sample = sample[len(codecs.BOM_UTF8):]
    else:
        for bom, name in _BOMS:
            if sample.startswith(bom):
                return NotText(name, SAVE_AS_UTF8)
        for magic, name, fix in _MAGIC:
            if sample.startswith(magic):
                return NotText(name, fix)
    if not sample:
        return None
    if 0 in sample:
        guess = _nul_guess(sample)
        return NotText(guess, SAVE_AS_UTF8 if guess.startswith("UTF") else "give a UTF-8 text file")
    if not complete:  # a character cut at the end of the sample is not an error
        cut = _last_boundary(sample)
        sample = sample[:cut]
    text = sample.decode("utf-8", errors="replace")
    bad = text.count("\ufffd") + len(_CONTROL.findall(text))
    if bad and bad > BINARY_SHARE * max(len(sample), 1) and len(sample) >= 4:
        return NotText("binary data (undecodable bytes and control characters)",
                       "give a UTF-8 text file")
    lines = [ln for ln in sample.split(b"\n") if ln.strip()]
    if not complete and len(lines) > 1 and not sample.endswith(b"\n"):
        lines = lines[:-1]  # the last line may go on past the sample
    failing = 0
    for ln in lines:
        try:
            ln.decode("utf-8")
        except UnicodeDecodeError:
            failing += 1
    if failing >= MIN_FAILING_LINES and failing * 2 > len(lines):
        try:
            sample.decode("cp1252")
            guess = "Latin-1 / Windows-1252 text"
        except UnicodeDecodeError:
            guess = "text in an encoding other than UTF-8"
        return NotText(f"{guess} ({failing} of the first {len(lines)} lines are not UTF-8)",
                       SAVE_AS_UTF8)
    return None


def wide_encoding(sample: bytes) -> NotText | None:
    """Only the certain cases: a UTF-16/32 byte-order mark, or NULs laid out like
    UTF-16/32 text. For readers that decode the whole file anyway and reject
    other bad bytes line by line or by their own message (the feeds)."""
    for bom, name in _BOMS:
        if sample.startswith(bom):
            return NotText(name, SAVE_AS_UTF8)
    if 0 in sample:
        guess = _nul_guess(sample)
        if guess.startswith("UTF"):
            return NotText(guess, SAVE_AS_UTF8)
    return None


def _nul_guess(sample: bytes) -> str:
    """UTF-16 / UTF-32 without a byte-order mark (mostly ASCII text), else binary."""
    head = sample[:4096]
    n = len(head) - len(head) % 4
    if n >= 4:
        quads = [head[i:i + 4] for i in range(0, n, 4)]
        if all(q[1:] == b"\0\0\0" and q[0] for q in quads[:64]):
            return "UTF-32 (little-endian, no byte-order mark)"
        if all(q[:3] == b"\0\0\0" and q[3] for q in quads[:64]):
            return "UTF-32 (big-endian, no byte-order mark)"
    n = len(head) - len(head) % 2
    if n >= 2:
        even, odd = head[0:n:2], head[1:n:2]
        if odd.count(0) * 10 >= len(odd) * 9 and even.count(0) * 10 < len(even):
            return "UTF-16 (little-endian, no byte-order mark)"
        if even.count(0) * 10 >= len(even) * 9 and odd.count(0) * 10 < len(odd):
            return "UTF-16 (big-endian, no byte-order mark)"
    return "binary data (it holds NUL bytes)"


def _last_boundary(data: bytes) -> int:
    """Length of ``data`` without a UTF-8 sequence cut at its end."""
    for back in range(1, min(4, len(data)) + 1):
        b = data[-back]
        if b < 0x80:
            return len(data)
        if b >= 0xC0:  # a lead byte: is its sequence complete?
            need = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
            return len(data) if back >= need else len(data) - back
    return len(data)


def text_lines(stream: IO[bytes]) -> Iterator[bytes]:
    """The lines of a binary stream (a file or stdin), after checking its first
    bytes with :func:`sniff`; raises :class:`NotText` before yielding anything.

    Only the sample is held in memory; the rest is read line by line.
    """
    sample = stream.read(SAMPLE_BYTES)
    if not isinstance(sample, bytes):  # a text stream: already decoded
        raise TypeError("text_lines needs a binary stream")
    more = stream.read(1)
    problem = sniff(sample, complete=not more)
    if problem is not None:
        raise problem
    return _chain(sample + more, stream)


def count_lines(stream: IO[bytes]) -> int | None:
    """Lines in a regular file (for a progress bar), read with ``pread`` so the
    stream's position is untouched; None for a pipe, a terminal, a socket."""
    import os
    import stat

    try:
        fd = stream.fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        n = offset = 0
        last = b""
        while True:
            block = os.pread(fd, 1 << 20, offset)
            if not block:
                break
            n += block.count(b"\n")
            offset += len(block)
            last = block[-1:]
        return n + (1 if last not in (b"", b"\n") else 0)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return None


def _chain(head: bytes, stream: IO[bytes]) -> Iterator[bytes]:
    parts = head.split(b"\n")
    last = parts.pop()  # the unfinished last line of the sample
    for p in parts:
        yield p + b"\n"
    if last:
        rest = stream.readline()
        yield last + rest
    yield from stream
