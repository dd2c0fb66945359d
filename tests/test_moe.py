"""The paper-moe preset: a top-2 of 12 SwiGLU mixture, its parameters against the paper's Table 2, its FLOPs against
PyTorch's counter, its routing against a per-token loop of our own, and its load-balancing loss."""

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from sqabench.encoder import MoE, build_encoder
from sqabench.flops import encoder_params, step_cost
from sqabench.presets import Preset, get_preset
from sqabench.variants import get_variant

PAPER_PARAMS = {"gqa": 8.67e6, "mqa": 8.64e6, "sqa": 8.57e6, "ssqa": 8.62e6, "xsqa": 8.52e6}  # Table 2


@pytest.mark.parametrize("variant", sorted(PAPER_PARAMS))
def test_paper_moe_parameters_are_the_papers_within_one_percent(variant):
    preset = get_preset("paper-moe")
    spec = get_variant(variant, preset.n_heads)
    model = build_encoder(spec, preset, "sdpa", True)
    counted = sum(p.numel() for p in model.parameters())
    assert counted == encoder_params(spec, preset)
    assert abs(counted / PAPER_PARAMS[variant] - 1) < 0.01, counted


def test_the_cost_model_counts_the_active_experts_as_the_flop_counter_does():
    preset = Preset("moe-test", d_model=32, n_layers=2, n_heads=4, d_ff=48, vocab_size=100, n_experts=6, top_k=2)
    spec = get_variant("sqa", 4)
    model = build_encoder(spec, preset, "sdpa-math", False)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), sdpa_kernel([SDPBackend.MATH]), counter:
        model(torch.randint(0, 100, (3, 20)))
    assert step_cost(spec, preset, 3, 20).flops == counter.get_total_flops()
    dense = Preset("dense-test", d_model=32, n_layers=2, n_heads=4, d_ff=48, vocab_size=100)
    assert step_cost(spec, preset, 3, 20).flops != step_cost(spec, dense, 3, 20).flops  # the check can fail


def test_each_token_goes_to_its_top_two_experts_weighted_by_renormalised_probabilities():
    torch.manual_seed(0)
    moe = MoE(16, 24, n_experts=5, top_k=2).double()
    x = torch.randn(2, 7, 16, dtype=torch.float64)
    out = moe(x)
    for b in range(2):
        for t in range(7):
            token = x[b, t]
            probs = torch.softmax(moe.router.weight @ token, dim=0)
            first, second = sorted(range(5), key=lambda e: -probs[e].item())[:2]
            norm = probs[first] + probs[second]
            want = sum(
                probs[e] / norm * moe.experts[e].down(F.silu(moe.experts[e].gate(token)) * moe.experts[e].up(token))
                for e in (first, second)
            )
            assert torch.allclose(out[b, t], want, atol=1e-12)


def test_the_load_balancing_loss_is_one_when_balanced_and_grows_when_not():
    moe = MoE(4, 8, n_experts=4, top_k=2)
    with torch.no_grad():
        moe.router.weight.zero_()  # every probability 1/4: aux = E * sum(share * 1/E) = 1, whatever is chosen
    moe(torch.randn(10, 4))
    assert moe.aux.item() == pytest.approx(1.0)
    with torch.no_grad():
        moe.router.weight.zero_()
        moe.router.weight[0, 0] = moe.router.weight[1, 0] = 20.0  # everything to experts 0 and 1
    moe(torch.rand(10, 4) + 1.0)
    # shares 1/2, 1/2, 0, 0 and probabilities near 1/2, 1/2, 0, 0: aux near 4 * (1/4 + 1/4) = 2
    assert moe.aux.item() == pytest.approx(2.0, abs=0.01)


def test_training_adds_the_routers_loss_and_only_for_a_mixture():
    """Two runs that differ only in the load-balancing weight part after their first update (the loss
    trained on includes it); the reported train loss stays the plain cross-entropy."""
    from sqabench.quality.mqar import MQARSize
    from sqabench.quality.tasks import MQARTask
    from sqabench.quality.train import TrainConfig, train

    def run(weight: float):
        preset = Preset("moe-train", d_model=16, n_layers=1, n_heads=4, d_ff=16, vocab_size=64, n_experts=4, top_k=2,
                        router_aux=weight)  # fmt: skip
        cfg = TrainConfig(MQARTask(MQARSize(64, 32, 4), eval_examples=8), preset, steps=3, batch=4, eval_every=1)
        return [row["train_loss"] for row in train(cfg, get_variant("sqa", 4), 0).curve]

    plain, balanced = run(0.0), run(0.5)
    assert plain[0] == balanced[0]  # the first step's loss is taken before any update: the same
    assert plain[1:] != balanced[1:]


def test_sqabench_run_times_the_mixture_too(tmp_path):
    import csv

    from typer.testing import CliRunner

    from sqabench.cli import app

    out = tmp_path / "r.csv"
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--preset",
            "paper-moe",
            "--seq",
            "64",
            "--variants",
            "gqa,sqa",
            "--device",
            "cpu",
            "--repeats",
            "2",
            "--warmup",
            "0",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert [(r["variant"], r["status"]) for r in rows] == [("gqa", "ok"), ("sqa", "ok")]
    spec, preset = get_variant("sqa", 8), get_preset("paper-moe")
    assert int(rows[1]["flops"]) == step_cost(spec, preset, int(rows[1]["batch"]), 64).flops


def test_the_models_load_balancing_loss_is_the_sum_over_its_layers():
    """Each MoE layer's aux is E x sum(share routed x mean probability); the model's is their sum (the Switch
    Transformer's, summed over layers as RxNN's router loss is), recomputed here from each layer's router."""
    preset = Preset("moe-test", d_model=16, n_layers=3, n_heads=4, d_ff=24, vocab_size=50, n_experts=4, top_k=2)
    model = build_encoder(get_variant("mha", 4), preset, "sdpa", True)
    captured = []
    hooks = [block.ffn.register_forward_pre_hook(lambda module, args: captured.append((module, args[0].detach())))
             for block in model.blocks]  # fmt: skip
    model(torch.randint(0, 50, (2, 9)))
    for hook in hooks:
        hook.remove()
    by_hand = []
    for moe, x in captured:
        tokens = x.reshape(-1, x.shape[-1])
        probs = torch.softmax(tokens @ moe.router.weight.T, dim=-1)
        chosen = probs.topk(2, dim=-1).indices
        share = torch.zeros(4).scatter_add_(0, chosen.flatten(), torch.ones(chosen.numel())) / chosen.numel()
        by_hand.append(4 * (share * probs.mean(0)).sum())
    assert len(by_hand) == 3
    assert float(model.aux_loss().detach()) == pytest.approx(float(sum(by_hand).detach()), rel=1e-5)
