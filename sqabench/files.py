"""Files both wings write and read: a CSV appended one row at a time, one writer per results file, a file
replaced in one step, a CSV read back with its problems named, the output checked before any work, and the
one cache folder. No torch here.

The cache folder is ``$SQABENCH_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME/sqabench``, else
``~/.cache/sqabench``: measured ceilings, the flex shapes compiled, trained BPE tokenizers.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqabench.errors import ConfigError

CACHE_ENV = "SQABENCH_CACHE_DIR"


def cache_dir() -> Path:
    """The folder sqabench caches in (see the module's docstring); not created here."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sqabench"


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A scratch file beside ``path`` to write; when the block ends without error it replaces ``path`` in one
    step (a reader sees the old file or the new one, never half of one); on an error it is removed."""
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield scratch
        os.replace(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    """``text`` as the whole of ``path``, replaced in one step."""
    with replacing(path) as scratch:
        scratch.write_text(text)


def write_csv(path: Path, columns: tuple[str, ...], rows: Iterable[dict]) -> None:
    """``rows`` as the whole of ``path`` (header first), replaced in one step."""
    with replacing(path) as scratch, scratch.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path: Path, columns: tuple[str, ...], what: str, exact: bool = False) -> list[dict[str, str]]:
    """The rows of ``path``, a ``what`` (e.g. "results CSV") that must hold ``columns`` (``exact``: those and
    no others, in that order). Every problem is a one-line ``ConfigError`` naming the file, and the line
    where a row is cut short or runs long."""
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle, restkey="\0extra")
            header = tuple(reader.fieldnames or ())
            rows = list(reader)
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory, not a {what}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ConfigError(f"{path} cannot be read as a {what} ({error})") from None
    if not header:
        raise ConfigError(f"cannot read {path} as a {what}: it is empty")
    missing = [c for c in columns if c not in header]
    if missing:
        raise ConfigError(f"{path} is not a {what} of this sqabench: another schema, missing columns "
                          f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")  # fmt: skip
    if exact and header != columns:
        raise ConfigError(f"{path} has another schema (columns differ in order or extras); a file written by this "
                          "sqabench is needed")  # fmt: skip
    for line, row in enumerate(rows, start=2):
        if "\0extra" in row:
            raise ConfigError(f"{path} line {line} has more fields than the header's {len(header)}")
        short = [column for column, value in row.items() if value is None]
        if short:
            raise ConfigError(f"{path} line {line} is cut short: {len(header) - len(short)} of {len(header)} "
                              "fields (a truncated file?)")  # fmt: skip
    return rows


def header_of(path: Path) -> set[str]:
    """The columns a CSV's first line names (none when it cannot be read)."""
    try:
        with path.open(newline="") as handle:
            return set(next(csv.reader(handle), []))
    except (OSError, UnicodeDecodeError, csv.Error):
        return set()


class CsvWriter:
    """Appends one row at a time and flushes it, so that an interrupted run keeps every finished row.

    The file is created by the first row, not before: an interrupted run that finished nothing
    leaves no file behind. ``columns`` is the schema; a row with a column it lacks is a bug.
    """

    def __init__(self, path: Path, columns: tuple[str, ...]) -> None:
        import threading

        self.path = path
        self.columns = columns
        self.written = 0
        self.closed = False
        self._lock = threading.Lock()  # a sweep writes from its worker thread; Ctrl-C closes from the main one

    def close(self) -> None:
        """Write no more rows (a row being written is finished first)."""
        with self._lock:
            self.closed = True

    def write(self, row: dict) -> None:
        unknown = set(row) - set(self.columns)
        if unknown:
            raise ValueError(f"row has columns the schema lacks: {', '.join(sorted(unknown))}")
        with self._lock:
            if not self.closed:
                self._write(row)

    def _write(self, row: dict) -> None:
        new = not self.path.exists() or self.path.stat().st_size == 0
        if new:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns, lineterminator="\n")
            if new:
                writer.writeheader()
            writer.writerow({column: "" if row.get(column) is None else row[column] for column in self.columns})
            handle.flush()
            os.fsync(handle.fileno())
        self.written += 1


class RunLock:
    """One writer per results file: an exclusive lock on ``<file>.lock``, held for the whole run.

    A second run on the same file (a ``--resume`` started while the first still writes) is refused,
    naming the first. The lock file says who holds it and is removed on release.
    """

    def __init__(self, path: Path) -> None:
        self.path = path.with_name(path.name + ".lock")
        self.handle = None

    def __enter__(self) -> "RunLock":
        import fcntl
        import socket
        import sys
        from datetime import datetime, timezone

        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            handle = self.path.open("a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                handle.close()
                target = self.path.name.removesuffix(".lock")
                raise ConfigError(f"{target} is being written by another sqabench run ({holder}); wait for it to "
                                  "finish, or choose another --out") from None  # fmt: skip
            try:
                same = os.fstat(handle.fileno()).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:  # not a lock file that its holder removed while we waited
                break
            handle.close()
        handle.seek(0)
        handle.truncate()
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {started}: {' '.join(sys.argv[1:])[:200]}")
        handle.flush()
        self.handle = handle
        return self

    def __exit__(self, *exc) -> None:
        if self.handle is not None:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            self.handle.close()  # closing releases the lock
            self.handle = None


def writable_file(path: Path, option: str) -> None:
    """Refuse, before any work, a file ``option`` could not write: a directory, a missing or read-only folder,
    or a place where nothing can be created (/proc)."""
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a directory; give a file path")
    parent = path.parent
    if not parent.is_dir():
        raise ConfigError(f"{option} {path}: directory {parent} does not exist")
    if path.exists() and not path.is_file():
        raise ConfigError(f"{option} {path} is not a regular file")
    if path.exists() and not os.access(path, os.W_OK) or not path.exists() and not os.access(parent, os.W_OK):
        raise ConfigError(f"{option} {path} is not writable")
    if not path.exists():
        _try_create(path, option)


def writable_folder(folder: Path, option: str) -> None:
    """Refuse, before any work, a folder that files cannot be written to: a file, or one under a file, or in a
    place where nothing can be created (a probe file is made and removed in the nearest folder that exists)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{option} {folder}: {existing} is a file, not a directory")
    probe = existing / f".sqabench-probe-{os.getpid()}"
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"{option} {folder}: cannot write there: {err.strerror or err}") from None


def check_output(path: Path, explicit: bool, option: str = "--out") -> None:
    """Refuse, before any work, an output file that cannot be written. A default path (``explicit`` False)
    may sit in folders not made yet (results/ is made with the first row): what exists of them must be
    writable."""
    if path.exists() and path.is_dir():
        raise ConfigError(f"{option} {path} is a directory; give a .csv file path")
    parent = path.parent
    if not explicit:
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{option} {path}: directory {parent} does not exist")
    if path.exists() and not path.is_file():
        raise ConfigError(f"{option} {path} is not a regular file; give a .csv file path")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"{option} {path} is not writable")
    if not path.exists() and parent == path.parent:
        _try_create(path, option)


def _try_create(path: Path, option: str) -> None:
    """Create a file of this process's own beside ``path`` and remove it again: what access() cannot tell
    (/proc, /sys, a full disk's inode). Never ``path`` itself: the ranks of a split run check one output at
    once, and a reader must never see an empty results file."""
    probe = path.with_name(f".{path.name}.{os.getpid()}.probe")
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except OSError as err:
        raise ConfigError(f"{option} {path} cannot be created: {err.strerror}") from None
    probe.unlink()
