"""Model shapes: the built-in presets, published models' configs, and any Hugging Face-style config.json.

Plain data, shared by the model, the cost model and the CLI. ``get_preset`` takes ``paper`` or
``wide`` (synthetic encoders), the name of a shipped config (``data/presets/*.json``: Qwen3-0.6B,
Llama-3.2-1B), or a path to a ``config.json``, read with ``json`` (no ``transformers``). A model
from a config keeps its own attention as the variant ``base``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

from sqabench.errors import ConfigError
from sqabench.shipped import shipped_names, shipped_text


@dataclass(frozen=True)
class Preset:
    """Shape of the benchmark model (everything except the attention heads of a variant)."""

    name: str
    d_model: int
    n_layers: int
    n_heads: int  # H: the baseline's head count; variants take fractions of it
    d_ff: int  # SwiGLU hidden width
    vocab_size: int = 10_000
    rope_base: float = 10_000.0
    head_dim_: int | None = None  # None: d_model / n_heads
    n_kv_heads: int | None = None  # the model's own key/value heads (the variant `base`); None: no base
    qk_norm: bool = False  # RMSNorm of each q and k head before RoPE (Qwen3)
    tie_embeddings: bool = False  # the output head shares the token embedding
    norm_eps: float = 1e-6
    sliding_window: int | None = None  # the model's own window, for `base`
    n_experts: int = 0  # > 0: each feed-forward is a mixture of this many SwiGLU experts of d_ff (top_k active)
    top_k: int = 2
    router_aux: float = 0.01  # weight of the load-balancing loss in training (a mixture only)
    source: str = ""  # where the shape comes from

    def __post_init__(self) -> None:
        for field in ("d_model", "n_layers", "n_heads", "d_ff", "vocab_size"):
            if getattr(self, field) < 1:
                raise ConfigError(f"preset {self.name!r}: {field}={getattr(self, field)} must be >= 1")
        if self.head_dim_ is None and self.d_model % self.n_heads:
            raise ConfigError(
                f"preset {self.name!r}: d_model={self.d_model} is not divisible by n_heads={self.n_heads}"
            )
        if self.head_dim_ is not None and (self.head_dim_ < 2 or self.head_dim_ % 2):
            raise ConfigError(f"preset {self.name!r}: head_dim={self.head_dim_} must be even (RoPE rotates pairs)")
        if self.n_experts < 0 or self.n_experts and not 1 <= self.top_k <= self.n_experts:
            raise ConfigError(f"preset {self.name!r}: top_k={self.top_k} of n_experts={self.n_experts} experts")
        if self.n_kv_heads is not None and (not 1 <= self.n_kv_heads <= self.n_heads or self.n_heads % self.n_kv_heads):
            raise ConfigError(
                f"preset {self.name!r}: num_key_value_heads={self.n_kv_heads} does not divide "
                f"num_attention_heads={self.n_heads}"
            )

    @property
    def head_dim(self) -> int:
        return self.head_dim_ if self.head_dim_ is not None else self.d_model // self.n_heads

    def with_layers(self, n_layers: int | None) -> "Preset":
        """The same model with ``n_layers`` layers (fewer than its config's), or itself."""
        if n_layers is None or n_layers == self.n_layers:
            return self
        if not 1 <= n_layers <= self.n_layers:
            raise ConfigError(f"--layers {n_layers}: preset {self.name} has {self.n_layers}; choose 1..{self.n_layers}")
        return dataclasses.replace(self, n_layers=n_layers)


PRESETS: dict[str, Preset] = {
    # The paper's dense model (section 4): d_model 256, 8 layers, 16 heads of 16 dims.
    "paper": Preset("paper", d_model=256, n_layers=8, n_heads=16, d_ff=768, source="arXiv 2510.01817, section 4"),
    # The paper's mixture-of-experts model (Table 2): d_model 128, 6 layers, 8 heads of 16 dims, top-2 of 12
    # SwiGLU experts of 256, a router load-balancing loss of 0.01, a 5k vocabulary.
    "paper-moe": Preset(
        "paper-moe",
        d_model=128,
        n_layers=6,
        n_heads=8,
        d_ff=256,
        vocab_size=5_000,
        n_experts=12,
        top_k=2,
        router_aux=0.01,
        source="arXiv 2510.01817, section 4, Table 2",
    ),  # fmt: skip
    # Head dim 128: attention bound by tensor cores rather than by the softmax.
    "wide": Preset("wide", d_model=2048, n_layers=4, n_heads=16, d_ff=5632, source="sqabench"),
}
REQUIRED = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")


def shipped() -> dict[str, str]:
    """Names of the configs shipped in the package, with their file names."""
    return {name.removesuffix(".json"): name for name in shipped_names("presets", ".json")}


def from_config(config: dict, name: str, source: str) -> Preset:
    """A preset from a Hugging Face-style config dict; unknown fields ignored, a missing one named."""
    missing = [field for field in REQUIRED if field not in config]
    if missing:
        raise ConfigError(f"config {source}: missing required field {missing[0]} (needs {', '.join(REQUIRED)})")
    empty = [field for field in REQUIRED if config[field] is None]
    if empty:
        raise ConfigError(f"config {source}: {empty[0]}=null must be a positive integer")
    for field in (*REQUIRED, "num_key_value_heads", "head_dim"):
        value = config.get(field)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ConfigError(f"config {source}: {field}={value!r} must be a positive integer")
    heads, hidden = config["num_attention_heads"], config["hidden_size"]
    head_dim = config.get("head_dim")
    if head_dim is None and hidden % heads:
        raise ConfigError(
            f"config {source}: hidden_size={hidden} is not divisible by num_attention_heads={heads} and no head_dim"
        )
    window = _optional(config, "sliding_window", int, source, lowest=0)
    if _optional(config, "use_sliding_window", bool, source) is False:
        window = None  # Qwen-style configs name a window they do not use
    rope_theta = _optional(config, "rope_theta", float, source, lowest=0.0, strict=True, nullable=False)
    eps = _optional(config, "rms_norm_eps", float, source, lowest=0.0, nullable=False)
    tied = _optional(config, "tie_word_embeddings", bool, source)
    return Preset(
        name=name,
        d_model=hidden,
        n_layers=config["num_hidden_layers"],
        n_heads=heads,
        d_ff=config["intermediate_size"],
        vocab_size=config["vocab_size"],
        rope_base=10_000.0 if rope_theta is None else rope_theta,
        head_dim_=head_dim if head_dim is not None else hidden // heads,
        n_kv_heads=config.get("num_key_value_heads", heads),
        qk_norm=config.get("model_type") in ("qwen3", "qwen3_moe"),
        tie_embeddings=bool(tied),
        norm_eps=1e-6 if eps is None else eps,
        sliding_window=window or None,
        source=str(config.get("_source", source)),
    )


def _optional(
    config: dict, field: str, kind: type, source: str, lowest: float | None = None, strict: bool = False,
    nullable: bool = True,
):  # fmt: skip
    """An optional field of ``kind`` (int, float or bool; an int is a float too, a bool neither) or None when
    absent (or null, where ``nullable``); a value of another type, or below ``lowest`` (``strict``: at or
    below), is named."""
    if field not in config or config[field] is None and nullable:
        return None
    value = config[field]
    if kind is bool:
        ok = isinstance(value, bool)
        want = "true or false (a JSON boolean, not a string)"
    else:
        ok = isinstance(value, (int, float) if kind is float else int) and not isinstance(value, bool)
        ok = ok and math.isfinite(value)
        want = "a number" if kind is float else "an integer"
        if ok and lowest is not None and (value <= lowest if strict else value < lowest):
            ok = False
        if lowest is not None:
            want += f" {'>' if strict else '>='} {lowest:g}"
    if not ok:
        raise ConfigError(f"config {source}: {field}={json.dumps(value)} must be {want}")
    return float(value) if kind is float else value


def _read(path: Path) -> dict:
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config {path}: {err}") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"config {path} is not JSON: {err}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"config {path} is not a JSON object")
    return config


def get_preset(name: str, n_layers: int | None = None) -> Preset:
    """A built-in preset, a shipped config by name, or a config.json path; ``n_layers`` cuts the stack."""
    key = name.lower()
    if key in PRESETS:
        preset = PRESETS[key]
    elif key in shipped():
        text = shipped_text(f"presets/{shipped()[key]}")
        preset = from_config(json.loads(text), key, f"sqabench/data/presets/{shipped()[key]}")
    elif name.endswith(".json") or Path(name).exists():
        path = Path(name)
        if path.is_dir():  # a model's folder: its config.json
            if not (path / "config.json").is_file():
                raise ConfigError(f"--preset {name} is a directory without a config.json; give the config file's path")
            path = path / "config.json"
        if not path.is_file():
            raise ConfigError(f"--preset {name}: no such config file")
        label = path.parent.name if path.stem == "config" and path.parent.name else path.stem
        preset = from_config(_read(path), label or "config", str(path))
    else:
        choices = ", ".join([*PRESETS, *sorted(shipped())])
        raise ConfigError(f"unknown preset {name!r}; choose one of: {choices}, or a path to a config.json")
    return preset.with_layers(n_layers)
