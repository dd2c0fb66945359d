"""Sequence lengths: parsing ``1k,32k,200k`` and the short labels tables and plots print."""

from __future__ import annotations

import math
import re

from sqabench.errors import ConfigError

_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([km]?)$")  # ASCII digits only (not "３２k")
POWER_OF_TWO_SLACK = 0.03
# The most tokens one step may hold (a length, or length x batch): no device holds more. At 2^31 tokens the
# paper preset's embeddings alone are 1 TiB in bf16 (2^31 x 256 x 2 bytes), 7x an H200's memory.
MAX_TOKENS = 2**31
MAX_TOKENS_WHY = "the paper preset's embeddings alone would be 1 TiB in bf16: no device holds that"


def parse_length(text: str, option: str = "--seq") -> int:
    """One sequence length: an integer, or a size ``Nk`` / ``Nm`` (case-insensitive).

    ``Nk`` means N x 1,000 (``Nm`` N x 1,000,000), replaced by the nearest power of two when that
    is within 3%: 1k=1024, 4k=4096, 32k=32768, 128k=131k=131072, but 200k=200000 and 1m=1000000.
    """
    match = _SIZE.match(text.strip().lower())
    if match is None:
        raise ConfigError(f"{option}: {text.strip()!r} is not a length; use integers or sizes like 1k, 32k, 131k, 200k")
    number, unit = match.groups()
    if not unit:
        if "." in number:
            raise ConfigError(f"{option}: {text.strip()!r} is not a whole number of tokens")
        value = int(number)
    else:
        exact = float(number) * (1_000 if unit == "k" else 1_000_000)
        power = 2 ** round(math.log2(exact)) if exact >= 1 else 1
        value = power if abs(power - exact) <= POWER_OF_TWO_SLACK * exact else round(exact)
    if value < 1:
        raise ConfigError(f"{option}: {text.strip()!r} must be at least 1 token")
    if value > MAX_TOKENS:
        raise ConfigError(f"{option}: {text.strip()!r} is more than {MAX_TOKENS:,} tokens ({MAX_TOKENS_WHY})")
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
