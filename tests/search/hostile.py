"""Hostile query strings, made by a seeded generator: every class of text that has broken, or
could break, a query path (the tokenizer, the CLI's output, the service's JSON).

Classes: lone surrogates, surrogate pairs, the surrogateescape characters Python gives to
Latin-1 bytes in ``sys.argv`` (``'\\udce9'``), zero-width and every other format (Cf) character,
C0/C1 controls and NUL, Unicode whitespace, emoji (ZWJ sequences, flags, tags, skin tones),
right-to-left scripts and bidi overrides, combining marks, CJK, noncharacters, private use, any
code point at all, and very long strings. ``hostile_strings(n, seed)`` always starts with
:data:`EDGE_CASES`.
"""

from __future__ import annotations

import functools
import random
import sys
import unicodedata
from collections.abc import Iterator

WORDS = ["red", "car", "the", "lecturer", "writes", "a", "circle", "on", "board", "café", "12", "!", "?", "-", "'",
         '"', "%", "&", "=", "+", "#", "/", "\\", "<script>", "{}", "null", "..", "*"]
ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
CONTROLS = "".join(map(chr, [*range(32), *range(127, 160)]))
WHITESPACE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2001\u2005\u200a\u2028\u2029\u202f\u205f\u3000"
EMOJI = ["\U0001f600", "\U0001f468\u200d\U0001f469\u200d\U0001f467", "\U0001f1eb\U0001f1f7", "\U0001f44d\U0001f3fd",
         "\u2764\ufe0f", "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f", "\U0001f9d1\u200d\U0001f52c"]
RTL = ["\u0645\u0631\u062d\u0628\u0627", "\u05e9\u05dc\u05d5\u05dd", "\u202e", "\u202b", "\u200f", "\u061c",
       "\u0627\u0644\u0633\u064a\u0627\u0631\u0629 \u0627\u0644\u062d\u0645\u0631\u0627\u0621"]
COMBINING = ["\u0301", "\u0338", "e\u0301", "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f", "\u20dd"]
OTHER = ["\u6771\u4eac", "\ud55c\uad6d\uc5b4", "\ufffe", "\uffff", "\U0010ffff", "\ue000", "\U000f0000", "\ufffd",
         "\u0000", "\U0001d400", "\ufdd0", "\u00ad"]

#: one of each class, and the strings of the bug reports
EDGE_CASES = [
    "\ud800", "\udfff", "caf\udce9 au lait", "\udce9", "a\ud83d", "\ude00b", "\ud83d\ude00 grin", "\ud800\ud800",
    "\u200b", ZERO_WIDTH, ZERO_WIDTH + " \t\n" + ZERO_WIDTH, "\u00ad\u202e\u2066", "\x00", "\x00red\x00", "\x1b[31mred",
    "\x7f\x85\x9f", "", " ", "\u3000\u2028", "\U000e0001\U000e0020", *EMOJI, *RTL, "x" * 1000, "x" * 1001,
    "x " * 600, "\u200b" * 5000 + "red", "red" + "\u0301" * 3000, "\U0001f600" * 999, "a" * 100_000,
]


@functools.lru_cache(maxsize=1)
def format_chars() -> str:
    """Every format (Cf) character of this Python's Unicode database."""
    return "".join(chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf")


def _piece(rng: random.Random) -> str:
    kind = rng.randrange(14)
    if kind == 0:
        return chr(rng.randrange(0xD800, 0xE000))  # a lone surrogate
    if kind == 1:
        return chr(0xDC80 + rng.randrange(128))  # a Latin-1 byte, surrogate-escaped
    if kind == 2:
        return rng.choice(ZERO_WIDTH) * rng.randint(1, 4)
    if kind == 3:
        return rng.choice(format_chars())
    if kind == 4:
        return rng.choice(CONTROLS)
    if kind == 5:
        return rng.choice(WHITESPACE) * rng.randint(1, 3)
    if kind == 6:
        return rng.choice(EMOJI)
    if kind == 7:
        return rng.choice(RTL)
    if kind == 8:
        return rng.choice(COMBINING)
    if kind == 9:
        return rng.choice(OTHER)
    if kind == 10:
        return chr(rng.randrange(sys.maxunicode + 1))  # anything, unassigned included
    if kind == 11:
        hi, lo = rng.randrange(0xD800, 0xDC00), rng.randrange(0xDC00, 0xE000)
        return chr(hi) + chr(lo)  # a pair, as UTF-16 leaves it
    return rng.choice(WORDS) + " "


def hostile_strings(n: int, seed: int = 0) -> Iterator[str]:
    """:data:`EDGE_CASES`, then random mixes of the classes, ``n`` strings in all."""
    rng = random.Random(seed)
    yield from EDGE_CASES[:n]
    for _ in range(n - len(EDGE_CASES)):
        s = "".join(_piece(rng) for _ in range(rng.randint(0, 12)))
        if rng.random() < 0.05:  # very long: repeated past any limit
            s *= rng.randint(50, 3000)
        yield s
