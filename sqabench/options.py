"""Options written once, as dataclass fields whose ``Annotated`` type carries their own Typer option, made by
``option``: its help, its flag, and the rule its value must keep (bounds, choices). No torch here.

Each command's options are one dataclass (``sqabench run``'s in ``sqabench.speed.options``, ``sqabench
quality``'s in ``sqabench.quality.options``); the command's signature is built from the fields
(``sqabench.cli.command_of``), and ``check_options`` checks every declared rule in one place, so no command
spells "must be >= 1" or "choose one of" by hand.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import get_type_hints

import typer

from sqabench.errors import ConfigError

PRESET_HELP = (
    "paper (d 256, 8 layers), paper-moe (the paper's MoE model), wide (d 2048), qwen3-0.6b, llama-3.2-1b, "
    "or a path to a config.json."
)
BASELINE_HELP = "Variant the speed-ups are relative to. Default: mha, when present."


@dataclass(frozen=True)
class Rule:
    """What an option's value must be: within [low, high] (an end open when ``open_low`` / ``open_high``), or
    one of ``choices`` (compared without case; a callable is asked when checked, so a registry that needs torch
    is not loaded to print help). ``noun`` names the value in "unknown NOUN 'x'"; ``what`` in "must be WHAT in"."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: Sequence[str] | Callable[[], Sequence[str]] | None = None
    noun: str = ""
    what: str = ""
    unit: str = ""
    why: str = ""

    def names(self) -> Sequence[str]:
        return self.choices() if callable(self.choices) else self.choices or ()

    def problem(self, flag: str, value: object) -> str | None:
        """The one-line complaint about ``value`` given as ``flag``, or None when it keeps the rule."""
        if value is None or isinstance(value, bool):
            return None
        if self.choices is not None:
            names = self.names()
            if str(value).lower() not in names:
                why = f" ({self.why})" if self.why else ""
                return f"unknown {self.noun or flag.lstrip('-')} {value!r}; choose one of: {', '.join(names)}{why}"
            return None
        if isinstance(value, float) and math.isnan(value):
            return f"{flag} nan {self._range()}"
        below = self.low is not None and (value <= self.low if self.open_low else value < self.low)
        above = self.high is not None and (value >= self.high if self.open_high else value > self.high)
        if not (below or above):
            return None
        if (
            self.low is not None
            and self.high is not None
            and (self.open_low or self.open_high or self.what or self.unit)
        ):
            return f"{flag} {value} {self._range()}"
        unit = f" {self.unit}" if self.unit else ""
        if below:
            return f"{flag} {value} must be {'>' if self.open_low else '>='} {_number(self.low)}{unit}"
        return f"{flag} {value} must be {'<' if self.open_high else '<='} {_number(self.high, grouped=True)}{unit}"

    def _range(self) -> str:
        left, right = "(" if self.open_low else "[", ")" if self.open_high else "]"
        span = f"{left}{_number(self.low)}, {_number(self.high)}{right}"
        unit = f" {self.unit}" if self.unit else ""
        return f"must be {self.what + ' ' if self.what else ''}in {span}{unit}"


def _number(value: float | None, grouped: bool = False) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    return f"{value:,}" if grouped and isinstance(value, int) else str(value)


RULE_ATTRIBUTE = "sqabench_rule"


def option(metavar: str | None, help: str, *flags: str, rule: Rule | None = None, **bounds) -> typer.models.OptionInfo:
    """A Typer option with its rule: ``option("N", "Seeds.", low=1)``, ``option("MODE", ..., choices=MODES)``.
    Keyword arguments other than ``rule`` are the ``Rule``'s fields."""
    info = typer.Option(*flags, metavar=metavar, help=help)
    setattr(info, RULE_ATTRIBUTE, rule or (Rule(**bounds) if bounds else None))
    return info


def flag_of(name: str, info: typer.models.OptionInfo) -> str:
    """The option's declared flag (``--cuda-graphs/--no-cuda-graphs``), else the one Typer makes of its name.

    In ``Annotated`` use a declaration given first lands in ``OptionInfo.default``, not ``param_decls``."""
    declared = [d for d in (info.default, *info.param_decls) if isinstance(d, str) and d.startswith("-")]
    return declared[0] if declared else f"--{name.replace('_', '-')}"


def option_infos(options_type: type) -> dict[str, typer.models.OptionInfo]:
    """Each field's Typer option, by field name."""
    hints = get_type_hints(options_type, include_extras=True)
    return {f.name: hints[f.name].__metadata__[0] for f in dataclasses.fields(options_type)}


def rules_of(options_type: type) -> dict[str, tuple[str, Rule]]:
    """Each field that declares a rule: its flag and the rule, by field name."""
    found = {}
    for name, info in option_infos(options_type).items():
        rule = getattr(info, RULE_ATTRIBUTE, None)
        if rule is not None:
            found[name] = (flag_of(name, info).split("/")[0], rule)
    return found


def check_value(options_type: type, name: str, value: object) -> None:
    """``value`` against the rule declared for the field ``name`` of ``options_type`` (a command that takes the
    same option, e.g. ``tokenize --held-out``, checks it by the one declaration)."""
    flag, rule = rules_of(options_type)[name]
    problem = rule.problem(flag, value)
    if problem:
        raise ConfigError(problem)


def check_options(options: object) -> None:
    """Every declared rule of ``options`` (a dataclass of options), in field order: raises ``ConfigError`` with
    the first value that breaks one."""
    for name, (flag, rule) in rules_of(type(options)).items():
        problem = rule.problem(flag, getattr(options, name))
        if problem:
            raise ConfigError(problem)


def argv_of(options: object) -> list[str]:
    """``options`` written back as command-line arguments (what a rank of a --cp job is started with)."""
    args: list[str] = []
    for name, info in option_infos(type(options)).items():
        value = getattr(options, name)
        on, _, off = flag_of(name, info).partition("/")
        if isinstance(value, bool):
            args += [on] if value else [off] if off else []
        elif value is not None:
            args += [on, str(value)]
    return args
