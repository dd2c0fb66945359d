"""Sizes and durations as a user types them, and as tables print them: one rule for every option.

A size is a whole number (``4096``) or a number with a suffix, ``k``, ``m`` or ``g`` (any case): N x 10^3,
10^6 or 10^9, replaced by the nearest power of two when that is within 3%. So 1k = 1024, 4k = 4096, 32k =
32768, 128k = 131k = 131072 (the lengths people mean), while 200k = 200000, 500k = 500000 and 2M = 2000000
(no power of two is that near). Lengths (``--seq``) and counts (``--tokens``, ``--eval-tokens``) both read
sizes this way. A duration is seconds, or a number with ``s``, ``m``/``min`` or ``h``.
"""

from __future__ import annotations

import math
import re

from sqabench.errors import ConfigError

_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([kmg]?)$")  # ASCII digits only (not "３２k")
_SCALE = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}
POWER_OF_TWO_SLACK = 0.03
# The most tokens one step may hold (a length, or length x batch): no device holds more. At 2^31 tokens the
# paper preset's embeddings alone are 1 TiB in bf16 (2^31 x 256 x 2 bytes), 7x an H200's memory.
MAX_TOKENS = 2**31
MAX_TOKENS_WHY = "the paper preset's embeddings alone would be 1 TiB in bf16: no device holds that"


def parse_size(text: str, option: str, what: str = "size", examples: str = "4096, 1k, 32k, 2M") -> int:
    """A whole number, or ``N[k|m|g]`` (the module's rule); at least 1. One-line ``ConfigError`` otherwise."""
    shown = str(text).strip()
    match = _SIZE.match(shown.lower())
    if match is None:
        raise ConfigError(f"{option}: {shown!r} is not a {what}; use whole numbers or sizes like {examples}")
    number, unit = match.groups()
    if not unit:
        if "." in number:
            raise ConfigError(f"{option}: {shown!r} is not a whole number; use e.g. {examples}")
        value = int(number)
    else:
        exact = float(number) * _SCALE[unit]
        power = 2 ** round(math.log2(exact)) if exact >= 1 else 1
        value = power if abs(power - exact) <= POWER_OF_TWO_SLACK * exact else round(exact)
    if value < 1:
        raise ConfigError(f"{option}: {shown!r} must be at least 1")
    return value


def parse_length(text: str, option: str = "--seq") -> int:
    """One sequence length: a size (1k = 1024, 131k = 131072, 200k = 200000), at most ``MAX_TOKENS``."""
    value = parse_size(text, option, "length", "1k, 32k, 131k, 200k")
    if value > MAX_TOKENS:
        raise ConfigError(f"{option}: {str(text).strip()!r} is more than {MAX_TOKENS:,} tokens ({MAX_TOKENS_WHY})")
    return value


def parse_lengths(text: str, option: str = "--seq") -> list[int]:
    """Comma-separated lengths, in the order given, repeats dropped."""
    items = text.split(",")
    if any(not item.strip() for item in items):
        raise ConfigError(f"{option}: empty item in {text!r}; give comma-separated lengths such as 1k,32k,200k")
    return list(dict.fromkeys(parse_length(item, option) for item in items))


def format_len(n: int) -> str:
    """Short length label that ``parse_length`` reads back: 1k, 32k, 128k, 1024k, 200k, 1m, else the number."""
    candidates = []
    if n % 1024 == 0:
        candidates.append(f"{n // 1024}k")  # 1048576 is 1024k
    if n % 1_000_000 == 0:
        candidates.append(f"{n // 1_000_000}m")
    if n % 1000 == 0:
        candidates.append(f"{n // 1000}k")
    return next((label for label in candidates if parse_length(label) == n), str(n))


_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*(s|sec|m|min|h)?$")


def parse_duration(text: str, option: str) -> float:
    """Seconds from ``90``, ``90s``, ``10m``, ``10min``, ``1.5h``."""
    match = _DURATION.match(text.strip().lower())
    if match is None:
        raise ConfigError(f"{option} {text!r} is not a duration; use seconds or e.g. 90s, 10m, 1.5h")
    if float(match.group(1)) <= 0:
        raise ConfigError(f"{option} {text.strip()} must be more than no time; e.g. 90s, 10m, 1.5h")
    return float(match.group(1)) * {"h": 3600, "m": 60, "min": 60}.get(match.group(2) or "s", 1)


def format_duration(seconds: float) -> str:
    """A wall time as a person reads it: under a second, 12 s, 10 min, 2.0 h, 3.5 days, 12 years."""
    if seconds < 1:
        return "under a second"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 600:
        return f"{round(seconds / 60, 1):g} min"  # 90 s is 1.5 min, never "2 min"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    if seconds < 2 * 365.25 * 86_400:
        return f"{seconds / 86_400:.1f} days"
    years = seconds / (365.25 * 86_400)
    return f"{years:,.0f} years" if years >= 10 else f"{years:.1f} years"


def format_seconds(seconds: float) -> str:
    """A predicted part of a run: seconds to 3 digits below 1000 s, then minutes, hours, days."""
    if seconds < 1000:
        return f"{seconds:.3g} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} d"


def format_ms(ms: float) -> str:
    """A time in milliseconds to 3 digits, whole from 100 ms, in seconds from 10 s: 7.48 ms, 111 ms, 12.34 s."""
    return f"{ms / 1e3:.2f} s" if ms >= 1e4 else f"{ms:.3g} ms" if ms < 100 else f"{ms:.0f} ms"


def plural(count: int, word: str) -> str:
    """``1 seed``, ``3 seeds``: a count with its noun."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def parse_fraction(text: str, option: str) -> float:
    """A limit as people type it: ``10%`` or ``0.10`` (the same). A bare number above 1 is refused, since ``10``
    meant as 10% would read as 1000%; so are negatives, NaN and more than 100%."""
    shown = str(text).strip()
    percent = shown.endswith("%")
    try:
        value = float(shown.removesuffix("%").strip())
    except ValueError:
        raise ConfigError(f"{option}: {shown!r} is not a limit; give a percentage or a fraction, e.g. 10% or 0.10")
    if not math.isfinite(value):
        raise ConfigError(f"{option}: {shown!r} is not a limit; give a percentage or a fraction, e.g. 10% or 0.10")
    if percent:
        value /= 100
    elif value > 1:
        raise ConfigError(f"{option} {shown}: a bare number is a fraction (0.10 = 10%); did you mean {shown}%?")
    if not 0 <= value <= 1:
        raise ConfigError(f"{option} {shown} must be in [0%, 100%]")
    return value


def format_percent(value: float) -> str:
    """A limit as it is typed: 10%, 2.5%, 0.1%."""
    return f"{value * 100:.4g}%"
