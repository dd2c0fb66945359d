import pytest

from sqabench.errors import ConfigError
from sqabench.flops import kv_cache_bytes_per_token
from sqabench.presets import PRESETS, Preset, get_preset
from sqabench.variants import DEFAULT_WINDOW, FAMILY, VariantSpec, get_variant, parse_variant, parse_variants

PAPER_TABLE = {  # name: (Hq, Hkv, windowed) at H = 16
    "mha": (16, 16, False),
    "gqa": (16, 4, False),
    "mqa": (16, 1, False),
    "sqa": (8, 4, False),
    "ssqa": (8, 8, False),
    "xsqa": (4, 4, False),
    "xsmqa": (4, 1, False),
    "lsqa": (12, 4, False),
    "swa": (16, 4, True),
    "swa-ssqa": (8, 8, True),
    "swa-xsqa": (4, 4, True),
}


@pytest.mark.parametrize("name", PAPER_TABLE)
def test_registry_matches_the_paper(name):
    q, kv, windowed = PAPER_TABLE[name]
    spec = get_variant(name)
    assert (spec.n_heads, spec.n_q_heads, spec.n_kv_heads) == (16, q, kv)
    assert spec.window == (DEFAULT_WINDOW if windowed else None)
    assert spec.theoretical_speedup == 16 / q
    assert spec.attn_flops_vs_mha == q / 16
    assert spec.kv_groups == q // kv


def test_registry_is_complete():
    assert set(FAMILY) == set(PAPER_TABLE)


def test_counts_scale_with_the_preset():
    spec = get_variant("sqa", n_heads=32)
    assert (spec.n_q_heads, spec.n_kv_heads, spec.note) == (16, 8, "")
    assert get_variant("mqa", n_heads=32).n_kv_heads == 1  # multi-query: one key/value head at any H
    assert get_variant("xsmqa", n_heads=32).n_kv_heads == 1


@pytest.mark.parametrize("n_heads", [9, 12, 14, 28, 5, 1])
def test_an_awkward_head_count_takes_the_nearest_valid_heads(n_heads):
    for name in FAMILY:
        spec = get_variant(name, n_heads)  # never fails the command
        assert 1 <= spec.n_kv_heads <= spec.n_q_heads <= n_heads and spec.n_q_heads % spec.n_kv_heads == 0
        if spec.note:
            assert spec.note.startswith(f"nearest valid heads {spec.n_q_heads}/{spec.n_kv_heads}:")
    assert get_variant("sqa", 9).heads == "4/2" and "4.5/2.25 of H=9" in get_variant("sqa", 9).note
    assert get_variant("gqa", 14).heads == "14/2"  # query heads kept: they set the FLOPs
    assert get_variant("sqa", 28).heads == "14/7" and get_variant("sqa", 28).note == ""


def test_nearest_heads_brute_force():
    import math
    from fractions import Fraction

    from sqabench.variants import nearest_heads

    q, kv = nearest_heads(Fraction(9, 2), Fraction(9, 4), 9)
    candidates = [(a, b) for b in range(1, 10) for a in range(b, 10, b)]
    best = min(candidates, key=lambda c: 4 * abs(math.log(c[0] / 4.5)) + abs(math.log(c[1] / 2.25)))
    assert (q, kv) == best


@pytest.mark.parametrize(
    "name, paper_bytes, wide_bytes",  # K and V x Hkv x d_head x layers x 2 bytes (bf16)
    [("mha", 8192, 32768), ("gqa", 2048, 8192), ("mqa", 512, 2048), ("sqa", 2048, 8192), ("ssqa", 4096, 16384)],
)
def test_kv_cache_bytes(name, paper_bytes, wide_bytes):
    assert kv_cache_bytes_per_token(get_variant(name), PRESETS["paper"]) == paper_bytes
    assert kv_cache_bytes_per_token(get_variant(name), PRESETS["wide"]) == wide_bytes


def test_custom_heads_and_window():
    spec = parse_variant("6/2")
    assert (spec.name, spec.n_q_heads, spec.n_kv_heads, spec.window) == ("6/2", 6, 2, None)
    spec = parse_variant("4/4@256")
    assert (spec.n_q_heads, spec.n_kv_heads, spec.window) == (4, 4, 256)
    assert spec.heads == "4/4@256"


def test_window_option_reaches_windowed_variants_only():
    assert get_variant("swa", window=64).window == 64
    assert get_variant("sqa", window=64).window is None


def test_parse_variants_all_keeps_registry_order_and_drops_repeats():
    names = [s.name for s in parse_variants("all,mha")]
    assert names == list(FAMILY)
    assert [s.name for s in parse_variants("mha, 6/2 ,sqa")] == ["mha", "6/2", "sqa"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("6/4", "n_q_heads=6 is not a multiple of n_kv_heads=4"),
        ("0/1", "n_q_heads=0 must be between 1 and n_heads=16"),
        ("17/1", "n_q_heads=17 must be between 1 and n_heads=16"),
        ("4/0", "n_kv_heads=0 must be between 1 and n_heads=16"),
        ("4/8", "n_q_heads=4 is not a multiple of n_kv_heads=8"),
        ("4/4@0", "window=0 must be >= 1"),
        ("nope", "unknown variant 'nope'; expected a registry name \\(mha, gqa"),
    ],
)
def test_invalid_specs_name_the_numbers(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_variant(text)


def test_empty_list_item_is_rejected():
    with pytest.raises(ConfigError, match="empty item"):
        parse_variants("mha,,sqa")


def test_window_below_one_is_rejected_on_construction():
    with pytest.raises(ConfigError, match="window=-3 must be >= 1"):
        VariantSpec("w", 16, 4, 4, window=-3)


def test_invalid_presets():
    with pytest.raises(ConfigError, match="d_model=250 is not divisible by n_heads=16"):
        Preset("bad", d_model=250, n_layers=1, n_heads=16, d_ff=8)
    with pytest.raises(ConfigError, match="unknown preset 'huge'; choose one of: paper, paper-moe, wide"):
        get_preset("huge")


def test_presets_match_the_issue():
    paper, wide = PRESETS["paper"], PRESETS["wide"]
    assert (paper.d_model, paper.n_layers, paper.n_heads, paper.head_dim, paper.d_ff, paper.vocab_size) == (
        256,
        8,
        16,
        16,
        768,
        10_000,
    )
    assert (wide.d_model, wide.n_layers, wide.n_heads, wide.head_dim, wide.d_ff) == (2048, 4, 16, 128, 5632)


def test_the_family_tables_flop_column_names_the_mask_it_assumes():
    """swa reads 1 beside run's 1.42x: the column is at the same mask, and the title says a window's saving is
    counted elsewhere."""
    from typer.testing import CliRunner

    from sqabench.cli import app

    text = " ".join(CliRunner().invoke(app, ["variants"], env={"COLUMNS": "250"}).output.split())
    assert "MHA, same mask" in text and "a window's own saving is not in it (run and floor count it)" in text
