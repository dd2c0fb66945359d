"""Real model shapes from config.json, the `base` variant, --layers, and --scope."""

import csv
import json
from importlib import resources

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from conftest import rel_err
from reference import encoder_forward
from sqabench.cli import app
from sqabench.encoder import build_block, build_encoder
from sqabench.errors import ConfigError
from sqabench.flops import encoder_params, step_cost
from sqabench.presets import PRESETS, get_preset, shipped
from sqabench.variants import base_variant, get_variant, parse_variants

runner = CliRunner()
PUBLISHED = {"qwen3-0.6b": 596_049_920, "llama-3.2-1b": 1_235_814_400}  # the models' safetensors


def base_of(preset):
    return base_variant(preset.n_heads, preset.n_kv_heads, preset.sliding_window)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_shipped_presets_have_the_published_parameter_count(name):
    preset = get_preset(name)
    base = base_of(preset)
    assert encoder_params(base, preset) == PUBLISHED[name]
    model = build_encoder(base, preset, device="meta")
    assert sum(t.numel() for t in model.parameters()) == PUBLISHED[name]
    assert model.head.weight is model.embed.weight  # tied, as the config says
    assert "huggingface.co" in preset.source
    assert set(shipped()) >= set(PUBLISHED)


def test_qwen3_shape_and_its_own_attention():
    p = get_preset("QWEN3-0.6B")
    assert (p.d_model, p.n_layers, p.n_heads, p.n_kv_heads, p.head_dim, p.d_ff) == (1024, 28, 16, 8, 128, 3072)
    assert p.head_dim * p.n_heads != p.d_model  # its own head_dim, not hidden_size / H
    assert (p.qk_norm, p.tie_embeddings, p.rope_base, p.sliding_window) == (True, True, 1e6, None)
    specs = parse_variants("all", p.n_heads, base=base_of(p))
    assert specs[0].name == "base" and specs[0].heads == "16/8"
    assert get_variant("sqa", p.n_heads).heads == "8/4"


def write_config(tmp_path, **fields):
    config = json.loads((resources.files("sqabench") / "data/presets/qwen3-0.6b.json").read_text())
    config.update(fields)
    config = {k: v for k, v in config.items() if v is not ...}
    path = tmp_path / "my-model" / "config.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(config))
    return path


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"hidden_size": ...}, "missing required field hidden_size"),
        ({"num_key_value_heads": 5}, "num_key_value_heads=5 does not divide num_attention_heads=16"),
        ({"head_dim": ..., "hidden_size": 1000}, "hidden_size=1000 is not divisible by num_attention_heads=16"),
        ({"num_hidden_layers": "many"}, "num_hidden_layers='many' must be a positive integer"),
        ({"num_hidden_layers": 0}, "num_hidden_layers=0 must be a positive integer"),
        ({"head_dim": -64}, "head_dim=-64 must be a positive integer"),
        ({"vocab_size": True}, "vocab_size=True must be a positive integer"),
    ],
)
def test_a_bad_config_is_one_line_naming_the_field(tmp_path, fields, message):
    path = write_config(tmp_path, **fields)
    result = runner.invoke(app, ["variants", "--preset", str(path)])
    assert result.exit_code == 2 and message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_not_json_and_missing_file(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text("{nope")
    assert "is not JSON" in runner.invoke(app, ["variants", "--preset", str(bad)]).output
    assert "no such config file" in runner.invoke(app, ["variants", "--preset", str(tmp_path / "x.json")]).output
    result = runner.invoke(app, ["variants", "--preset", "gpt5"])
    assert result.exit_code == 2 and "paper, paper-moe, wide, llama-3.2-1b, qwen3-0.6b, or a path" in result.output


def test_an_awkward_head_count_is_listed_not_refused(tmp_path):
    path = write_config(tmp_path, num_attention_heads=9, num_key_value_heads=3, head_dim=64)
    result = runner.invoke(app, ["variants", "--preset", str(path), "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = {r["variant"]: r for r in csv.DictReader(result.output.splitlines())}
    assert (rows["base"]["n_q_heads"], rows["base"]["n_kv_heads"]) == ("9", "3")
    assert (rows["sqa"]["n_q_heads"], rows["sqa"]["n_kv_heads"]) == ("4", "2")
    assert "nearest valid heads 4/2" in rows["sqa"]["note"] and rows["mha"]["note"] == ""


def test_base_needs_a_config():
    with pytest.raises(ConfigError, match="'base' is a model's own attention"):
        parse_variants("base,sqa")


def test_qk_norm_model_matches_the_reference(tmp_path):
    preset = get_preset(str(write_config(tmp_path, hidden_size=64, head_dim=32, num_attention_heads=4,
                                         num_key_value_heads=2, intermediate_size=96, vocab_size=53)), 2)  # fmt: skip
    spec = base_of(preset)
    model = build_encoder(spec, preset, "sdpa", causal=True)
    with torch.no_grad():  # make the norms matter: weights away from their initial ones
        for block in model.blocks:
            block.attn.q_norm.weight.uniform_(0.5, 1.5)
            block.attn.k_norm.weight.uniform_(0.5, 1.5)
    tokens = torch.randint(0, 53, (2, 40))
    with torch.inference_mode():
        out = model(tokens)
    ref = encoder_forward(tokens, model.state_dict(), 2, 4, 2, 32, None, True, base=1e6, qk_norm=True, tied=True)
    assert rel_err(out, ref) <= 1e-5
    without = encoder_forward(tokens, model.state_dict(), 2, 4, 2, 32, None, True, base=1e6, tied=True)
    assert rel_err(without, ref) > 1e-3  # the reference's own norm changes the answer: it is tested


@pytest.mark.parametrize("scope", ["block", "attention"])
@pytest.mark.parametrize("preset_name", ["paper", "wide"])
def test_scope_flops_equal_the_flop_counter(scope, preset_name):
    preset, spec = PRESETS[preset_name], get_variant("sqa")
    block = build_block(spec, preset, "sdpa-math")
    x = torch.randn(2, 40, preset.d_model)
    from sqabench.attention import rope_tables
    from sqabench.kernels import build_kernel

    rope = rope_tables(40, preset.head_dim, preset.rope_base, torch.device("cpu"), torch.float32)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), sdpa_kernel([SDPBackend.MATH]):
        q, k, v = block.attn.qkv(x, rope)
        with counter:
            block(x, rope) if scope == "block" else build_kernel("sdpa-math")(q, k, v)
    assert step_cost(spec, preset, 2, 40, scope=scope).flops == counter.get_total_flops()
    assert step_cost(spec, preset, 2, 40, scope="attention").flops == 4 * 2 * 8 * preset.head_dim * 40 * 40


SMALL = ["run", "--device", "cpu", "--seq", "64", "--batch", "1", "--warmup", "0", "--repeats", "2"]


@pytest.mark.parametrize("scope", ["block", "attention"])
@pytest.mark.parametrize("preset_name", ["paper", pytest.param("wide", marks=pytest.mark.slow)])
def test_scope_runs(tmp_path, scope, preset_name):
    out = tmp_path / "r.csv"
    args = [*SMALL, "--preset", preset_name, "--scope", scope, "--variants", "mha,sqa", "--mode", "train"]
    result = runner.invoke(app, [*args, "--out", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert [r["status"] for r in rows] == ["ok", "ok"], [r["error"] for r in rows]
    preset = PRESETS[preset_name]
    for row in rows:
        spec = get_variant(row["variant"])
        assert (row["scope"], row["n_layers"]) == (scope, "1")
        assert int(row["flops"]) == step_cost(spec, preset, 1, 64, mode="train", dtype="fp32", scope=scope).flops
        assert float(row["verify_grad_rel_err"]) < 2e-4
    assert f"scope {scope}" in result.output
    assert f"{preset_name} preset (1 layer, scope {scope})" in result.output  # the header names the layers timed
    assert f"{preset_name} (1 layer) · scope {scope}" in result.output  # and the table's title, in the singular


def test_what_a_scope_times_is_what_its_profile_shows(tmp_path):
    """--scope attention times the op alone: a profiled step has attention and no matmul; a block has both."""
    parts = {}
    for scope in ("attention", "block"):
        out = tmp_path / f"{scope}.csv"
        args = [*SMALL, "--scope", scope, "--variants", "sqa", "--breakdown", "--out", str(out)]
        result = runner.invoke(app, args, env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        (row,) = csv.DictReader(out.open())
        parts[scope] = {c: float(row[c]) for c in ("attention_ms", "matmul_ms")}
    assert parts["attention"]["attention_ms"] > 0 and parts["attention"]["matmul_ms"] == 0
    assert parts["block"]["attention_ms"] > 0 and parts["block"]["matmul_ms"] > 0


@pytest.mark.slow
def test_a_config_run_with_fewer_layers(tmp_path):
    out = tmp_path / "r.csv"
    result = runner.invoke(app, [*SMALL, "--preset", "qwen3-0.6b", "--layers", "2", "--variants", "base,sqa,xsqa",
                                 "--baseline", "base", "--out", str(out)], env={"COLUMNS": "200"})  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert [(r["variant"], r["n_q_heads"], r["n_kv_heads"], r["head_dim"], r["n_layers"], r["status"])
            for r in rows] == [("base", "16", "8", "128", "2", "ok"), ("sqa", "8", "4", "128", "2", "ok"),
                               ("xsqa", "4", "4", "128", "2", "ok")]  # fmt: skip
    preset = get_preset("qwen3-0.6b", 2)
    assert int(rows[1]["flops"]) == step_cost(get_variant("sqa"), preset, 1, 64, dtype="fp32").flops


@pytest.mark.parametrize(
    "args, message",
    [
        (["--scope", "layer"], "unknown scope 'layer'; choose one of: model, block, attention"),
        (["--scope", "attention", "--mode", "decode"], "--scope attention does not apply"),
        (["--layers", "0"], "--layers 0 must be >= 1"),
        (["--layers", "9"], "--layers 9: preset paper has 8; choose 1..8"),
        (["--variants", "base"], "'base' is a model's own attention"),
    ],
)
def test_scope_and_layers_bad_input(tmp_path, args, message):
    out = tmp_path / "r.csv"
    result = runner.invoke(app, [*SMALL, *args, "--out", str(out)])
    assert result.exit_code == 2 and message in result.output and not out.exists()


@pytest.mark.parametrize("field", ["hidden_size", "num_hidden_layers", "intermediate_size", "vocab_size"])
@pytest.mark.parametrize("command", [["variants"], ["floor"]])
def test_a_null_field_is_one_line_naming_it(tmp_path, field, command):
    path = write_config(tmp_path, **{field: None})
    result = runner.invoke(app, [*command, "--preset", str(path)])
    assert result.exit_code == 2 and f"{field}=null must be a positive integer" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_models_folder_is_read_through_its_config(tmp_path):
    path = write_config(tmp_path)
    result = runner.invoke(app, ["variants", "--preset", str(path.parent), "--format", "csv"])
    assert result.exit_code == 0 and result.output.splitlines()[1].startswith("base,16,16,8,")
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["variants", "--preset", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "is a directory without a config.json" in result.output


@pytest.mark.parametrize(
    "field, value, message",
    [("rope_theta", "abc", 'rope_theta="abc" must be a number > 0'), ("rope_theta", None, "rope_theta=null must"),
     ("rope_theta", 0, "rope_theta=0 must be a number > 0"), ("rms_norm_eps", "x", 'rms_norm_eps="x" must be a'),
     ("rms_norm_eps", -1e-6, "rms_norm_eps=-1e-06 must be a number >= 0"),
     ("sliding_window", -1, "sliding_window=-1 must be an integer >= 0"),
     ("sliding_window", 1.5, "sliding_window=1.5 must be an integer"),
     ("tie_word_embeddings", "false", 'tie_word_embeddings="false" must be true or false'),
     ("use_sliding_window", 1, "use_sliding_window=1 must be true or false")],
)  # fmt: skip
def test_every_optional_field_is_read_strictly(tmp_path, field, value, message):
    config = write_config(tmp_path, **{field: value})
    result = runner.invoke(app, ["variants", "--preset", str(config)])
    assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output


def test_optional_fields_that_are_right_are_read(tmp_path):
    fields = {"rope_theta": 1e6, "rms_norm_eps": 1e-5, "tie_word_embeddings": True, "sliding_window": None}
    preset = get_preset(str(write_config(tmp_path, **fields)))
    assert (preset.rope_base, preset.norm_eps, preset.tie_embeddings, preset.sliding_window) == (1e6, 1e-5, True, None)
    untied = get_preset(str(write_config(tmp_path, tie_word_embeddings=False, sliding_window=4096)))
    assert untied.tie_embeddings is False and untied.sliding_window is None  # Qwen3: use_sliding_window false


def test_every_shipped_preset_is_named_in_the_help_and_on_the_run_page():
    """--preset paper-moe was missing from variants --help and docs/run.md."""
    from pathlib import Path

    from sqabench.options import PRESET_HELP
    from sqabench.presets import PRESETS

    page = (Path(__file__).parent.parent / "docs" / "run.md").read_text()
    for name in PRESETS:
        assert name in PRESET_HELP and f"`{name}`" in page, name
