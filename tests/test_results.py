import csv
import math

import pytest

from rows import write_run
from sqabench.errors import ConfigError
from sqabench.speed.results import (
    CELL_KEY,
    COLUMNS,
    key_of,
    latest,
    load_results,
    read_rows,
    resolve_baseline,
    results_writer,
    significant,
)


@pytest.mark.parametrize(
    "value, expected",
    [(0.0070812345, 0.00708123), (1234567.89, 1234570.0), (12.3456789, 12.3457), (None, ""), (math.nan, "")],
)
def test_significant_digits_never_fixed_decimals(value, expected):
    assert significant(value) == expected


def test_the_cell_key_is_what_was_asked_for(tmp_path):
    """Two rows that asked for the same thing are one cell whatever ran (a backend change); asking for
    another kernel, length, dtype, mask... is another cell."""
    (row,) = [r for r in read_rows(write_run(tmp_path / "r.csv")) if r["variant"] == "sqa" and r["seq_len"] == "1024"]
    assert key_of({**row, "kernel": "sdpa-cudnn", "time_ms": "1", "run_id": "other"}) == key_of(row)
    for column, value in (("kernel_requested", "flex"), ("seq_len", "2048"), ("dtype", "fp16"), ("causal", "True"),
                          ("mode", "train"), ("device", "cpu"), ("window", "64"), ("n_q_heads", "4")):  # fmt: skip
        assert key_of({**row, column: value}) != key_of(row), column


def test_csv_and_pandas_rows_have_the_same_key(tmp_path):
    path = write_run(tmp_path / "r.csv")
    plain = read_rows(path)
    frame = load_results(path)
    assert [key_of(row) for row in plain] == [key_of(row) for _, row in frame.iterrows()]
    assert key_of(plain[0])[CELL_KEY.index("window")] == ""  # no window: empty, not "nan"


def test_latest_keeps_the_last_row_of_a_cell(tmp_path):
    a = write_run(tmp_path / "a.csv", status={("sqa", 1024): "oom"})
    b = write_run(tmp_path / "b.csv")
    both = load_results([a, b])
    assert len(both) == 16 and len(latest(both)) == 8
    assert set(latest(both)["status"]) == {"ok"}


def test_writer_creates_the_file_with_its_first_row(tmp_path):
    writer = results_writer(tmp_path / "sub" / "r.csv")
    assert not writer.path.exists()
    with pytest.raises(ValueError, match="columns the schema lacks: bogus"):
        writer.write({"bogus": 1})
    writer.write({"variant": "mha", "status": "ok"})
    with writer.path.open() as handle:
        assert tuple(next(csv.reader(handle))) == COLUMNS


def test_older_files_without_new_columns_still_load(tmp_path):
    path = write_run(tmp_path / "r.csv")
    rows = read_rows(path)
    old = tmp_path / "old.csv"
    keep = [c for c in COLUMNS if c not in ("samples_ms", "spread", "noisy", "batch_rule", "note")]
    with old.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keep, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    frame = load_results(old)
    assert len(frame) == 8 and frame["samples_ms"].isna().all()


def test_baseline_must_be_in_the_data(tmp_path):
    frame = load_results(write_run(tmp_path / "r.csv"))
    assert resolve_baseline(frame, None) == "mha"
    assert resolve_baseline(frame, "GQA") == "gqa"
    with pytest.raises(ConfigError, match="variants there: mha, gqa, sqa, xsqa"):
        resolve_baseline(frame, "ssqa")


def test_the_results_page_documents_the_columns_in_file_order():
    import re
    from pathlib import Path

    page = (Path(__file__).parent.parent / "docs" / "results.md").read_text()
    section = page.split("\n## ", 1)[0]  # the column table comes before the page's first section
    documented = re.findall(r"^\| `(\w+)` \|", section, re.M)
    assert tuple(documented) == COLUMNS


def test_a_cell_name_says_every_column_of_the_cell_key(tmp_path):
    """Two cells that differ in any key column never print under one name."""
    from sqabench.speed.results import cell_name

    (row,) = [r for r in read_rows(write_run(tmp_path / "r.csv")) if r["variant"] == "sqa" and r["seq_len"] == "1024"]
    other = {"variant": "6/2", "n_q_heads": "6", "n_kv_heads": "2", "window": "64", "preset": "wide",
             "n_layers": "2", "seq_len": "2048", "batch": "3", "dtype": "fp16", "mode": "train", "causal": "True",
             "kernel_requested": "flex", "device": "cpu", "new_tokens": "8", "cuda_graphs": "True",
             "scope": "block", "world_size": "4", "compile": "max-autotune", "cache": "cold"}  # fmt: skip
    assert set(other) == set(CELL_KEY)
    for column, value in other.items():
        assert cell_name({**row, column: value}) != cell_name(row), column
    assert cell_name(row).startswith("sqa paper n=1024 b=128 bf16 fwd encoder auto cuda heads 8/4 8 layers")
