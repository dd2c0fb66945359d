"""The SQA family: one registry, the only source of truth for head counts.

A variant is data: a frozen spec of the baseline's head count H, the query heads Hq, the
key/value heads Hkv and an optional sliding window. The registry lists the paper's family at
H = 16 (Filipek 2025, arXiv 2510.01817, Table 1); a preset with another H scales the counts.
A user can also name a variant by its heads: ``Hq/Hkv`` or, windowed, ``Hq/Hkv@W``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from sqabench.errors import ConfigError

DEFAULT_WINDOW = 128  # the paper's SWA(128)
REGISTRY_HEADS = 16  # the H at which FAMILY is written


@dataclass(frozen=True)
class VariantSpec:
    """Heads of one attention variant. Windowed: encoder query i sees key j iff |i-j| <= window."""

    name: str
    n_heads: int  # H of the MHA baseline
    n_q_heads: int  # Hq
    n_kv_heads: int  # Hkv
    window: int | None = None

    def __post_init__(self) -> None:
        h = self.n_heads
        if h < 1:
            raise ConfigError(f"{self.name}: n_heads={h} must be >= 1")
        for field in ("n_q_heads", "n_kv_heads"):
            value = getattr(self, field)
            if not 1 <= value <= h:
                raise ConfigError(f"{self.name}: {field}={value} must be between 1 and n_heads={h}")
        if self.n_q_heads % self.n_kv_heads:
            raise ConfigError(
                f"{self.name}: n_q_heads={self.n_q_heads} is not a multiple of n_kv_heads={self.n_kv_heads}"
            )
        if self.window is not None and self.window < 1:
            raise ConfigError(f"{self.name}: window={self.window} must be >= 1")

    @property
    def kv_groups(self) -> int:
        """Query heads sharing each key/value head."""
        return self.n_q_heads // self.n_kv_heads

    @property
    def attn_flops_vs_mha(self) -> float:
        """Score and value FLOPs relative to MHA at the same mask: Hq / H (paper eq. 9)."""
        return self.n_q_heads / self.n_heads

    @property
    def theoretical_speedup(self) -> float:
        """The attention speed-up over MHA that the FLOPs promise: H / Hq."""
        return self.n_heads / self.n_q_heads

    @property
    def heads(self) -> str:
        """The spec in the command-line syntax, e.g. ``8/4`` or ``4/4@128``."""
        suffix = f"@{self.window}" if self.window is not None else ""
        return f"{self.n_q_heads}/{self.n_kv_heads}{suffix}"


@dataclass(frozen=True)
class FamilyMember:
    q_heads: int  # at H = REGISTRY_HEADS
    kv_heads: int
    windowed: bool
    description: str


FAMILY: dict[str, FamilyMember] = {
    "mha": FamilyMember(16, 16, False, "multi-head baseline"),
    "gqa": FamilyMember(16, 4, False, "grouped-query"),
    "mqa": FamilyMember(16, 1, False, "multi-query"),
    "sqa": FamilyMember(8, 4, False, "standard SQA"),
    "ssqa": FamilyMember(8, 8, False, "symmetric SQA"),
    "xsqa": FamilyMember(4, 4, False, "extreme SQA"),
    "xsmqa": FamilyMember(4, 1, False, "extreme SQA, one KV head"),
    "lsqa": FamilyMember(12, 4, False, "light SQA, 75% of query heads"),
    "swa": FamilyMember(16, 4, True, "sliding-window baseline (GQA heads)"),
    "swa-ssqa": FamilyMember(8, 8, True, "sliding window x symmetric SQA"),
    "swa-xsqa": FamilyMember(4, 4, True, "sliding window x extreme SQA"),
}

_CUSTOM = re.compile(r"^(\d+)/(\d+)(?:@(\d+))?$")
SYNTAX_HELP = f"a registry name ({', '.join(FAMILY)}), 'all', or heads as Hq/Hkv or Hq/Hkv@WINDOW"


def _scaled(count: int, n_heads: int, name: str) -> int:
    value = Fraction(count * n_heads, REGISTRY_HEADS)
    if value.denominator != 1:
        raise ConfigError(
            f"{name}: {count}/{REGISTRY_HEADS} of n_heads={n_heads} is not a whole number of heads"
        )
    return int(value)


def get_variant(name: str, n_heads: int = REGISTRY_HEADS, window: int = DEFAULT_WINDOW) -> VariantSpec:
    """The registry's variant ``name`` for a model with ``n_heads`` heads; ``window`` for windowed ones."""
    try:
        member = FAMILY[name]
    except KeyError:
        raise ConfigError(f"unknown variant {name!r}; expected {SYNTAX_HELP}") from None
    return VariantSpec(
        name=name,
        n_heads=n_heads,
        n_q_heads=_scaled(member.q_heads, n_heads, name),
        n_kv_heads=_scaled(member.kv_heads, n_heads, name),
        window=window if member.windowed else None,
    )


def parse_variant(text: str, n_heads: int = REGISTRY_HEADS, window: int = DEFAULT_WINDOW) -> VariantSpec:
    """A registry name, or custom heads ``Hq/Hkv`` / ``Hq/Hkv@W`` (absolute counts, explicit window)."""
    text = text.strip()
    match = _CUSTOM.match(text)
    if match is None:
        return get_variant(text.lower(), n_heads, window)
    q, kv, w = match.groups()
    return VariantSpec(
        name=text, n_heads=n_heads, n_q_heads=int(q), n_kv_heads=int(kv), window=None if w is None else int(w)
    )


def parse_variants(text: str, n_heads: int = REGISTRY_HEADS, window: int = DEFAULT_WINDOW) -> list[VariantSpec]:
    """A comma-separated list of variants, or ``all`` for the whole registry, in registry order."""
    items = [item.strip() for item in text.split(",")]
    if any(not item for item in items):
        raise ConfigError(f"empty item in variant list {text!r}; expected {SYNTAX_HELP}, comma-separated")
    specs: list[VariantSpec] = []
    for item in items:
        if item.lower() == "all":
            specs.extend(get_variant(name, n_heads, window) for name in FAMILY)
        else:
            specs.append(parse_variant(item, n_heads, window))
    return list(dict.fromkeys(specs))  # keep order, drop repeats

