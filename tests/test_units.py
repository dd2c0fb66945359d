import pytest

from sqabench import units
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


def test_durations_read_plainly():
    assert [units.format_duration(s) for s in (0.2, 12, 600, 7200)] == ["under a second", "12 s", "10 min", "2.0 h"]
    assert [units.format_duration(s) for s in (3 * 86400, 5 * 365.25 * 86400, 7.3e4 * 365.25 * 86400)] == [
        "3.0 days", "5.0 years", "73,000 years"]  # fmt: skip
    assert [units.format_seconds(s) for s in (0.15, 54.5, 999, 1530, 37_300, 112_000, 400_000)] == [
        "0.15 s",
        "54.5 s",
        "999 s",
        "26 min",
        "10.4 h",
        "31.1 h",
        "4.6 d",
    ]  # never 1.12e+05 s


def test_milliseconds_never_read_in_e_notation_and_counts_take_their_plural():
    """A step of 1,800 ms reads as 1800 ms (never 1.8e+03 ms), from 10 s in seconds; one seed is one seed."""
    assert [units.format_ms(ms) for ms in (0.0123, 7.481, 99.94, 111.2, 1800, 7450.4, 9999, 12_340, 763_000)] == [
        "0.0123 ms",
        "7.48 ms",
        "99.9 ms",
        "111 ms",
        "1800 ms",
        "7450 ms",
        "9999 ms",
        "12.34 s",
        "763.00 s",
    ]
    assert [units.plural(n, "seed") for n in (0, 1, 2)] == ["0 seeds", "1 seed", "2 seeds"]


def test_a_duration_under_ten_minutes_keeps_its_half_minutes():
    """quality --budget 90s once printed "budget 2 min"."""
    assert [units.format_duration(s) for s in (90, 120, 150, 599, 600)] == ["1.5 min", "2 min", "2.5 min", "10 min",
                                                                            "10 min"]  # fmt: skip
