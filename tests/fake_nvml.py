"""A stand-in for the ``pynvml`` module (nvidia-ml-py): a GPU whose energy counter advances with time."""

import time
import types


class NVMLError(Exception):
    pass


def make(power_w=300.0, sm_clock=1980, mem_clock=2619, temperature=55, reasons=0x0, energy=True, old_names=False,
         clock=time.monotonic, app_clock=1755, default_app_clock=1755):  # fmt: skip
    """A fake ``pynvml``: ``power_w`` drives the energy counter along ``clock``; ``reasons`` the clock-event bits;
    ``app_clock`` the application SM clock (locked when it differs from ``default_app_clock``)."""
    start = clock()
    calls = {"init": 0, "shutdown": 0}

    def energy_mj(handle):
        if not energy:
            raise NVMLError("Not Supported")
        return int(123_456 + (clock() - start) * power_w * 1e3)

    module = types.SimpleNamespace(
        NVMLError=NVMLError,
        NVML_CLOCK_SM=1,
        NVML_CLOCK_MEM=2,
        NVML_TEMPERATURE_GPU=0,
        calls=calls,
        nvmlInit=lambda: calls.__setitem__("init", calls["init"] + 1),
        nvmlShutdown=lambda: calls.__setitem__("shutdown", calls["shutdown"] + 1),
        nvmlDeviceGetHandleByIndex=lambda index: ("gpu", index),
        nvmlDeviceGetHandleByUUID=lambda uuid: ("gpu", uuid),
        nvmlDeviceGetTotalEnergyConsumption=energy_mj,
        nvmlDeviceGetClockInfo=lambda handle, kind: sm_clock if kind == 1 else mem_clock,
        nvmlDeviceGetTemperature=lambda handle, sensor: temperature,
        nvmlDeviceGetPowerUsage=lambda handle: int(power_w * 1000),
        nvmlDeviceGetMemoryInfo=lambda handle: types.SimpleNamespace(used=1 << 30),
        nvmlSystemGetDriverVersion=lambda: "580.65.06",
        nvmlDeviceGetApplicationsClock=lambda handle, kind: app_clock,
        nvmlDeviceGetDefaultApplicationsClock=lambda handle, kind: default_app_clock,
    )
    name = "nvmlDeviceGetCurrentClocksThrottleReasons" if old_names else "nvmlDeviceGetCurrentClocksEventReasons"
    setattr(module, name, lambda handle: reasons)
    return module
