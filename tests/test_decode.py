"""Decode with a KV cache: the steps against the independent reference, the cost model, the CLI."""

import csv

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from conftest import TINY, rel_err
from reference import encoder_forward
from sqabench.attention import Cursor
from sqabench.cli import app
from sqabench.decode import Decoder
from sqabench.encoder import build_encoder
from sqabench.flops import cache_slots, decode_cost, keys_seen, kv_cache_bytes, kv_cache_bytes_per_token
from sqabench.kernels import KernelUnsupported
from sqabench.presets import PRESETS
from sqabench.speed.check import Limits, compare
from sqabench.variants import get_variant
from sqabench.verify import KernelVerifyFailed, verify_decode

CONTEXT, NEW, WINDOW = 200, 8, 48
runner = CliRunner()


def decode_logits(name, kernel, batch=2, context=CONTEXT, new=NEW, window=WINDOW):
    spec = get_variant(name, window=window)
    model = build_encoder(spec, TINY, "auto", causal=True)
    tokens = torch.randint(0, TINY.vocab_size, (batch, context + new), generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        decoder = Decoder(model, batch, context, new, kernel)
        decoder.prefill(tokens[:, :context])
        got = torch.cat([decoder.step(tokens[:, context + t : context + t + 1]) for t in range(new)], dim=1)
    ref = encoder_forward(
        tokens, model.state_dict(), TINY.n_layers, spec.n_q_heads, spec.n_kv_heads, TINY.head_dim, spec.window, True
    )
    return got, ref[:, context:], decoder


@pytest.mark.parametrize("kernel", ["eager", "sdpa", "sdpa-math"])
@pytest.mark.parametrize("name", ["mha", "gqa", "sqa", "xsmqa", "swa", "swa-xsqa"])
def test_decode_steps_equal_the_full_causal_forward(name, kernel):
    got, ref, decoder = decode_logits(name, kernel)
    assert got.shape == ref.shape
    assert rel_err(got, ref) <= 1e-5
    if name.startswith("swa"):
        assert decoder.slots == WINDOW + 1  # a ring: the cache holds what the last query sees, no more


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sqa", "swa-xsqa"])
def test_flex_decode_equals_the_full_causal_forward(name):
    got, ref, _ = decode_logits(name, "flex")
    assert rel_err(got, ref) <= 1e-5


def test_the_cache_is_allocated_once():
    model = build_encoder(get_variant("sqa"), TINY, "auto", causal=True)
    tokens = torch.randint(0, TINY.vocab_size, (1, 40))
    with torch.inference_mode():
        decoder = Decoder(model, 1, 32, 8, "sdpa")
        decoder.prefill(tokens[:, :32])
        k_ptr, v_ptr, shape = decoder.k.data_ptr(), decoder.v.data_ptr(), decoder.k.shape
        for t in range(8):
            decoder.step(tokens[:, 32 + t : 33 + t])
    assert (decoder.k.data_ptr(), decoder.v.data_ptr(), decoder.k.shape) == (k_ptr, v_ptr, shape)
    assert shape == (TINY.n_layers, 1, 4, 40, 16)


def test_flash_cannot_decode_over_a_masked_cache():
    with pytest.raises(KernelUnsupported, match="sdpa-flash cannot decode"):
        decode_logits("sqa", "sdpa-flash")


def test_a_decode_that_ignores_its_cache_mask_is_refused(monkeypatch):
    real = Cursor.begin_step

    def unmasked(self):
        real(self)
        self.valid.fill_(True)  # attends to slots never written

    monkeypatch.setattr(Cursor, "begin_step", unmasked)
    model = build_encoder(get_variant("sqa"), TINY, "auto", causal=True)
    with pytest.raises(KernelVerifyFailed, match="decode with sdpa output disagrees"):
        verify_decode(model, "sdpa", 2, CONTEXT, NEW)


@pytest.mark.parametrize("window", [None, 5, 48])
@pytest.mark.parametrize("context, new", [(1, 1), (7, 3), (200, 8)])
def test_keys_seen_equal_a_count_step_by_step(context, new, window):
    counted = 0
    for t in range(new):
        position = context + t
        counted += sum(1 for j in range(position + 1) if window is None or position - j <= window)
    assert keys_seen(context, new, window) * new == counted


def test_decode_cost_counts_what_a_step_reads():
    spec, p = get_variant("ssqa"), PRESETS["paper"]
    cost = decode_cost(spec, p, batch=4, context=1000, new_tokens=1, dtype="bf16")
    seen = 1001
    kv_read = 2 * p.n_layers * 4 * spec.n_kv_heads * p.head_dim * seen * 2
    assert cost.exps == p.n_layers * 4 * spec.n_q_heads * seen
    assert cost.attention_flops == 4 * p.n_layers * 4 * spec.n_q_heads * p.head_dim * seen
    gqa = decode_cost(get_variant("gqa"), p, 4, 1000, 1, "bf16")
    # same query heads' worth of weights aside, ssqa (8 KV heads) reads twice gqa's (4) cache
    assert cost.min_bytes - gqa.min_bytes == pytest.approx(kv_read / 2, rel=0.15)


def test_decode_flops_equal_the_flop_counter_when_the_cache_is_full():
    spec = get_variant("sqa")
    model = build_encoder(spec, TINY, "auto", causal=True)
    tokens = torch.randint(0, TINY.vocab_size, (2, 40))
    with torch.inference_mode():
        decoder = Decoder(model, 2, 39, 1, "eager")  # one step: its query sees every slot
        decoder.prefill(tokens[:, :39])
        counter = FlopCounterMode(display=False)
        with counter:
            decoder.step(tokens[:, 39:40])
    assert decode_cost(spec, TINY, 2, 39, 1, "fp32").flops == counter.get_total_flops()


def test_cache_bytes_are_what_the_decoder_allocates():
    """The cost model's cache size against the bytes of the tensors a real decoder allocates."""
    assert cache_slots(1000, 32, None) == 1032 and cache_slots(1000, 32, 128) == 129
    for name in ("xsqa", "swa", "mha"):
        spec = get_variant(name, window=48)
        model = build_encoder(spec, TINY, "auto", causal=True)
        decoder = Decoder(model, 3, CONTEXT, NEW, "sdpa")
        allocated = decoder.k.nbytes + decoder.v.nbytes
        slots = cache_slots(CONTEXT, NEW, spec.window)
        assert kv_cache_bytes(spec, TINY, 3, slots, "fp32") == allocated
        assert kv_cache_bytes_per_token(spec, TINY, "fp32") * 3 * slots == allocated  # what `variants` lists


DECODE_RUN = ["run", "--device", "cpu", "--mode", "decode", "--seq", "200", "--batch", "2", "--warmup", "0",
              "--repeats", "2", "--new-tokens", "4"]  # fmt: skip


@pytest.mark.slow
def test_decode_run_writes_rows_per_step(tmp_path):
    out = tmp_path / "d.csv"
    result = runner.invoke(app, [*DECODE_RUN, "--variants", "gqa,ssqa,swa", "--window", "48", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["status"] for r in rows] == ["ok"] * 3, [r["error"] for r in rows]
    for row in rows:
        spec = get_variant(row["variant"], window=48)
        assert (row["mode"], row["causal"], row["new_tokens"]) == ("decode", "True", "4")
        assert row["kernel"] in ("sdpa-flash", "sdpa-math", "sdpa-efficient", "sdpa-cudnn")  # the backend that ran
        assert len(row["samples_ms"].split(";")) == 2  # a repeat is a pass of T = 4 tokens
        assert len(row["token_samples_ms"].split(";")) == 2 * 4  # every generated token timed, kept apart
        assert float(row["prefill_ms"]) > 0 and float(row["verify_rel_err"]) < 1e-4
        p = PRESETS["paper"]
        slots = cache_slots(200, 4, spec.window)
        # the cache: K and V of every layer, 2 sequences, written out
        assert int(row["kv_cache_bytes"]) == 2 * p.n_layers * 2 * spec.n_kv_heads * p.head_dim * slots * 4
        keys = sum(min(200 + t + 1, (spec.window or 10**9) + 1) for t in range(4)) / 4  # a step's keys, on average
        kv_read = 2 * p.n_layers * 2 * spec.n_kv_heads * p.head_dim * keys * 4
        assert int(row["bytes_per_token"]) > kv_read  # the cache's reads, and weights and activations on top
        assert int(row["bytes_per_token"]) == decode_cost(spec, p, 2, 200, 4, "fp32").min_bytes
        assert float(row["tokens_per_s"]) == pytest.approx(2 / (float(row["time_ms"]) / 1e3), rel=1e-4)
    text = " ".join(result.output.split())
    assert "memory-bound" in text and "bytes" in text

    from sqabench.speed.plots import build_figures
    from sqabench.speed.results import load_results

    figures, notes = build_figures(load_results(out), None)
    assert {"decode", "prefill_vs_decode"} <= set(figures)
    ax = figures["decode"].axes[0]
    predictions = [line for line in ax.get_lines() if line.get_linestyle() == "--" and len(line.get_xdata())]
    assert len(predictions) == 3  # one memory-bound prediction per variant
    assert any("decode is not in the paper" in note for note in notes)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--mode", "decode", "--new-tokens", "0"], "--new-tokens 0 must be >= 1"),
        (["--new-tokens", "8"], "--new-tokens applies to --mode decode only"),
        (["--mode", "decode", "--cuda-graphs"], "--cuda-graphs needs a CUDA GPU"),
        (["--cuda-graphs"], "--cuda-graphs applies to --mode decode only"),
    ],
)
def test_decode_bad_input(tmp_path, args, message):
    out = tmp_path / "r.csv"
    result = runner.invoke(app, ["run", "--device", "cpu", "--seq", "64", *args, "--out", str(out)])
    assert result.exit_code == 2 and message in result.output and not out.exists()


def test_check_gates_decode_rows(tmp_path):
    from rows import write_run

    base = write_run(tmp_path / "b.csv", mode="decode")
    slower = write_run(tmp_path / "c.csv", mode="decode", scale={("sqa", 1024): 1.3})
    report = compare(base, slower, Limits())
    (failing,) = report.failing
    assert "decode" in failing.cell and "+30% time" in failing.problems[0]


def test_prefill_computes_the_last_positions_logits_only():
    """The vocab head runs on the one position generation uses: (B, 1, V), not B x N x vocab of logits
    (10.5 GB at batch 16 and 32k in bf16). Its FLOPs, counted: the forward's, less N - 1 positions' head."""
    spec = get_variant("sqa")
    model = build_encoder(spec, TINY, "sdpa-math", causal=True)
    tokens = torch.randint(0, TINY.vocab_size, (2, 40))
    with torch.inference_mode():
        decoder = Decoder(model, 2, 40, 1, "sdpa")
        counter = FlopCounterMode(display=False)
        with counter:
            last = decoder.prefill(tokens)
        full = model(tokens)
    assert last.shape == (2, 1, TINY.vocab_size)
    assert torch.allclose(last[:, 0], full[:, -1], atol=1e-5)
    head_per_position = 2 * 2 * TINY.d_model * TINY.vocab_size
    assert counter.get_total_flops() == decode_cost_free_forward_flops(spec, 2, 40) - 39 * head_per_position


def decode_cost_free_forward_flops(spec, batch, n):
    """The causal forward's FLOPs as FlopCounterMode counts them, written out: per layer the projections,
    the attention and the SwiGLU, then the head (2mnk per matmul; SDPA's 4 x Hq x d_head x N^2, which
    the counter charges whatever the mask)."""
    d, dh, tokens = TINY.d_model, TINY.head_dim, batch * n
    q, kv = spec.n_q_heads * dh, spec.n_kv_heads * dh
    per_layer = 2 * tokens * (d * q + 2 * d * kv + q * d + 3 * d * TINY.d_ff)
    attention = 4 * batch * spec.n_q_heads * dh * n * n
    return TINY.n_layers * (per_layer + attention) + 2 * tokens * d * TINY.vocab_size


def test_a_decode_row_names_the_backend_that_ran_and_flags_math(tmp_path, monkeypatch):
    """On CUDA, flash refuses a mask and efficient refuses GQA (torch 2.11): a GQA decode may fall to
    the unfused math backend, which repeats K/V every step. The row says which backend ran, and flags math."""
    import sqabench.kernels as kernels

    monkeypatch.setattr(kernels, "sdpa_choice", lambda *args, **kwargs: "math")
    out = tmp_path / "d.csv"
    result = runner.invoke(app, [*DECODE_RUN, "--variants", "gqa", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with out.open() as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["kernel"] == "sdpa-math" and "decode fell to SDPA's math backend" in row["note"]


def test_decode_on_a_gpu_defaults_to_cuda_graphs_and_a_cache_that_binds(tmp_path, monkeypatch):
    """At 32k x batch 4 a step reads ~268 MB of cache (~90 us) but launches ~150 kernels: every ratio would
    sit near 1. On a GPU, decode defaults to CUDA graphs and 2M context tokens a step."""
    import sqabench.speed.request as request
    from sqabench.environment import Environment
    from sqabench.speed.options import RunOptions

    monkeypatch.setattr(request, "resolve_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(request, "validate_dtype", lambda *args: None)
    monkeypatch.setattr(request, "environment", lambda device: Environment(device="cuda", gpu_name="a GPU"))
    out = str(tmp_path / "r.csv")
    plan = request.resolve_run(RunOptions(mode="decode", seq="32k,131k", variants="gqa", out=out))
    assert [(c.batch, c.settings.cuda_graphs) for c in plan.cells] == [(64, True), (16, True)]
    plan = request.resolve_run(RunOptions(mode="decode", seq="32k", variants="gqa", out=out, cuda_graphs=False,
                                          tokens=131072))  # fmt: skip
    assert [(c.batch, c.settings.cuda_graphs) for c in plan.cells] == [(4, False)]  # what the user asked for wins
    plan = request.resolve_run(RunOptions(seq="32k", variants="gqa", out=out))
    assert [(c.batch, c.settings.cuda_graphs) for c in plan.cells] == [(4, False)]  # a forward step keeps its batches
