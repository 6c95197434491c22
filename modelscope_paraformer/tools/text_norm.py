"""Minimal Mandarin text normalisation: Arabic numerals -> Chinese characters.

Conventions (chosen for a consistent ASR target vocabulary):

* ``int_to_chinese`` uses 二 everywhere by default (``2024 -> 二千零二十四``).
  ``use_liang=True`` gives the colloquial 两 only for a *leading* 2 that is
  followed by a unit (两百, 两千, 两万, 两亿) and for the bare number 2, which
  is what a speaker uses before a measure word (两块, 两点, 两个).  Inner
  digits keep 二 (两千二百), as in everyday speech.
* A number of 10..19 (also as the leading group, e.g. 150000) drops the 一
  before 十: ``15 -> 十五``, ``150000 -> 十五万``; inside a number the 一 is
  kept: ``110 -> 一百一十``.
* Digit-by-digit strings (phone numbers, years) read 1 as 一, not the
  telephone-style 幺, so the character vocabulary stays small.
"""

from __future__ import annotations

import re

DIGITS = "零一二三四五六七八九"
_SMALL_UNITS = ((1000, "千"), (100, "百"), (10, "十"), (1, ""))
_BIG_UNITS = ("", "万", "亿", "万亿")  # 10^0, 10^4, 10^8, 10^12


def digits_to_chinese(digits: str) -> str:
    """Read a string of ASCII digits one by one: ``"13800" -> 一三八零零``."""
    if not digits.isdigit() or not digits.isascii():
        raise ValueError(f"not a digit string: {digits!r}")
    return "".join(DIGITS[int(d)] for d in digits)


def _under_10k(n: int) -> str:
    """Read 1..9999 with full 一十 and inner 零 (``1010 -> 一千零一十``)."""
    out, pending_zero = "", False
    for value, unit in _SMALL_UNITS:
        d = n // value % 10
        if d == 0:
            # Only emit 零 if a non-zero digit follows; trailing zeros are silent.
            pending_zero = pending_zero or bool(out)
            continue
        if pending_zero:
            out += "零"
            pending_zero = False
        out += DIGITS[d] + unit
    return out


def int_to_chinese(n: int, use_liang: bool = False) -> str:
    """Read an integer as a Chinese cardinal number (|n| < 10^16).

    >>> int_to_chinese(105), int_to_chinese(100000), int_to_chinese(2024)
    ('一百零五', '十万', '二千零二十四')
    """
    if n < 0:
        return "负" + int_to_chinese(-n, use_liang)
    if n == 0:
        return "零"
    if n >= 10 ** (4 * len(_BIG_UNITS)):
        raise ValueError(f"number too large: {n}")
    groups = []  # 4-digit groups, most significant first
    while n:
        groups.insert(0, n % 10000)
        n //= 10000
    out, pending_zero = "", False
    for i, g in enumerate(groups):
        unit = _BIG_UNITS[len(groups) - 1 - i]
        if g == 0:
            pending_zero = pending_zero or bool(out)
            continue
        # A lower group with a leading zero (g < 1000), or after an all-zero
        # group, needs one 零: 10010 -> 一万零一十, 100001000 -> 一亿零一千.
        if out and (pending_zero or g < 1000):
            out += "零"
        pending_zero = False
        out += _under_10k(g) + unit
    if out.startswith("一十"):
        out = out[1:]
    if use_liang and out.startswith("二") and (len(out) == 1 or out[1] in "百千万亿"):
        out = "两" + out[1:]
    return out


def decimal_to_chinese(text: str) -> str:
    """Read a decimal string: integer part as a cardinal, fraction digit by digit.

    ``"3.05" -> 三点零五``, ``"0.5" -> 零点五``.
    """
    int_part, _, frac = text.partition(".")
    out = int_to_chinese(int(int_part or "0"))
    return out + "点" + digits_to_chinese(frac) if frac else out


# One regex for all numeric tokens; order of alternatives matters (time first).
_NUM_RE = re.compile(
    r"(?P<hh>\d{1,2})[:：](?P<mm>\d{2})"           # 8:30 -> 八点三十分
    r"|(?P<num>\d+(?:\.\d+)?)(?P<pct>[%％])?"      # 12.5% / 3.05 / 2024
)


def _replace(m: re.Match[str], following: str) -> str:
    if m.group("hh") is not None:
        hour, minute = int(m.group("hh")), int(m.group("mm"))
        hour_txt = int_to_chinese(hour, use_liang=True) + "点"  # 两点, not 二点
        if minute == 0:
            return hour_txt
        return hour_txt + ("零" if minute < 10 else "") + int_to_chinese(minute) + "分"
    num = m.group("num")
    if m.group("pct"):
        return "百分之" + decimal_to_chinese(num)
    if "." in num:
        return decimal_to_chinese(num)
    # Strings with a leading zero (codes, 007) and years (2024年) are read
    # digit by digit; everything else as a cardinal number.
    if (len(num) > 1 and num[0] == "0") or following == "年":
        return digits_to_chinese(num)
    return int_to_chinese(int(num))


def normalize_text(text: str) -> str:
    """Convert Arabic numbers, decimals, percentages and hh:mm times to characters.

    >>> normalize_text("增长了12.5%，价格3.05元，2024年，8:05")
    '增长了百分之十二点五，价格三点零五元，二零二四年，八点零五分'
    """
    return _NUM_RE.sub(lambda m: _replace(m, text[m.end():m.end() + 1]), text)
