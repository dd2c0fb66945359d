import pytest
import torch

from conftest import SEQ, TINY, WINDOW, rel_err
from reference import encoder_forward
from sqabench.encoder import build_encoder
from sqabench.errors import ConfigError
from sqabench.flops import encoder_params
from sqabench.presets import PRESETS
from sqabench.variants import FAMILY, get_variant


@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "causal"])
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if get_variant(n).window else n for n in FAMILY]
)  # windowed: flex compiles
def test_encoder_matches_a_reference_built_from_its_weights(name, causal):
    """The whole encoder with its auto kernel (sdpa, or flex when windowed) against tests/reference.py."""
    spec = get_variant(name, TINY.n_heads, window=WINDOW)
    model = build_encoder(spec, TINY, kernel="auto", causal=causal)
    assert model.blocks[0].attn.kernel.name == ("flex" if spec.window else "sdpa")
    tokens = torch.randint(0, TINY.vocab_size, (2, SEQ), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        out = model(tokens)
    ref = encoder_forward(
        tokens, model.state_dict(), TINY.n_layers, spec.n_q_heads, spec.n_kv_heads, TINY.head_dim, spec.window, causal
    )
    assert out.shape == (2, SEQ, TINY.vocab_size)
    assert rel_err(out, ref) <= 1e-5


def test_causal_encoder_does_not_look_ahead():
    model = build_encoder(get_variant("sqa"), TINY, kernel="sdpa", causal=True)
    tokens = torch.randint(0, TINY.vocab_size, (1, 64))
    changed = tokens.clone()
    changed[0, 40:] = (changed[0, 40:] + 1) % TINY.vocab_size
    with torch.inference_mode():
        a, b = model(tokens), model(changed)
    assert torch.equal(a[:, :40], b[:, :40])
    assert not torch.allclose(a[:, 40:], b[:, 40:])


@pytest.mark.parametrize("preset", ["paper", "wide"])
@pytest.mark.parametrize("name", FAMILY)
def test_cost_model_params_equal_the_model(name, preset):
    spec, p = get_variant(name), PRESETS[preset]
    model = build_encoder(spec, p, device="meta")
    assert sum(t.numel() for t in model.parameters()) == encoder_params(spec, p)


def test_same_seed_same_weights():
    a = build_encoder(get_variant("mha"), TINY, seed=7)
    b = build_encoder(get_variant("mha"), TINY, seed=7)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def test_heads_must_match_the_preset():
    with pytest.raises(ConfigError, match="n_heads=32 but preset tiny has n_heads=16"):
        build_encoder(get_variant("mha", n_heads=32), TINY)
