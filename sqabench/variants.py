"""The SQA family: one registry, the only source of truth for head counts.

A variant is data: a frozen spec of the baseline's head count H, the query heads Hq, the
key/value heads Hkv and an optional sliding window. The registry lists the paper's family at
H = 16 (Filipek 2025, arXiv 2510.01817, Table 1); a preset with another H scales the counts.
A user can also name a variant by its heads: ``Hq/Hkv`` or, windowed, ``Hq/Hkv@W``.
"""

from __future__ import annotations

import math
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
    note: str = ""  # e.g. why the heads differ from the family's fraction of H

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
        return heads_label(self.n_q_heads, self.n_kv_heads, self.window)


def heads_label(n_q_heads: object, n_kv_heads: object, window: object = None) -> str:
    """``Hq/Hkv``, or ``Hq/Hkv@W`` when windowed: how every table and legend names a variant's heads. The
    values may come from a CSV (strings; an empty window is none)."""
    suffix = f"@{window}" if window not in (None, "", "None") else ""
    return f"{n_q_heads}/{n_kv_heads}{suffix}"


@dataclass(frozen=True)
class FamilyMember:
    q_heads: int  # at H = REGISTRY_HEADS: the fraction q_heads / 16 of any H
    kv_heads: int  # likewise, unless single_kv
    windowed: bool
    description: str
    single_kv: bool = False  # one key/value head at any H: what "multi-query" means


FAMILY: dict[str, FamilyMember] = {
    "mha": FamilyMember(16, 16, False, "multi-head baseline"),
    "gqa": FamilyMember(16, 4, False, "grouped-query"),
    "mqa": FamilyMember(16, 1, False, "multi-query", single_kv=True),
    "sqa": FamilyMember(8, 4, False, "standard SQA"),
    "ssqa": FamilyMember(8, 8, False, "symmetric SQA"),
    "xsqa": FamilyMember(4, 4, False, "extreme SQA"),
    "xsmqa": FamilyMember(4, 1, False, "extreme SQA, one KV head", single_kv=True),
    "lsqa": FamilyMember(12, 4, False, "light SQA, 75% of query heads"),
    "swa": FamilyMember(16, 4, True, "sliding-window baseline (GQA heads)"),
    "swa-ssqa": FamilyMember(8, 8, True, "sliding window x symmetric SQA"),
    "swa-xsqa": FamilyMember(4, 4, True, "sliding window x extreme SQA"),
}
BASE = "base"  # a model's own attention, for a preset read from its config

_CUSTOM = re.compile(r"^([0-9]+)/([0-9]+)(?:@([0-9]+))?$")  # ASCII digits only (not "８/４")
SYNTAX_HELP = f"a registry name ({', '.join(FAMILY)}), 'all', or heads as Hq/Hkv or Hq/Hkv@WINDOW"


def nearest_heads(q_exact: Fraction, kv_exact: Fraction, n_heads: int) -> tuple[int, int]:
    """The valid (Hq, Hkv) nearest the exact fractions: 1 <= Hkv <= Hq <= H, Hq a multiple of Hkv.

    Nearest in a sum of log-ratios (so 2x too many and 2x too few are equally far), the query
    heads' weighted 4x: they set the attention FLOPs, which is what the family is about. Ties go
    to fewer heads.
    """
    best = None
    for kv in range(1, n_heads + 1):
        for q in range(kv, n_heads + 1, kv):
            distance = 4 * abs(math.log(q / q_exact)) + abs(math.log(kv / kv_exact))
            if best is None or distance < best[0] - 1e-12:
                best = (distance, q, kv)
    return best[1], best[2]


def get_variant(name: str, n_heads: int = REGISTRY_HEADS, window: int = DEFAULT_WINDOW) -> VariantSpec:
    """The registry's variant ``name`` for a model with ``n_heads`` heads; ``window`` for windowed ones.

    Counts are the family's fractions of H; where a fraction is not a whole number of heads (H = 9,
    say), the nearest valid counts are taken and the spec's ``note`` says so.
    """
    try:
        member = FAMILY[name]
    except KeyError:
        raise ConfigError(f"unknown variant {name!r}; expected {SYNTAX_HELP}") from None
    q_exact = Fraction(member.q_heads * n_heads, REGISTRY_HEADS)
    kv_exact = Fraction(1) if member.single_kv else Fraction(member.kv_heads * n_heads, REGISTRY_HEADS)
    q, kv, note = q_exact, kv_exact, ""
    if q.denominator != 1 or kv.denominator != 1 or int(q) % int(kv):
        q, kv = nearest_heads(q_exact, kv_exact, n_heads)
        note = f"nearest valid heads {q}/{kv}: the family's {_text(q_exact)}/{_text(kv_exact)} of H={n_heads}"
    return VariantSpec(
        name=name, n_heads=n_heads, n_q_heads=int(q), n_kv_heads=int(kv),
        window=window if member.windowed else None, note=note,
    )  # fmt: skip


def _text(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{float(value):g}"


def base_variant(n_heads: int, n_kv_heads: int | None, window: int | None) -> VariantSpec | None:
    """The model's own attention (from its config) as the variant ``base``; None for a synthetic preset."""
    if n_kv_heads is None:
        return None
    return VariantSpec(BASE, n_heads, n_heads, n_kv_heads, window, note="the model's own attention")


def parse_variant(
    text: str, n_heads: int = REGISTRY_HEADS, window: int = DEFAULT_WINDOW, base: VariantSpec | None = None
) -> VariantSpec:
    """A registry name, ``base`` (a config's own heads), or custom heads ``Hq/Hkv`` / ``Hq/Hkv@W``."""
    text = text.strip()
    match = _CUSTOM.match(text)
    if match is None and text.lower() == BASE:
        if base is None:
            raise ConfigError("variant 'base' is a model's own attention: it needs a --preset read from a config.json")
        return base
    if match is None:
        return get_variant(text.lower(), n_heads, window)
    q, kv, w = match.groups()
    return VariantSpec(
        name=text, n_heads=n_heads, n_q_heads=int(q), n_kv_heads=int(kv), window=None if w is None else int(w)
    )


def parse_variants(
    text: str, n_heads: int = REGISTRY_HEADS, window: int = DEFAULT_WINDOW, base: VariantSpec | None = None
) -> list[VariantSpec]:
    """A comma-separated list of variants, or ``all``: ``base`` (when there is one), then the registry."""
    items = [item.strip() for item in text.split(",")]
    if any(not item for item in items):
        raise ConfigError(f"empty item in variant list {text!r}; expected {SYNTAX_HELP}, comma-separated")
    specs: list[VariantSpec] = []
    for item in items:
        if item.lower() == "all":
            specs.extend([base] if base is not None else [])
            specs.extend(get_variant(name, n_heads, window) for name in FAMILY)
        else:
            specs.append(parse_variant(item, n_heads, window, base))
    return list(dict.fromkeys(specs))  # keep order, drop repeats


def pick_baseline(baseline: str | None, present: list[str], missing: str) -> str | None:
    """``baseline`` as the data spells it (case aside), mha when not given and there, else None.

    A given baseline that is not ``present`` is a usage error: ``--baseline X <missing>: <present>``.
    """
    if baseline is None:
        return "mha" if "mha" in present else None
    for name in present:
        if name.lower() == baseline.lower():
            return name
    raise ConfigError(f"--baseline {baseline!r} {missing}: {', '.join(present)}")


def windowed_names() -> list[str]:
    """The registry's windowed variants (swa, swa-ssqa, ...): what a ``--window`` applies to."""
    return [name for name, member in FAMILY.items() if member.windowed]


def check_window(window: int | None, specs: list[VariantSpec], asked: str) -> None:
    """A ``--window`` given where no variant asked for has a window is a usage error naming those that do."""
    if window is not None and all(spec.window is None for spec in specs):
        raise ConfigError(f"--window {window} applies to windowed variants ({', '.join(windowed_names())}, or "
                          f"Hq/Hkv@W); none of {asked!r} has a window")  # fmt: skip
