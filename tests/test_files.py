"""sqabench/files.py, the helpers both wings write and read through: a file replaced in one step, the appending
writer, the one cache folder."""

from pathlib import Path

import pytest

from sqabench.files import CsvWriter, cache_dir, replacing, write_text


def test_a_replace_that_fails_leaves_the_old_file_and_no_scratch(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("old\n")
    with pytest.raises(RuntimeError), replacing(path) as scratch:
        scratch.write_text("half of the new")
        raise RuntimeError("interrupted")
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["r.csv"]
    write_text(path, "new\n")
    assert path.read_text() == "new\n" and [p.name for p in tmp_path.iterdir()] == ["r.csv"]


def test_a_closed_writer_writes_no_more_rows(tmp_path):
    """Ctrl-C closes the writer while the sweep's thread may still finish a cell: that row is never written."""
    writer = CsvWriter(tmp_path / "r.csv", ("a", "b"))
    writer.write({"a": 1, "b": 2})
    writer.close()
    writer.write({"a": 3, "b": 4})
    assert (tmp_path / "r.csv").read_text() == "a,b\n1,2\n" and writer.written == 1


def test_the_cache_folder_is_sqabench_cache_dir_else_xdg_else_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("SQABENCH_CACHE_DIR", raising=False)
    assert cache_dir() == tmp_path / "home" / ".cache" / "sqabench"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "sqabench"
    monkeypatch.setenv("SQABENCH_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_dir() == Path(tmp_path / "mine")


def test_two_ranks_checking_one_output_at_once_never_refuse_each_other(tmp_path, monkeypatch):
    """The ranks of a split run check --out at the same moment: one may create its probe between the other's
    look and its own create. Each probes with a file of its own, never the output itself (which a reader must
    never see empty), so neither is refused: here the other's create lands in this one's window."""
    from sqabench.files import check_output

    out = tmp_path / "cp.csv"
    out.write_text("")  # what the other rank made, between this rank's look and its create
    real = Path.exists
    monkeypatch.setattr(Path, "exists", lambda self: False if self == out else real(self))
    check_output(out, explicit=True)
    assert [p.name for p in tmp_path.iterdir()] == ["cp.csv"]  # this rank's probe is gone again
