"""Buyer–seller messaging rules (docs/rules.md §4, from the Seller Central page "Kommunikationsriktlinjer").

The checker is pure: :func:`check_message` looks only at its arguments and
returns every :class:`Violation` at once (an empty list means the message may be
sent). The ledger rejects ``send-message`` with all of them and records nothing.

Each rule is one small function ``_check_<rule>(m) -> iterable of Violation``;
:data:`_CHECKS` lists them in the order violations are reported and
:data:`RULES` (rule id -> one-line description) is derived from it. Offsets
(``start``/``end``) are Python ``str`` indices (code points) into ``body``.
Standard library only; see ``docs/messaging.md`` for the decisions taken where
docs/rules.md is silent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

if TYPE_CHECKING:
    from .application import Ledger

WINDOW_DAYS = 30

PERMITTED_PURPOSES: frozenset[str] = frozenset({
    "delivery-problem", "order-information", "return-question", "invoice",
    "review-request", "bulky-delivery", "home-service", "custom-design",
    "other-necessary", "order-problem", "return-follow-up",
})
FORBIDDEN_PURPOSES: frozenset[str] = frozenset({
    "order-confirmation", "shipping-confirmation", "thank-you", "marketing",
})
#: "labels, invoices, custom designs" (docs/rules.md §4); product images are never allowed.
PERMITTED_ATTACHMENT_KINDS: frozenset[str] = frozenset({"label", "invoice", "custom-design"})
PHONE_REASONS: tuple[str, ...] = ("warranty", "carrier", "manufacturer")


@dataclass(frozen=True)
class Violation:
    rule: str
    message: str
    found: str | None = None
    start: int | None = None
    end: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "message": self.message, "found": self.found,
                "start": self.start, "end": self.end}


@dataclass(frozen=True)
class _Image:
    """An image in the body: an ``<img>`` tag or a Markdown ``![alt](src)``."""

    tag: str
    tag_start: int
    src: str
    src_start: int
    attrs: dict[str, Any]


@dataclass(frozen=True)
class _Msg:
    order_id: str
    purpose: str
    language: str
    body: str
    attachments: tuple[tuple[str, str], ...]   # (name, kind)
    phone_reason: str | None
    buyer_language: str
    completed_at: datetime | None
    now: datetime | None
    review_already_requested: bool
    images: tuple[_Image, ...]


def _rx(*alternatives: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{a})" for a in alternatives), re.IGNORECASE)


def _hits(rule: str, pattern: re.Pattern[str], text: str, message: Callable[[str], str]) -> Iterator[Violation]:
    for match in pattern.finditer(text):
        yield Violation(rule, message(match.group()), match.group(), match.start(), match.end())


# --------------------------------------------------------------------------- purpose

def _check_purpose_forbidden(m: _Msg) -> Iterator[Violation]:
    if m.purpose in FORBIDDEN_PURPOSES:
        yield Violation("purpose-forbidden",
                        f"purpose '{m.purpose}' is never permitted (the marketplace sends order and "
                        "shipping confirmations itself; thank-you and marketing messages are not allowed); "
                        "send only a permitted message: " + ", ".join(sorted(PERMITTED_PURPOSES)))


def _check_purpose_unknown(m: _Msg) -> Iterator[Violation]:
    if m.purpose in PERMITTED_PURPOSES or m.purpose in FORBIDDEN_PURPOSES:
        return
    near = m.purpose.strip().lower().replace("_", "-").replace(" ", "-")
    hint = f" (did you mean '{near}'?)" if near in PERMITTED_PURPOSES else ""
    yield Violation("purpose-unknown",
                    f"unknown purpose '{m.purpose}'{hint}; use one of: " + ", ".join(sorted(PERMITTED_PURPOSES)))


# --------------------------------------------------------------------------- window, id, language

def _utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)


def _check_window_closed(m: _Msg) -> Iterator[Violation]:
    if not isinstance(m.completed_at, datetime) or not isinstance(m.now, datetime):
        return
    deadline = _utc(m.completed_at) + timedelta(days=WINDOW_DAYS)
    if _utc(m.now) > deadline:
        yield Violation("window-closed",
                        f"messages may be sent only within {WINDOW_DAYS} days after the order was completed "
                        f"({m.completed_at.isoformat()}); the window closed at {deadline.isoformat()}")


_ANY_ORDER_ID = re.compile(r"(?<!\d)\d{3}[-\u2010-\u2013\u2212]\d{7}[-\u2010-\u2013\u2212]\d{7}(?!\d)")
_DASHES = re.compile(r"[-\u2010-\u2013\u2212]")


def _check_order_id_missing(m: _Msg) -> Iterator[Violation]:
    wanted = _DASHES.sub("-", m.order_id.strip())
    ids = {_DASHES.sub("-", x.group()) for x in _ANY_ORDER_ID.finditer(m.body)}
    if wanted and wanted in ids:
        return
    other = f"; it names {', '.join(sorted(ids))} instead" if ids else ""
    yield Violation("order-id-missing",
                    f"the message must contain the 17-digit order id {m.order_id or '(none given)'}{other}; "
                    "add it to the body")


_ZH_TRADITIONAL_REGIONS = {"tw", "hk", "mo"}


def _language_key(tag: str) -> tuple[str, str | None]:
    parts = [p for p in re.split(r"[-_\s]+", tag.strip().lower()) if p]
    if not parts:
        return ("", None)
    script = next((p for p in parts[1:] if len(p) == 4 and p.isalpha()), None)
    region = next((p for p in parts[1:] if (len(p) == 2 and p.isalpha()) or (len(p) == 3 and p.isdigit())), None)
    if parts[0] == "zh" and script is None and region:
        script = "hant" if region in _ZH_TRADITIONAL_REGIONS else "hans"
    return (parts[0], script)


def _check_language_mismatch(m: _Msg) -> Iterator[Violation]:
    (lang, script), (buyer, buyer_script) = _language_key(m.language), _language_key(m.buyer_language)
    if lang and lang == buyer and (script is None or buyer_script is None or script == buyer_script):
        return
    yield Violation("language-mismatch",
                    f"the message is in '{m.language}' but the buyer's preferred language is "
                    f"'{m.buyer_language}'; write it in the buyer's language")


# --------------------------------------------------------------------------- contact details

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]+"
    r"(?:\s*[@\uff20]\s*|\s*[\[(]\s*(?:at|snabel-a)\s*[\])]\s*)"
    r"(?:[\w\-]+(?:\.|\s*[\[(]\s*(?:dot|punkt)\s*[\])]\s*))+[A-Za-z]{2,}(?![A-Za-z0-9\-])",
    re.IGNORECASE)


def _check_email_address(m: _Msg) -> Iterator[Violation]:
    yield from _hits("email-address", _EMAIL, m.body,
                     lambda f: f"remove the e-mail address '{f}'; buyers answer through the marketplace's messaging")


# Numbers that look like phone numbers but are not: masked before the phone search.
_NOT_PHONE = re.compile(
    r"https?://\S+"
    r"|(?<!\d)\d{3}[-\u2010-\u2013\u2212]\d{7}[-\u2010-\u2013\u2212]\d{7}(?!\d)"                    # order ids
    r"|(?<!\d)\d{4}[-./]\d{1,2}[-./]\d{1,2}(?!\d)|(?<!\d)\d{1,2}[-./]\d{1,2}[-./](?:\d{4}|\d{2})(?!\d)"  # dates
    r"|(?<!\d)\d{5}-\d{4}(?!\d)"                                                                  # US ZIP+4
    r"|(?<!\d)(?:SE-?)?\d{3} \d{2}(?-i:(?= +[A-ZÅÄÖ](?:[a-zåäö]|[A-ZÅÄÖ]{2})))"                      # "123 45 Stockholm"
    r"|(?:[$€£¥\uffe5]|\b(?:SEK|USD|EUR|GBP|CNY|RMB|NOK|DKK|kr)\.?)\s?\d+(?:[ \u00a0.,']\d{3})*(?:[.,]\d{1,2})?"
    r"|(?<!\d)\d+(?:[ \u00a0.,']\d{3})*(?:[.,]\d{1,2}|[.,]-)?\s?(?:kronor|kr|SEK|USD|EUR|GBP|CNY|RMB|:-|[€$£元块])",
    re.IGNORECASE)
_PHONE = re.compile(
    r"(?<![\dA-Za-z\u00C0-\u024F_.,+/\-])(?:\+\s?)?(?:\(\d{1,5}\)\s?)?\d+"
    r"(?:(?:\s?[.\-/\u2013]\s?|[ \u00a0]|\s?\(\d{1,5}\)\s?)\d+)*"
    r"(?![\dA-Za-z\u00C0-\u024F_]|[.,]\d)")
_PHONE_WORDS = _rx(r"phone|tel\b|tel\.|telefon|mobil|cell|\bring\b|\bcall\b|sms|fax|hotline|电话|手机|致电|拨打|热线",
                   r"téléphone|teléfono|llame|appelez|anrufen|rufen")
_NUMBER_LABEL = re.compile(
    r"(?:\b(?:tracking|track|spårning|sändning|kolli|shipment|consignment|invoice|faktura|order|beställning|"
    r"artikel|art\.?nr|sku|asin|ean|isbn|upc|gtin|serial|serie|kundnummer|customer (?:no|number|id)|konto|"
    r"bankgiro|plusgiro|ocr|iban|referens|reference|ref|sendung|rechnung|bestell|suivi|facture|commande|"
    r"seguimiento|factura|pedido)|运单|单号|订单|发票|快递|物流|编号|序列号)\w*[\s:#.\-]*(?:\w+[\s:#.\-]+){0,2}$",
    re.IGNORECASE)
_PHONE_REASON_WORDS = {
    "warranty": _rx(r"warrant", r"guarantee", r"garanti", r"gewährleistung", r"保修", r"质保", r"保固"),
    "carrier": _rx(r"carrier", r"courier", r"shipping company", r"delivery company", r"transportör", r"fraktbolag",
                   r"speditör", r"budfirma", r"承运", r"快递公司", r"物流公司", r"spediteur", r"paketdienst",
                   r"zusteller", r"transporteur", r"transportista", r"\b(?:postnord|dhl|ups|fedex|dpd|gls|budbee)\b"),
    "manufacturer": _rx(r"manufacturer", r"maker\b", r"tillverkare", r"制造商", r"生产商", r"厂家", r"厂商",
                        r"hersteller", r"fabricant", r"fabricante"),
}


def _mask(text: str, pattern: re.Pattern[str]) -> str:
    return pattern.sub(lambda x: re.sub(r"\d", "x", x.group()), text)


def _phone_numbers(body: str) -> Iterator[re.Match[str]]:
    masked = _mask(_mask(body, _EMAIL), _NOT_PHONE)
    for match in _PHONE.finditer(masked):
        text = match.group()
        groups = re.findall(r"\d+", text)
        digits = sum(map(len, groups))
        if not 7 <= digits <= 15 or sum(len(g) == 1 for g in groups) > 2:
            continue
        if len(groups) == 1 and not text.startswith(("+", "(")) and not re.fullmatch(r"0\d+|1[3-9]\d{9}", text):
            continue                      # bare digit run: a phone only if it starts like one
        if len(groups) == 2 and re.fullmatch(r"\d+\.\d+", text):
            continue                      # a decimal number
        before = masked[max(0, match.start() - 40):match.start()]
        if _NUMBER_LABEL.search(before) and not _PHONE_WORDS.search(before):
            continue                      # tracking, invoice, article ... number
        yield match


def _check_phone_number(m: _Msg) -> Iterator[Violation]:
    reason = m.phone_reason
    if reason in _PHONE_REASON_WORDS and _PHONE_REASON_WORDS[reason].search(m.body):
        return
    if reason in _PHONE_REASON_WORDS:
        why = (f"a {reason} phone number is allowed only when the message says explicitly that it is the "
               f"{reason}'s number; name the {reason} next to it")
    elif reason is not None:
        why = f"phone_reason '{reason}' is not one of {', '.join(PHONE_REASONS)}"
    else:
        why = ("phone numbers are allowed only for a warranty, carrier or manufacturer: remove it, or set "
               "phone_reason and say in the message whose number it is")
    for match in _phone_numbers(m.body):
        found = m.body[match.start():match.end()]
        yield Violation("phone-number", f"phone number '{found}': {why}", found, match.start(), match.end())


# --------------------------------------------------------------------------- links and images

_TAG_ATTR = re.compile(r"""([^\s=/>"']+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+))""")
# bounded repeats: an unclosed tag or bracket must not rescan the rest of the body
_IMG_TAG = re.compile(r"<img\b[^<>]{0,2000}>?", re.IGNORECASE)
_MD_IMAGE = re.compile(r"!\[[^\[\]\n]{0,2000}\]\(\s*([^()\s]{0,2000})[^()\n]{0,2000}\)?")


def _images(body: str) -> tuple[_Image, ...]:
    found: list[_Image] = []
    for tag in _IMG_TAG.finditer(body):
        attrs: dict[str, str] = {}
        src, src_start = "", tag.start()
        for a in _TAG_ATTR.finditer(tag.group()):
            group = next(g for g in (2, 3, 4) if a.group(g) is not None)
            attrs.setdefault(a.group(1).lower(), a.group(group))
            if a.group(1).lower() == "src" and not src:
                value = a.group(group)
                src = value.strip()
                src_start = tag.start() + a.start(group) + len(value) - len(value.lstrip())
        found.append(_Image(tag.group(), tag.start(), src, src_start, attrs))
    for md in _MD_IMAGE.finditer(body):
        found.append(_Image(md.group(), md.start(), md.group(1), md.start(1), {}))
    return tuple(sorted(found, key=lambda i: i.tag_start))


_HTTP = re.compile(r"http://[^\s\"'<>)\]]*", re.IGNORECASE)


def _check_insecure_link(m: _Msg) -> Iterator[Violation]:
    image_srcs = {i.src_start for i in m.images}
    for match in _HTTP.finditer(m.body):
        if match.start() not in image_srcs:
            yield Violation("insecure-link", f"insecure link '{match.group()}': only secure https links "
                            "needed to complete the order are allowed; use https:// or remove it",
                            match.group(), match.start(), match.end())


def _check_insecure_image(m: _Msg) -> Iterator[Violation]:
    for img in m.images:
        if img.src[:7].lower() == "http://":
            yield Violation("insecure-image", f"insecure image '{img.src}': images must use https",
                            img.src, img.src_start, img.src_start + len(img.src))


_PIXEL_SIZE = re.compile(r"[01](?:\.0+)?(?:px)?")
_PIXEL_STYLE = re.compile(r"(?:width|height)\s*:\s*[01](?:px)?\s*(?:;|$)|display\s*:\s*none", re.IGNORECASE)
_PIXEL_URL = re.compile(
    r"/(?:pixel|beacon|spacer|1x1|open|wf/open|trk|o)(?:\.(?:gif|png|jpe?g)|[/?#]|$)|[/_-](?:pixel|beacon|spacer|1x1)\b"
    r"|\b(?:pixel|spacer|clear|blank|transparent)\.(?:gif|png)\b", re.IGNORECASE)


def _is_pixel(img: _Image) -> bool:
    sizes = [img.attrs.get(k, "").strip() for k in ("width", "height")]
    return (any(_PIXEL_SIZE.fullmatch(s) for s in sizes)
            or bool(_PIXEL_STYLE.search(img.attrs.get("style", "")))
            or bool(_PIXEL_URL.search(img.src)))


def _check_tracking_pixel(m: _Msg) -> Iterator[Violation]:
    for img in m.images:
        if _is_pixel(img):
            yield Violation("tracking-pixel", "remove the tracking pixel (a 1x1 or hidden image, or a "
                            "pixel/beacon URL); tracking buyers is not allowed",
                            img.tag, img.tag_start, img.tag_start + len(img.tag))


_GIF = re.compile(r"\.gif(?:[?#].*)?$|^data:image/gif", re.IGNORECASE)


def _check_animated_gif(m: _Msg) -> Iterator[Violation]:
    for img in m.images:
        if _GIF.search(img.src.strip()) and not _is_pixel(img):
            yield Violation("animated-gif", f"GIF image '{img.src}': animated GIFs are not allowed; use a "
                            "still PNG or JPEG", img.src, img.src_start, img.src_start + len(img.src))
    for name, _kind in m.attachments:
        if _GIF.search(name.strip()):
            yield Violation("animated-gif", f"GIF attachment '{name}': animated GIFs are not allowed; attach "
                            "a PDF, PNG or JPEG instead", name or None)


_ANCHOR = re.compile(r"<a\b[^>]*>", re.IGNORECASE)
_ANCHOR_END = re.compile(r"</a\s*>", re.IGNORECASE)
_MD_LINKED_IMAGE = re.compile(
    r"\[\s*!\[[^\[\]\n]{0,2000}\]\([^()\n]{0,2000}\)\s*\]\([^()\n]{0,2000}\)")


def _check_logo_link(m: _Msg) -> Iterator[Violation]:
    for a in _ANCHOR.finditer(m.body):
        close = _ANCHOR_END.search(m.body, a.end())
        end = close.end() if close else len(m.body)
        if _IMG_TAG.search(m.body, a.end(), close.start() if close else end):
            yield Violation("logo-link", "an image (logo) links to a website; remove the link around the image",
                            m.body[a.start():end], a.start(), end)
    yield from _hits("logo-link", _MD_LINKED_IMAGE, m.body,
                     lambda f: "an image (logo) links to a website; remove the link around the image")


# --------------------------------------------------------------------------- attachments

def _is_product_image(kind: str) -> bool:
    return "product" in kind


def _check_attachment_kind(m: _Msg) -> Iterator[Violation]:
    for name, kind in m.attachments:
        if kind not in PERMITTED_ATTACHMENT_KINDS and not _is_product_image(kind):
            yield Violation("attachment-kind", f"attachment '{name}' has kind '{kind}'; only "
                            + ", ".join(sorted(PERMITTED_ATTACHMENT_KINDS)) + " may be attached", name or None)


def _check_product_image(m: _Msg) -> Iterator[Violation]:
    for name, kind in m.attachments:
        if _is_product_image(kind):
            yield Violation("product-image", f"attachment '{name}' is a product image; the marketplace adds "
                            "product images itself, remove it", name or None)


# --------------------------------------------------------------------------- text content

# Emoji: always-pictographic code points, and those that are emoji only with VS16 (U+FE0F).
_EMOJI_RANGES = (
    (0x1F004, 0x1F004), (0x1F0CF, 0x1F0CF), (0x1F170, 0x1F171), (0x1F17E, 0x1F17F), (0x1F18E, 0x1F18E),
    (0x1F191, 0x1F19A), (0x1F1E6, 0x1F1FF), (0x1F201, 0x1F202), (0x1F21A, 0x1F21A), (0x1F22F, 0x1F22F),
    (0x1F232, 0x1F23A), (0x1F250, 0x1F251), (0x1F300, 0x1F64F), (0x1F680, 0x1F6FF), (0x1F7E0, 0x1F7EB),
    (0x1F7F0, 0x1F7F0), (0x1F90C, 0x1F9FF), (0x1FA70, 0x1FAFF),
    (0x231A, 0x231B), (0x2328, 0x2328), (0x23CF, 0x23CF), (0x23E9, 0x23F3), (0x23F8, 0x23FA), (0x25FD, 0x25FE),
    (0x2600, 0x2604), (0x260E, 0x260E), (0x2611, 0x2611), (0x2614, 0x2615), (0x2618, 0x2618), (0x261D, 0x261D),
    (0x2620, 0x2620), (0x2622, 0x2623), (0x2626, 0x2626), (0x262A, 0x262A), (0x262E, 0x262F), (0x2638, 0x263A),
    (0x2648, 0x2653), (0x265F, 0x2660), (0x2663, 0x2663), (0x2665, 0x2666), (0x2668, 0x2668), (0x267B, 0x267B),
    (0x267E, 0x267F), (0x2692, 0x2697), (0x2699, 0x2699), (0x269B, 0x269C), (0x26A0, 0x26A1), (0x26A7, 0x26A7),
    (0x26AA, 0x26AB), (0x26B0, 0x26B1), (0x26BD, 0x26BE), (0x26C4, 0x26C5), (0x26C8, 0x26C8), (0x26CE, 0x26CF),
    (0x26D1, 0x26D1), (0x26D3, 0x26D4), (0x26E9, 0x26EA), (0x26F0, 0x26F5), (0x26F7, 0x26FA), (0x26FD, 0x26FD),
    (0x2702, 0x2702), (0x2705, 0x2705), (0x2708, 0x270D), (0x270F, 0x270F), (0x2712, 0x2712), (0x2714, 0x2714),
    (0x2716, 0x2716), (0x271D, 0x271D), (0x2721, 0x2721), (0x2728, 0x2728), (0x2733, 0x2734), (0x2744, 0x2744),
    (0x2747, 0x2747), (0x274C, 0x274C), (0x274E, 0x274E), (0x2753, 0x2755), (0x2757, 0x2757), (0x2763, 0x2764),
    (0x2795, 0x2797), (0x27B0, 0x27B0), (0x27BF, 0x27BF), (0x2B1B, 0x2B1C), (0x2B50, 0x2B50), (0x2B55, 0x2B55),
)
_VS16_ONLY_RANGES = (
    (0x23, 0x23), (0x2A, 0x2A), (0x30, 0x39), (0xA9, 0xA9), (0xAE, 0xAE), (0x203C, 0x203C), (0x2049, 0x2049),
    (0x2122, 0x2122), (0x2139, 0x2139), (0x2194, 0x2199), (0x21A9, 0x21AA), (0x24C2, 0x24C2), (0x25AA, 0x25AB),
    (0x25B6, 0x25B6), (0x25C0, 0x25C0), (0x25FB, 0x25FC), (0x2640, 0x2640), (0x2642, 0x2642), (0x27A1, 0x27A1),
    (0x2934, 0x2935), (0x2B05, 0x2B07), (0x3030, 0x3030), (0x303D, 0x303D), (0x3297, 0x3297), (0x3299, 0x3299),
)


def _char_class(ranges: Iterable[tuple[int, int]]) -> str:
    return "[" + "".join(f"\\U{a:08X}-\\U{b:08X}" for a, b in ranges) + "]"


_E, _B = _char_class(_EMOJI_RANGES), _char_class(_VS16_ONLY_RANGES)
_EMOJI_ELEMENT = (rf"(?:[#*0-9]\uFE0F?\u20E3|[\U0001F1E6-\U0001F1FF]{{2}}|{_E}|{_B}\uFE0F)"
                  r"[\uFE0E\uFE0F\u20E3\U0001F3FB-\U0001F3FF\U000E0020-\U000E007F]*")
_EMOJI = re.compile(rf"{_EMOJI_ELEMENT}(?:\u200D(?:{_EMOJI_ELEMENT}|{_B}))*"
                    r"|(?<![\w:;])[:;][-']?[)(DPp](?!\w)")   # ASCII emoticons :) :-( ;) :D :P


def _check_emoji(m: _Msg) -> Iterator[Violation]:
    yield from _hits("emoji", _EMOJI, m.body,
                     lambda f: f"remove the emoji or emoticon '{f}'; emojis are not allowed in buyer messages")


_OPT_OUT = _rx(r"\bun-?subscrib\w*", r"\bopt(?:ing|ed)?[- ]?outs?\b", r"\bstop receiving\b",
               r"\bno longer (?:wish|want) to receive\b",
               r"\bavregistrera\w*", r"\bavprenumerera\w*", r"\bavsluta (?:din |er )?prenumeration",
               r"\bvälja? bort (?:\w+ )?(?:meddelanden|utskick|e-post|mejl|mail)",
               r"退订", r"取消订阅", r"\babmelden\b|\babmeldung\b|\babbestellen\b",
               r"\bdésabonner\b|\bdésinscri\w*|\bse désabonner\b", r"\bdarse de baja\b|\bcancelar (?:la )?suscripción\b")


def _check_opt_out(m: _Msg) -> Iterator[Violation]:
    yield from _hits("opt-out", _OPT_OUT, m.body,
                     lambda f: f"remove the opt-out/unsubscribe wording or link '{f}'")


_BREAK = r"(?:\r\n|\r(?!\n)|[\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]|<br\s*/?>)"
_INLINE_SPACE = r"[^\S\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]*"
_BREAK_RUN = re.compile(rf"{_BREAK}(?:{_INLINE_SPACE}{_BREAK}){{2,}}", re.IGNORECASE)


def _check_line_breaks(m: _Msg) -> Iterator[Violation]:
    yield from _hits("line-breaks", _BREAK_RUN, m.body,
                     lambda f: "more than two line breaks in a row; leave at most one empty line between paragraphs")


_MARKETING = _rx(
    r"\bcoupons?\b", r"\bdiscount\w*", r"\bpromo(?:tional)?\s*codes?\b", r"\bpromo(?:s|tions?|tional)?\b",
    r"\bvouchers?\b", r"(?<![\d.,])\d+(?:[.,]\d+)?\s*%\s*off\b",
    r"\bpercent off\b", r"\bspecial offers?\b", r"\blimited[- ]time\b", r"\bnewsletter\b", r"\b(?:shop|buy) now\b",
    r"\bnew arrivals?\b",
    r"\b(?:on|flash|big|summer|winter|holiday|clearance|spring|black friday|cyber monday)\s+sale\b",
    r"\bsale\s+(?:ends|starts|now|price)\b",
    r"\bkupong\w*", r"\brabatt\w*", r"\b(?:sommar|vinter|jul|mellandags|höst|vår|slut)?rean?\b", r"\bkampanj\w*",
    r"\b(?:special|super)erbjudande\w*", r"\bnyhetsbrev\w*", r"\b(?:köp|handla) nu\b",
    r"优惠券|优惠码|优惠活动|折扣|打折|促销|特价|限时优惠|限时折扣|满减|代金券|秒杀|大促|新品上市",
    r"\bgutschein\w*", r"\bsonderangebot\w*", r"\baktionscode\b", r"\bschlussverkauf\b",
    r"\bcode promo\b", r"\bsoldes\b", r"\boffre spéciale\b", r"\bcupón\b|\bcupones\b", r"\bdescuento\w*",
    r"\bcódigo promocional\b", r"\brebajas\b", r"\boferta especial\b")


def _check_marketing(m: _Msg) -> Iterator[Violation]:
    yield from _hits("marketing", _MARKETING, m.body,
                     lambda f: f"remove the marketing wording '{f}'; promotions, coupons and discounts are not allowed")


# --------------------------------------------------------------------------- review requests

_INCENTIVE = _rx(
    r"(?<!feel )(?<![-\w])free\b", r"\brefund\w*", r"\bgift\w*", r"\bdiscount\w*", r"\bcoupons?\b", r"\bvouchers?\b",
    r"\bcompensat\w+", r"\breward\w*", r"\bcash\s*back\b", r"\bmoney\b", r"\bbonus\b", r"\bin (?:exchange|return) for\b",
    r"\bgratis\b", r"\båterbetal\w*", r"\bpengar\b", r"\bpresentkort\w*", r"\brabatt\w*", r"\bkupong\w*",
    r"\bersättning\w*", r"\bbelöning\w*", r"\bi utbyte mot\b", r"\bförmån\w*",
    r"免费|返现|退款|礼品|礼物|红包|折扣|优惠券|奖励|补偿|赠品|现金",
    r"\bkostenlos\w*", r"\bgutschein\w*", r"\bgeschenk\w*", r"\b(?:rück)?erstattung\b", r"\bbelohnung\b",
    r"\bgratuit\w*", r"\bcadeau\w*", r"\bremboursement\b", r"\brécompense\b",
    r"\bregalo\w*", r"\breembolso\w*", r"\brecompensa\b")
_POSITIVE_ONLY = _rx(
    r"\b(?:5|five)[\s-]*stars?\b", r"\b(?:positive|good|great|excellent|glowing|top)\s+(?:reviews?|feedback|ratings?)\b",
    r"\bif you(?:'re| are| were)\s+(?:happy|satisfied|pleased|delighted)\b",
    r"\bif you (?:liked|loved|enjoyed|like|love|enjoy)\b",
    r"\b(?:5|fem)\s*stjärn\w*", r"\b(?:positiv|bra|fin|toppen)\w*\s+(?:recension\w*|omdöme\w*|betyg\w*|feedback)",
    r"\bom du (?:är|var|blev) (?:nöjd|glad)\w*", r"\bom du (?:gillade|gillar|tyckte om)\b",
    r"[5五]\s*星", r"好评", r"(?<!不)满意的话", r"如果[您你]?[^。！？\n，,不]{0,12}满意",
    r"\b(?:5|fünf)\s*sterne\w*", r"\bpositive\w*\s+bewertung\w*", r"\bwenn sie (?:(?!nicht\b)\w+\s+)?zufrieden\b",
    r"\b(?:5|cinq)\s*étoiles\b", r"\bavis\s+positifs?\b", r"\bsi vous êtes (?:satisfait|content)\w*",
    r"\b(?:5|cinco)\s*estrellas\b", r"\b(?:reseña|opinión|valoración)\s+positiva\b",
    r"\bsi (?:está|estás|quedó) satisfech\w*")
_R_GAP = r"(?:[^\w.!?\n]+\w+){0,3}?[^\w.!?\n]+"
_REMOVAL = _rx(
    rf"\b(?:remove|delete|change|update|edit|revise|amend|modify|withdraw|take\s+down|reconsider){_R_GAP}"
    r"(?:reviews?|feedback|ratings?)\b",
    rf"\b(?:reviews?|feedback|ratings?){_R_GAP}(?:removed|deleted|changed|updated|taken down|withdrawn)\b",
    rf"\b(?:ta\s+bort|radera|ändra|uppdatera|redigera|justera|höja){_R_GAP}(?:recension|omdöme|feedback|betyg)\w*",
    r"(?:删除|删掉|修改|更改|撤销|撤回|移除|改成|改为)[^。！？\n]{0,6}?(?:评价|评论|差评|反馈|评分)",
    rf"\bbewertung\w*{_R_GAP}(?:löschen|ändern|entfernen|zurückziehen|anpassen)\b",
    rf"\b(?:löschen|ändern|entfernen)\s+sie{_R_GAP}bewertung\w*",
    rf"\b(?:supprimer|modifier|retirer|changer){_R_GAP}(?:avis|évaluation|commentaire)s?\b",
    rf"\b(?:eliminar|borrar|cambiar|modificar|retirar){_R_GAP}(?:reseña|opinión|valoración|comentario)s?\b")


def _check_review_incentive(m: _Msg) -> Iterator[Violation]:
    if m.purpose == "review-request":
        yield from _hits("review-incentive", _INCENTIVE, m.body,
                         lambda f: f"remove '{f}': a review request must not offer anything (money, refunds, "
                         "gifts, free or discounted products) for a review")


def _check_review_removal(m: _Msg) -> Iterator[Violation]:
    yield from _hits("review-removal", _REMOVAL, m.body,
                     lambda f: f"remove '{f}': asking a buyer to remove or change a review is not allowed")


def _check_review_positive_only(m: _Msg) -> Iterator[Violation]:
    if m.purpose == "review-request":
        yield from _hits("review-positive-only", _POSITIVE_ONLY, m.body,
                         lambda f: f"remove '{f}': ask for an honest review, not only a positive one")


def _check_review_repeat(m: _Msg) -> Iterator[Violation]:
    if m.purpose == "review-request" and m.review_already_requested:
        yield Violation("review-repeat", "a review was already requested for this order; "
                        "only one review/feedback request per order is allowed")


# --------------------------------------------------------------------------- thanks only

_GREETING = _rx(r"\W*(?:hi|hello|hey|dear|good (?:morning|afternoon|evening)|hej(?:san)?|hallå|god (?:morgon|dag|kväll)"
                r"|hallo|guten tag|liebe[rs]?|bonjour|hola|estimad[oa]|您好|你好|亲爱的|尊敬的)(?:\W+\w+){0,3}\W*")
_SIGNOFF = _rx(r"\W*(?:(?:best|kind|warm|many)?\s*regards|best wishes|sincerely|yours(?: sincerely| truly)?|cheers"
               r"|med vänlig(?:a)? hälsning(?:ar)?|vänliga hälsningar|bästa hälsningar|hälsningar|mvh|此致敬礼|此致|祝好"
               r"|mit freundlichen grüßen|viele grüße|beste grüße|cordialement|bien à vous|saludos(?: cordiales)?"
               r"|atentamente)(?:\W+\w+){0,4}\W*")
_THANKS = (r"(?:thank(?:s|\s+you)(?:\s+(?:so|very)\s+much)?(?:\s+again)?|many thanks|(?:stort\s+)?tack(?:\s+så\s+mycket)?"
           r"(?:\s+igen)?|非常感谢|谢谢|感谢|多谢|danke(?:\s+schön|\s+sehr)?|vielen dank|merci(?:\s+beaucoup)?"
           r"|(?:muchas\s+)?gracias)")
_THANKS_SEGMENT = _rx(rf"\W*(?:(?:hi|hello|hey|dear|hej|hallo|bonjour|hola)\W+(?:\w+\W+){{0,2}}?)?{_THANKS}"
                      r"(?:\s*[\u3400-\u9fff，、]{1,15}|\W+(?:for|för|für|pour|por)\W+(?:\w+\W*){0,6})?\W*")
_HELP = _rx(r"\bif you have any (?:\w+ )?(?:questions|problems|issues|concerns)\b", r"\b(?:don't|do not) hesitate\b",
            r"\bfeel free to\b", r"\b(?:we are|we're|happy|glad) (?:here |happy |glad )?to help\b",
            r"\bom du har (?:några|fler|ytterligare) (?:frågor|problem)\b", r"\btveka inte\b", r"\bvi hjälper (?:dig )?gärna\b",
            r"如有任何(?:问题|疑问)|如果您有任何(?:问题|疑问)|随时(?:与我们)?联系", r"\bbei fragen\b", r"\bzögern sie nicht\b",
            r"\bn'hésitez pas\b", r"\bno dude en\b")
_ORDER_WORD = _rx(r"\W*(?:order(?:\s*(?:id|nr|number|nummer))?|ordernummer|beställning(?:snummer)?|订单号?"
                  r"|bestellnummer|bestellung|commande|pedido)\W*")
_SEGMENTS = re.compile(r"[\n\r.!?。！？;；]+")


def _check_thanks_only(m: _Msg) -> Iterator[Violation]:
    if m.purpose == "thank-you" or m.attachments:
        return
    text = _ANY_ORDER_ID.sub(" ", re.sub(r"<[^>]*>", " ", m.body))
    kinds, signed = [], False
    for seg in (s.strip() for s in _SEGMENTS.split(text)):
        if not re.search(r"\w", seg):
            continue
        words = len(re.findall(r"\w+", seg))
        if _THANKS_SEGMENT.fullmatch(seg):
            kinds.append("thanks")
        elif _HELP.search(seg) and words <= 16 and not re.search(r"\d", seg):
            kinds.append("help")
        elif _SIGNOFF.fullmatch(seg):
            kinds.append("signoff")
            signed = True
        elif _GREETING.fullmatch(seg) or _ORDER_WORD.fullmatch(seg) or (signed and words <= 4):
            kinds.append("neutral")
        else:
            return                  # the message says something else
    if "thanks" in kinds or "help" in kinds:
        yield Violation("thanks-only", "the message only says thank you or offers help, which is not a permitted "
                        "message; add the information the buyer needs, or do not send it")


# --------------------------------------------------------------------------- table and entry point

_CHECKS: tuple[tuple[str, str, Callable[[_Msg], Iterable[Violation]]], ...] = (
    ("purpose-forbidden", "purpose is an order/shipping confirmation, thank-you or marketing message",
     _check_purpose_forbidden),
    ("purpose-unknown", "purpose is not one of the permitted purpose codes", _check_purpose_unknown),
    ("window-closed", f"sent more than {WINDOW_DAYS} days after the order was completed", _check_window_closed),
    ("order-id-missing", "the body does not contain the order's 17-digit order id", _check_order_id_missing),
    ("language-mismatch", "message language is not the buyer's preferred language", _check_language_mismatch),
    ("email-address", "the body contains an e-mail address", _check_email_address),
    ("phone-number", "a phone number without a stated warranty, carrier or manufacturer reason", _check_phone_number),
    ("insecure-link", "an http:// (not https) link", _check_insecure_link),
    ("insecure-image", "an image loaded over http:// (not https)", _check_insecure_image),
    ("tracking-pixel", "a tracking pixel: 1x1 or hidden image, or a pixel/beacon URL", _check_tracking_pixel),
    ("animated-gif", "a GIF image in the body or a .gif attachment", _check_animated_gif),
    ("logo-link", "an image (logo) wrapped in a link to a website", _check_logo_link),
    ("attachment-kind", "an attachment that is not a label, invoice or custom design", _check_attachment_kind),
    ("product-image", "an image of the purchased product attached", _check_product_image),
    ("emoji", "an emoji or emoticon", _check_emoji),
    ("opt-out", "an opt-out / unsubscribe link or wording", _check_opt_out),
    ("line-breaks", "more than two line breaks in a row", _check_line_breaks),
    ("marketing", "marketing or promotion: coupons, discounts, sales, promo codes", _check_marketing),
    ("review-incentive", "a review request offering money, refunds, gifts, free or discounted products",
     _check_review_incentive),
    ("review-removal", "asking the buyer to remove or change a review", _check_review_removal),
    ("review-positive-only", "a review request asking only for positive reviews (5 stars, if you are happy)",
     _check_review_positive_only),
    ("review-repeat", "a second review request for the same order", _check_review_repeat),
    ("thanks-only", "a message that only says thank you or offers help", _check_thanks_only),
)

RULES: dict[str, str] = {rule: description for rule, description, _ in _CHECKS}


def _attachment(a: object) -> tuple[str, str]:
    if isinstance(a, dict):
        name, kind = a.get("name"), a.get("kind")
    else:
        name, kind = getattr(a, "name", None), getattr(a, "kind", None)
    return ("" if name is None else str(name), "" if kind is None else str(kind).strip().lower())


def check_message(*, order_id: str, purpose: str, language: str, body: str,
                  attachments: Iterable[object] = (),
                  phone_reason: str | None = None,
                  buyer_language: str,
                  completed_at: datetime | None,
                  now: datetime,
                  review_already_requested: bool = False) -> list[Violation]:
    """Return ALL violations at once (empty list = message may be sent). Never raises on any str input.

    ``completed_at`` is the last ship confirmation or the cancellation (None = not completed yet,
    so the 30-day window has not started).
    """
    body = "" if body is None else str(body)
    msg = _Msg(order_id=str(order_id or ""), purpose=str(purpose or ""), language=str(language or ""), body=body,
               attachments=tuple(_attachment(a) for a in (attachments or ())),
               phone_reason=None if phone_reason is None else str(phone_reason),
               buyer_language=str(buyer_language or ""), completed_at=completed_at, now=now,
               review_already_requested=bool(review_already_requested), images=_images(body))
    return [v for _, _, check in _CHECKS for v in check(msg)]


# --- checking drafts (``message check``, ``send-message --check-only``) ----------------

#: the fields of a message draft; a send-message command line is accepted as it is
DRAFT_FIELDS = frozenset({
    "order_id", "purpose", "language", "body", "attachments", "phone_reason",
    "buyer_language", "completed_at", "now", "review_already_requested",
    "type", "at", "command_id", "actor"})


def _draft_time(value: object, what: str, n: int) -> datetime | None:
    from .errors import MessageDraftError

    if value in (None, ""):
        return None
    try:
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise MessageDraftError(f"message {n}: {what} {value!r} is not an ISO-8601 time") from None
    if t.tzinfo is None:
        raise MessageDraftError(f"message {n}: {what} {value!r} has no UTC offset")
    return t


def check_draft(msg: object, n: int, *, now: datetime,
                ledger: Ledger | None = None) -> dict[str, Any]:
    """Check message draft ``n`` against the rules without sending it.

    The buyer language, completion time and review state come from the order in
    ``ledger`` when it holds it, else from the draft's own fields. The time
    checked against is the draft's ``now`` (or ``at``), else ``now``. Returns
    ``{line, order_id, allowed, violations, notes}``; a malformed draft raises
    :class:`~ledger.errors.MessageDraftError`.
    """
    from .errors import MessageDraftError

    if not isinstance(msg, dict):
        raise MessageDraftError(f"message {n} is not a JSON object")
    unknown = sorted(set(msg) - DRAFT_FIELDS)
    if unknown:
        raise MessageDraftError(
            f"message {n}: unknown field(s) {', '.join(unknown)}; known: "
            + ", ".join(sorted(DRAFT_FIELDS - {"type", "command_id", "actor"})))
    for key in ("order_id", "purpose", "language", "body"):
        if not isinstance(msg.get(key), str):
            raise MessageDraftError(f"message {n}: {key} is missing (a string is needed)")
    notes: list[str] = []
    buyer_language = msg.get("buyer_language")
    completed_at = _draft_time(msg.get("completed_at"), "completed_at", n)
    review = bool(msg.get("review_already_requested", False))
    when = (_draft_time(msg.get("now"), "now", n) or _draft_time(msg.get("at"), "at", n)
            or now)
    if ledger is not None:
        order = ledger.order(msg["order_id"])
        if order is None or order.placed is None:
            notes.append(f"order {msg['order_id']} is not in the ledger: using the file's values")
        else:
            buyer_language = order.placed.buyer.language
            completed_at = order.completed_at
            review = order.review_requested
            notes.append("buyer language, completion and review state taken from the ledger")
            if order.status == "Pending":
                notes.append("the order is Pending: the ledger refuses to send messages until "
                             "payment is verified")
    if not buyer_language:
        buyer_language = msg["language"]
        notes.append("buyer_language not given: the language rule was not checked")
    attachments = msg.get("attachments") or []
    if not isinstance(attachments, list):
        raise MessageDraftError(f"message {n}: attachments must be a list of {{name, kind}}")
    violations = check_message(
        order_id=msg["order_id"], purpose=msg["purpose"], language=msg["language"],
        body=msg["body"], attachments=attachments, phone_reason=msg.get("phone_reason"),
        buyer_language=str(buyer_language), completed_at=completed_at, now=when,
        review_already_requested=review)
    return {"line": n, "order_id": msg["order_id"], "allowed": not violations,
            "violations": [v.as_dict() for v in violations], "notes": notes}
