"""``sqabench doctor``: what this machine can run, found in well under a minute, before a sweep.

What ``python -m xformers.info`` and ``torch.utils.collect_env`` do for their libraries, for this
tool. Sections, each independent (a failing section is reported and never hides the others):

- ``versions``: torch, CUDA, cuDNN, triton, driver, nvidia-ml-py; the device (name, SMs, memory, L2,
  clocks);
- ``kernels``: for representative shapes (the paper preset's d_head 16 and the wide preset's 128;
  mha, gqa, mqa, sqa, xsqa; full, causal and windowed masks; a decode step over a KV cache), the SDPA
  backend PyTorch picks, and whether each pinned backend and flex run it: ``ok`` (forward, and on a
  GPU backward, against fp64 on a small shape), ``unsupported`` (with PyTorch's reason) or ``wrong``;
- ``speed`` (GPU): cuDNN against flash for the attention op alone at 32k, d_head 16 and 128;
- ``graphs`` (GPU): a decode step captured in a CUDA graph replays equal to the launched step;
- ``nvml`` (GPU): the handle found by UUID, the energy counter advancing under load, clock-event
  reasons, the power limit;
- ``ceilings``: the measured rates beside the published peaks.

Every check says whether the default sweep needs it; the command exits 1 naming those that fail.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass

import torch

from sqabench.attention import SQAttention
from sqabench.device import synchronize, time_repeats
from sqabench.environment import clock_lock, environment, nvml_handle, nvml_module
from sqabench.kernels import KERNELS, KernelUnsupported, SdpaKernel, build_kernel, compile_settings, resolve_kernel
from sqabench.presets import PRESETS
from sqabench.variants import get_variant
from sqabench.verify import KernelVerifyFailed, verify_decode, verify_layer

STATUSES = ("ok", "info", "unsupported", "wrong", "skipped", "failed")
VARIANTS = ("mha", "gqa", "mqa", "sqa", "xsqa")
MASKS = {"full": (None, False), "causal": (None, True), "windowed": (128, False)}
CHECK_LEN = 256  # tokens of a kernel check: small, and two flex blocks
FLEX_CASES = {("paper", "mha", "windowed"), ("paper", "xsqa", "causal"), ("wide", "gqa", "full")}  # compiles


@dataclass(frozen=True)
class Check:
    section: str
    name: str
    status: str  # one of STATUSES
    detail: str = ""
    needed: bool = False  # the default sweep cannot run without it

    @property
    def broken(self) -> bool:
        """Wrong or failed anywhere; unsupported where the default sweep needs it. Skipped is never broken."""
        return self.status in ("wrong", "failed") or (self.needed and self.status == "unsupported")


def versions(device: torch.device) -> list[Check]:
    env = environment(device)
    checks = [Check("versions", name, "info", str(value or "-")) for name, value in (
        ("torch", env.torch_version), ("CUDA", env.cuda_version), ("cuDNN", env.cudnn_version),
        ("triton", env.triton_version), ("driver", env.driver_version), ("nvidia-ml-py", _package("nvidia-ml-py")),
        ("sqabench", f"{env.sqabench_version} ({env.git_sha or 'no git'})"), ("host CPU", env.cpu_model),
        ("torch threads", env.torch_threads),
    )]  # fmt: skip
    if device.type != "cuda":
        return checks + [Check("versions", "device", "info", f"CPU ({env.cpu_model})")]
    p = torch.cuda.get_device_properties(device)
    l2 = getattr(p, "L2_cache_size", 0)
    device_text = (
        f"{p.name}: {p.multi_processor_count} SMs, {p.total_memory / 2**30:.1f} GiB, L2 {l2 / 2**20:.0f} MiB, "
        f"compute capability {p.major}.{p.minor}"
    )
    return checks + [Check("versions", "device", "info", device_text), *_clocks(device)]


def _package(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return ""


def _clocks(device: torch.device) -> list[Check]:
    pynvml = nvml_module()
    if pynvml is None:
        return [Check("versions", "clocks", "skipped", "no NVML")]
    try:
        handle = nvml_handle(pynvml, device)
        sm = pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM)
        mem = pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_MEM)
    finally:
        pynvml.nvmlShutdown()
    _, lock = clock_lock(device)
    return [Check("versions", "clocks", "info", f"max SM {sm} MHz, memory {mem} MHz"),
            Check("versions", "clock lock", "info", lock)]  # fmt: skip


def _kernel_check(layer: SQAttention, grad: bool) -> tuple[str, str]:
    """(status, detail) of one kernel on one case: verified forward (and backward), or why not."""
    try:
        checked = verify_layer(layer, 1, CHECK_LEN, grad=grad)
    except KernelUnsupported as err:
        return "unsupported", reason(err)
    except KernelVerifyFailed as err:
        return "wrong", str(err)
    return "ok", f"rel err {checked.rel_err:.1e}" + (f", grad {checked.grad_rel_err:.1e}" if grad else "")


def reason(err: BaseException) -> str:
    """PyTorch's reason for refusing a case, in its first sentence."""
    text = str(err).split("cannot run this case: ", 1)[-1]
    return text.split(". ", 1)[0][:100]


def kernels(device: torch.device) -> Iterator[Check]:
    """The kernel matrix: every representative case x (PyTorch's pick, each pinned backend, flex).

    flex compiles a kernel per case, so it is checked on ``FLEX_CASES`` (on a CPU, forward only, on the
    one the default sweep needs: a windowed encoder of the paper preset); the GPU tests cover the rest.
    Each check is yielded as it is made, so that an interrupted doctor still reports the ones made.
    """
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    grad = device.type == "cuda"  # CPU cells time forward steps; flex has no CPU backward
    flex_cases = FLEX_CASES if device.type == "cuda" else {("paper", "mha", "windowed")}
    with compile_settings():
        for preset_name in ("paper", "wide"):
            preset = PRESETS[preset_name]
            for name in VARIANTS:
                for mask, (window, causal) in MASKS.items():
                    heads = get_variant(name, preset.n_heads)
                    spec = type(heads)(heads.name, heads.n_heads, heads.n_q_heads, heads.n_kv_heads, window)
                    case = f"{preset_name} {name} {spec.heads} {mask}"
                    torch.manual_seed(0)
                    layer = SQAttention(preset.d_model, spec, "sdpa", causal, preset.head_dim).to(device, dtype)
                    q = torch.empty(1, spec.n_q_heads, CHECK_LEN, preset.head_dim, device=device, dtype=dtype)
                    kv = torch.empty(1, spec.n_kv_heads, CHECK_LEN, preset.head_dim, device=device, dtype=dtype)
                    picks = SdpaKernel(window, causal).ran(q, kv, kv)
                    yield Check("kernels", f"{case}: sdpa picks", "info", picks)
                    default = resolve_kernel(spec, "auto") if preset_name == "paper" and not causal else None
                    for kernel in KERNELS[1:]:  # sdpa, its pinned backends, flex (eager is the reference)
                        if kernel == "flex" and (preset_name, name, mask) not in flex_cases:
                            continue
                        layer.kernel = build_kernel(kernel, window, causal)
                        status, detail = _kernel_check(layer, grad and not (kernel == "flex" and device.type == "cpu"))
                        yield Check("kernels", f"{case}: {kernel}", status, detail, needed=kernel == default)
        if device.type == "cpu":
            yield Check("kernels", "flex on the other cases", "skipped",
                        "on a CPU (a flex compile takes ~20 s a case; pytest covers them)")  # fmt: skip
        yield from _decode_checks(device, dtype)


def _decode_checks(device: torch.device, dtype: torch.dtype) -> Iterator[Check]:
    from sqabench.encoder import build_encoder

    preset = PRESETS["paper"].with_layers(1)
    for name in ("gqa", "sqa"):
        model = build_encoder(get_variant(name), preset, "auto", True, device, dtype)
        for kernel in ("sdpa", "sdpa-cudnn", "sdpa-efficient", "sdpa-math"):
            try:
                checked = verify_decode(model, kernel, batch=2, context=512, new_tokens=4)
            except KernelUnsupported as err:
                yield Check("kernels", f"decode {name} over a KV cache: {kernel}", "unsupported", reason(err))
                continue
            except KernelVerifyFailed as err:
                yield Check("kernels", f"decode {name} over a KV cache: {kernel}", "wrong", str(err))
                continue
            detail = f"ran {checked.kernel}, rel err {checked.rel_err:.1e}"
            if checked.kernel == "sdpa-math" and kernel == "sdpa":
                detail += ": the unfused math backend (repeats K/V every step)"
            yield Check("kernels", f"decode {name} over a KV cache: {kernel}", "ok", detail)


def speed(device: torch.device) -> list[Check]:
    """cuDNN against flash for the attention op alone, encoder mha at 32k, d_head 16 and 128."""
    if device.type != "cuda":
        return [Check("speed", "cuDNN vs flash", "skipped", "no GPU")]
    from sqabench.flops import step_cost

    checks = []
    n = 32768
    for preset_name in ("paper", "wide"):
        preset = PRESETS[preset_name]
        spec = get_variant("mha", preset.n_heads)
        q = torch.randn(1, n, spec.n_q_heads, preset.head_dim, device=device, dtype=torch.bfloat16).transpose(1, 2)
        k, v = (torch.randn_like(q) for _ in range(2))
        flops = step_cost(spec, preset, 1, n, scope="attention").flops
        for kernel in ("sdpa-cudnn", "sdpa-flash", "flex"):
            op = build_kernel(kernel)
            try:
                with torch.inference_mode():
                    op(q, k, v)  # warm-up (and compile)
                    ms = sorted(time_repeats(lambda op=op, q=q, k=k, v=v: op(q, k, v), device, 5))[2]
            except KernelUnsupported as err:
                checks.append(Check("speed", f"d_head {preset.head_dim} mha 32k: {kernel}", "unsupported", reason(err)))
                continue
            checks.append(Check("speed", f"d_head {preset.head_dim} mha 32k: {kernel}", "info",
                                f"{ms:.3g} ms, {flops / ms / 1e9:.0f} TFLOP/s"))  # fmt: skip
    return checks


TIMER_CALLS = 200  # the timer's floor: calls of an empty region, and of a tiny forward


def timer(device: torch.device) -> list[Check]:
    """The timer measuring itself on this device: an empty timed region (its floor: what every sample carries)
    and a tiny forward (a 64 x 64 linear) timed many times, each as its median and the spread of its middle
    half (interquartile range over median)."""
    checks = []
    x = torch.randn(8, 64, device=device)
    layer = torch.nn.Linear(64, 64, device=device)
    with torch.inference_mode():
        for name, step in (("empty region", lambda: None), ("tiny forward (64 x 64 linear)", lambda: layer(x))):
            step()
            samples = sorted(time_repeats(step, device, TIMER_CALLS))
            median = samples[len(samples) // 2]
            iqr = samples[3 * len(samples) // 4] - samples[len(samples) // 4]
            spread = f"{iqr / median:.0%} of it" if median > 0 else "-"
            clock = "CUDA events" if device.type == "cuda" else "the wall clock"
            checks.append(Check("timer", name, "info", f"median {median * 1e3:.3g} us over {TIMER_CALLS} calls "
                                f"({clock}); interquartile range {iqr * 1e3:.3g} us, {spread}"))  # fmt: skip
    return checks


def graphs(device: torch.device) -> list[Check]:
    """A decode step captured in a CUDA graph replays equal to the launched step."""
    if device.type != "cuda":
        return [Check("graphs", "decode step in a CUDA graph", "skipped", "no GPU")]
    from sqabench.decode import Decoder, graphed
    from sqabench.encoder import build_encoder

    model = build_encoder(get_variant("sqa"), PRESETS["paper"].with_layers(2), "auto", True, device, torch.bfloat16)
    tokens = torch.randint(0, model.preset.vocab_size, (4, 512 + 8), device=device)
    with torch.inference_mode():
        plain, captured = Decoder(model, 4, 512, 8, "sdpa"), Decoder(model, 4, 512, 8, "sdpa")
        plain.prefill(tokens[:, :512])
        captured.prefill(tokens[:, :512])
        step = graphed(captured, tokens[:, 512:])
        equal = all(torch.equal(step(), plain.step(tokens[:, 512 + t : 513 + t])) for t in range(8))
    said = "8 replayed steps equal the launched ones" if equal else "a replay differs from the launched step"
    return [Check("graphs", "decode step in a CUDA graph", "ok" if equal else "wrong", said)]


def nvml(device: torch.device) -> list[Check]:
    if device.type != "cuda":
        return [Check("nvml", "NVML", "skipped", "no GPU")]
    from sqabench.speed.energy import GpuMonitor

    pynvml = nvml_module()
    if pynvml is None:
        return [Check("nvml", "NVML", "unsupported", "nvidia-ml-py missing or no driver: energy columns stay empty")]
    checks = []
    try:
        handle = nvml_handle(pynvml, device)
        checks.append(Check("nvml", "handle", "ok", f"found by UUID {torch.cuda.get_device_properties(device).uuid}"))
        monitor = GpuMonitor(pynvml, handle)
        a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
        with monitor.sampling() as window:
            start, begin = monitor.energy_mj(), time.perf_counter()
            while time.perf_counter() - begin < 1.5:
                a @ a
                synchronize(device)
            end = monitor.energy_mj()
        if start is None:
            checks.append(Check("nvml", "energy counter", "unsupported", "this GPU reports no total energy"))
        else:
            joules = (end - start) / 1e3
            status = "ok" if joules > 0 else "wrong"
            checks.append(Check("nvml", "energy counter", status, f"{joules:.1f} J over 1.5 s of matmuls "
                                f"({joules / 1.5:.0f} W)"))  # fmt: skip
        columns = window.columns()
        checks.append(
            Check(
                "nvml",
                "clock-event reasons under load",
                "info",
                columns.get("throttle") or "none",
            )
        )
        limit = pynvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000
        checks.append(Check("nvml", "power limit", "info", f"{limit:.0f} W; SM clock under load "
                            f"{columns.get('sm_clock_median_mhz', '-')} MHz"))  # fmt: skip
    finally:
        pynvml.nvmlShutdown()
    return checks


def ceilings(device: torch.device) -> list[Check]:
    from sqabench.speed.ceilings import describe, get_ceilings
    from sqabench.speed.peaks import peaks_for

    dtype = "bf16" if device.type == "cuda" else "fp32"
    env = environment(device)
    lookup = get_ceilings(device, env, dtype)
    published = peaks_for(env.gpu_name, dtype)
    checks = [Check("ceilings", "measured", "ok", describe(lookup), needed=True)]
    scale, prefix = (1e12, "T") if device.type == "cuda" else (1e9, "G")
    for limit, field, unit in (("matmul", "matmul_flops", "FLOP/s"), ("exp", "exp_per_s", "exp/s"),
                               ("memory", "bytes_per_s", "B/s")):  # fmt: skip
        value = getattr(lookup.ceilings.rates, field)
        peak = getattr(published[1], field) if published else None
        text = f"{value / scale:.3g} {prefix}{unit}" + (
            f" of a published {peak / scale:.3g} ({value / peak:.0%})" if peak else ""
        )
        text += f"; {lookup.ceilings.methods.get(limit, '')}"
        status = "wrong" if peak and value > 1.05 * peak else "info"  # above the peak: a wrong table or measurement
        checks.append(Check("ceilings", limit, status, text))
    return checks


SECTIONS: tuple[Callable[[torch.device], Iterable[Check]], ...] = (versions, kernels, timer, speed, graphs, nvml,
                                                                  ceilings)  # fmt: skip


def run_doctor(device: torch.device, sections=None) -> tuple[list[Check], bool]:
    """Every section's checks, in order, and whether it was interrupted. A section that raises is one
    ``failed`` check: the others still run. Interrupted (Ctrl-C, a time box's SIGINT), the checks made so
    far are kept and what was not run is said."""
    checks: list[Check] = []
    sections = list(sections or SECTIONS)
    for i, section in enumerate(sections):
        try:
            checks.extend(section(device))  # a section may yield its checks: those made stay if it is interrupted
        except KeyboardInterrupt:
            left = ", ".join(s.__name__ for s in sections[i + 1 :]) or "none"
            checks.append(Check(section.__name__, "section", "skipped", f"interrupted here; sections not run: {left}"))
            return checks, True
        except Exception as err:  # noqa: BLE001 - a diagnostic reports whatever broke and goes on
            text = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
            checks.append(Check(section.__name__, "section", "failed", f"{type(err).__name__}: {text}", needed=True))
    return checks, False


def summary(checks: list[Check], interrupted: bool = False) -> dict:
    """ok: nothing broken, and every section ran (an interrupted doctor cannot say the sweep will run)."""
    broken = [c for c in checks if c.broken]
    return {"ok": not broken and not interrupted, "interrupted": interrupted,
            "broken": [f"{c.section}: {c.name}: {c.status} {c.detail}".strip() for c in broken],
            "checks": [asdict(c) for c in checks]}  # fmt: skip
