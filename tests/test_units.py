import pytest

from sqabench.errors import ConfigError
from sqabench.units import format_len, parse_length, parse_lengths


@pytest.mark.parametrize(
    "text, tokens",
    [("1k", 1024), ("4k", 4096), ("32k", 32768), ("128k", 131072), ("131k", 131072), ("200k", 200000),
     ("1000", 1000), ("1K", 1024), ("2k", 2048), ("64k", 65536), ("100k", 100000), ("1m", 1_000_000),
     ("1024k", 1_048_576), ("1048576", 1_048_576), ("0.5k", 512), ("1", 1), ("0.001k", 1)],
)  # fmt: skip
def test_seq_sizes(text, tokens):
    assert parse_length(text) == tokens


@pytest.mark.parametrize("n", [64, 200, 256, 1000, 1024, 4096, 32768, 131072, 200000, 1_000_000, 1_048_576, 2_097_152])
def test_labels_parse_back_to_their_length(n):
    assert parse_length(format_len(n)) == n


def test_labels():
    assert [format_len(n) for n in (1024, 131072, 200000, 1_048_576, 1_000_000, 300)] == [
        "1k", "128k", "200k", "1024k", "1m", "300",
    ]  # fmt: skip


def test_seq_list_keeps_order_and_drops_repeats():
    assert parse_lengths("32k, 1k,1024") == [32768, 1024]


@pytest.mark.parametrize("text", ["abc", "-5", "1.5", "1k,,2k", "0"])
def test_bad_lengths(text):
    with pytest.raises(ConfigError, match="--seq"):
        parse_lengths(text)
