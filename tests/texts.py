"""The text corpus the quality tests train on, made here (a small grammar of sentences, so that every
reference can be computed from the generated text), and the quick command line they share."""

import random

from typer.testing import CliRunner

from sqabench.presets import Preset

runner = CliRunner()
NOUNS, VERBS, ADJ = "cat dog bird fish horse mouse".split(), "sees chases likes finds".split(), "big red old".split()


def documents(n: int = 120, seed: int = 0) -> list[str]:
    rng = random.Random(seed)

    def sentence() -> str:
        return f"the {rng.choice(ADJ)} {rng.choice(NOUNS)} {rng.choice(VERBS)} the {rng.choice(NOUNS)}."

    return [f"no. {i:04d}: " + " ".join(sentence() for _ in range(rng.randint(1, 4))) for i in range(n)]


TEXT_MODEL = Preset("text-test", d_model=64, n_layers=2, n_heads=4, d_ff=128, vocab_size=259)


QUICK = ["quality", "--device", "cpu", "--steps", "4", "--batch", "4", "--eval-every", "2", "--d-model", "16",
         "--heads", "4", "--layers", "1", "--seq", "32", "--variants", "mha,sqa"]  # fmt: skip


def quick(*args: str | None) -> list[str]:
    """QUICK with ``args`` (option, value, ...) in place of its own values; a value None drops the option."""
    pairs = dict(zip(QUICK[1::2], QUICK[2::2]))
    extra = []
    for option, value in zip(args[::2], args[1::2]):
        if option in pairs and value is None:
            del pairs[option]
        elif option in pairs:
            pairs[option] = value
        else:
            extra += [option] if value == "" else [option, value]
    return ["quality", *(part for item in pairs.items() for part in item), *extra]
