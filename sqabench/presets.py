"""Encoder presets: plain data, shared by the model, the cost model and the CLI."""

from __future__ import annotations

from dataclasses import dataclass

from sqabench.errors import ConfigError


@dataclass(frozen=True)
class Preset:
    """Shape of the benchmark encoder (everything except the attention heads)."""

    name: str
    d_model: int
    n_layers: int
    n_heads: int  # H: the baseline's head count; variants take fractions of it
    d_ff: int  # SwiGLU hidden width
    vocab_size: int = 10_000
    rope_base: float = 10_000.0

    def __post_init__(self) -> None:
        for field in ("d_model", "n_layers", "n_heads", "d_ff", "vocab_size"):
            if getattr(self, field) < 1:
                raise ConfigError(f"preset {self.name!r}: {field}={getattr(self, field)} must be >= 1")
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"preset {self.name!r}: d_model={self.d_model} is not divisible by n_heads={self.n_heads}"
            )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


PRESETS: dict[str, Preset] = {
    # The paper's dense model (section 4): d_model 256, 8 layers, 16 heads of 16 dims.
    "paper": Preset("paper", d_model=256, n_layers=8, n_heads=16, d_ff=768),
    # Head dim 128: attention bound by tensor cores rather than by the softmax.
    "wide": Preset("wide", d_model=2048, n_layers=4, n_heads=16, d_ff=5632),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None
