"""The on-disk format of a run directory, and the only code that writes files atomically.

A training run directory (``adambnn train``, ``adambnn study``, ``adambnn demo``) looks like::

    RUN_DIR/
      adambnn-run.json         the marker: this project made the directory (MARKER_FILE)
      .adambnn.lock            pid and host of the process writing it (LOCK_FILE)
      config.json              the resolved TrainConfig (CONFIG_FILE)
      inputs.json              identity of the teacher file and the data (INPUTS_FILE)
      summary.json             every finished step's result, rewritten after each (SUMMARY_FILE)
      step1/, step2/           one directory per step of the schedule
        result.json            the finished step (RESULT_FILE)
        checkpoints/           tf.train checkpoints, to resume from (CHECKPOINTS_DIR)
        log.csv                Keras' CSVLogger (LOG_FILE)
        best.h5, final.h5      models (BEST_MODEL, FINAL_MODEL)
        analysis/              the paper's measurements (ANALYSIS_DIR; docs/analysis.md)
        tensorboard/analysis/  TensorBoard summaries of the same (TENSORBOARD_DIR)
      report/report.md         ``adambnn analyze`` (REPORT_DIR, REPORT_FILE)
    RUN_DIR/../teachers/       small teachers, cached across runs (TEACHERS_DIR)

Training (`adambnn_larq.training`) and the analysis callbacks (`adambnn_larq.callbacks`) write
it, the reports (`adambnn_larq.reports`) and the study (`adambnn_larq.study`) read it; all of
them take the names from here. Writes are atomic (`atomic_write_bytes`, `atomic_replace`):
readers, and a run resumed after a kill, see the old content or the new one, never a mix. The
per-step files are resumable (`StepCsv`, `EpochLog`): reopened on the same path they drop what
was recorded after the checkpoint the run resumed from.

No TensorFlow here (numpy only): the readers serve processes that never train.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime
import fcntl
import io
import json
import math
import os
import re
import socket
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from adambnn_larq.errors import OutputError, ReportError, RunDirError

# --------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------

CONFIG_FILE = "config.json"
#: Written by this project when it creates a directory it then owns (`claim_dir`).
MARKER_FILE = "adambnn-run.json"
#: Version of the directory layouts; a marker with a larger one was written by a newer version.
FORMAT_VERSION = 1
#: Held (flock) by the one process writing the directory (`dir_lock`).
LOCK_FILE = ".adambnn.lock"
#: The identity of what a run reads besides its configuration (teacher file, data).
INPUTS_FILE = "inputs.json"
SUMMARY_FILE = "summary.json"
RESULT_FILE = "result.json"
CHECKPOINTS_DIR = "checkpoints"
LOG_FILE = "log.csv"
BEST_MODEL = "best.h5"
FINAL_MODEL = "final.h5"
TEACHERS_DIR = "teachers"
REPORT_DIR = "report"
REPORT_FILE = "report.md"

# A step's analysis/ folder (docs/analysis.md describes every file).
ANALYSIS_DIR = "analysis"
TENSORBOARD_DIR = os.path.join("tensorboard", "analysis")
INITIAL_SIGNS_FILE = "initial_signs.npz"
LAYERS_FILE = "layers.json"
FF_STEPS_FILE = "ff_steps.csv"
C2I_FILE = "c2i.jsonl"
SATURATION_FILE = "saturation.jsonl"
WEIGHTS_FILE = "weights.jsonl"
WEIGHTS_DIR = "weights"
EPOCH_START_FILE = "epoch_start_weights.npz"
GRADIENTS_FILE = "gradients.jsonl"
GRADIENTS_DIR = "gradients"
OPTIMIZER_STEPS_FILE = "optimizer_steps.csv"

# A study folder (``adambnn study``).
STUDY_FILE = "study.md"
STUDY_JSON = "study.json"
DIVERGED_FILE = "diverged.txt"
TRAIN_LOG = "train.log"  # the output of a run trained in its own process (``--jobs N``)

# A demo folder (``adambnn demo``).
DEMO_TRAIN_DIR = "train"
DEMO_TFLITE = "model.tflite"
DEMO_BENCHMARK = "benchmark.json"
DEMO_SUMMARY = "demo_summary.json"


def epoch_archive(folder: str | os.PathLike, epoch: int) -> Path:
    """The per-epoch ``.npz`` of ``weights/`` or ``gradients/``."""
    return Path(folder) / f"epoch_{epoch:04d}.npz"


# --------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------


def _default_mode() -> int:
    """Permissions a plain open() would give (mkstemp's files are private, 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_replace(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends it becomes ``path``.

    Whatever the block writes to the temporary path (a file written by another library, e.g.
    Keras' ``model.save``) replaces ``path`` in one rename; if the block raises, the temporary
    file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(suffix=suffix, dir=path.parent, prefix=".tmp-")
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, _default_mode())
        _fsync_file(temporary)  # the content reaches the disk before the name points at it
        replace_durably(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _fsync_file(path: str | os.PathLike) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def replace_durably(source: str | os.PathLike, destination: str | os.PathLike) -> None:
    """``os.replace`` then fsync of the directory, so that the rename survives a power cut."""
    os.replace(source, destination)
    # A file system without directory fsync: the rename is still atomic.
    with contextlib.suppress(OSError):
        _fsync_file(Path(destination).parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so readers see the old or the new content, never a mix."""
    with atomic_replace(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def write_all_or_nothing(contents: Mapping[Path, bytes]) -> list[Path]:
    """Write each file atomically, in order; if one cannot be written, remove those written
    before it, so that a command leaves all its outputs or none.

    Raises:
        OutputError: naming the file that could not be written.
    """
    done: list[Path] = []
    for path, content in contents.items():
        try:
            atomic_write_bytes(path, content)
        except OSError as error:
            for written in done:
                written.unlink(missing_ok=True)
            raise OutputError(f"cannot write {path}: {error.strerror or error}") from error
        done.append(path)
    return done


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see `atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode())


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """``arrays`` as the bytes of an ``.npz`` file (to write with `atomic_write_bytes`)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------
# Outputs checked before the work that fills them
# --------------------------------------------------------------------------------------


def _check_can_create_in(directory: Path, what: str, shown: Path) -> None:
    """Fail unless a file can be created in ``directory`` (or in the directories that would be
    made for it); creates nothing that stays."""
    current = directory
    # Path.exists() is False below a regular file ("file/x"): climb to what really exists.
    while not os.path.lexists(current) and current.parent != current:
        current = current.parent
    if not current.is_dir():
        raise OutputError(f"cannot write {what} {shown}: {current} is a file, not a directory")
    try:
        handle, probe = tempfile.mkstemp(dir=current, prefix=".tmp-probe-")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        reason = error.strerror or str(error)
        raise OutputError(f"cannot write {what} {shown}: {reason} ({current})") from error


def check_writable_file(
    path: str | os.PathLike, *, what: str = "output", suffixes: tuple[str, ...] = ()
) -> Path:
    """Fail at once, before any long work, if the file ``path`` could not be written.

    Nothing is created: the nearest existing directory on the way to ``path`` must be a
    writable directory (checked by creating and removing a probe file in it).

    Arguments:
        path: the file to be written later (e.g. with `atomic_write_bytes`).
        what: how the message names it (e.g. ``"--report"``).
        suffixes: if given, the file name must end in one of these.

    Returns:
        ``path`` as a `Path`.

    Raises:
        OutputError: one line naming the path and the reason.
    """
    path = Path(path)
    if suffixes and path.suffix not in suffixes:
        raise OutputError(f"{what} {path} must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise OutputError(f"cannot write {what} {path}: it is a directory")
    _check_can_create_in(path.parent, what, path)
    return path


def check_writable_dir(path: str | os.PathLike, *, what: str = "output directory") -> Path:
    """Fail at once if files could not be written into the directory ``path`` (made if
    missing); like `check_writable_file`, nothing is created.

    Raises:
        OutputError: one line naming the path and the reason.
    """
    path = Path(path)
    if os.path.lexists(path) and not path.is_dir():
        raise OutputError(f"cannot write {what} {path}: it is a file, not a directory")
    _check_can_create_in(path, what, path)
    return path


def _identity(path: Path) -> tuple:
    """What makes two paths one file: device and inode when it exists (hard links, symlinks),
    else the resolved path."""
    try:
        status = os.stat(path)
    except OSError:
        return ("path", os.path.realpath(path))
    return ("inode", status.st_dev, status.st_ino)


def check_distinct(
    outputs: dict[str, str | os.PathLike | None],
    inputs: dict[str, str | os.PathLike | None] | None = None,
) -> None:
    """Fail unless every output is its own file, none of them one of the inputs.

    Arguments:
        outputs: how the message names each output (e.g. ``"--report"``) -> its path (None:
            not asked for).
        inputs: the same for the files the command reads.

    Raises:
        OutputError: one line naming both paths.
    """
    seen: dict[tuple, tuple[str, Path]] = {}
    for what, path in (inputs or {}).items():
        if path is not None:
            seen.setdefault(_identity(Path(path)), (f"the input {what}", Path(path)))
    for what, path in outputs.items():
        if path is None:
            continue
        identity = _identity(Path(path))
        if identity in seen:
            other, other_path = seen[identity]
            raise OutputError(
                f"{what} {path} is the same file as {other} {other_path}: it would be "
                "overwritten; choose another path"
            )
        seen[identity] = (what, Path(path))


# --------------------------------------------------------------------------------------
# Ownership: the marker, the lock, stale temporary files
# --------------------------------------------------------------------------------------


def claim_dir(
    path: str | os.PathLike,
    *,
    kind: str,
    adopt: Callable[[Path], str | None] | None = None,
    what: str = "--run-dir",
) -> Path:
    """Make ``path`` a directory this project owns, or check that it already is one.

    A missing or empty directory is created and marked (`MARKER_FILE`: format version, kind,
    creation time). A marked one of the same ``kind`` is accepted. Anything else is refused
    and left untouched, like git refusing to clone into a non-empty directory: a mistyped
    ``--run-dir`` must not lose the user's files.

    Arguments:
        path: the directory.
        kind: what it holds ("train", "demo", "study"); a marker of another kind is refused.
        adopt: for a non-empty directory without a marker: returns why it is one written by an
            earlier version of this project (then it is marked and used, saying so), or None.
        what: how messages name it.

    Raises:
        RunDirError: not this project's, another kind, or a newer format; the message says why.
    """
    path = Path(path)
    marker = path / MARKER_FILE
    if os.path.lexists(marker):
        record = read_json(marker, error=RunDirError)
        version, found = record.get("format"), record.get("kind")
        if not isinstance(version, int) or not isinstance(found, str):
            raise RunDirError(f"{marker}: fields 'format' (int) and 'kind' (str) are required")
        if version > FORMAT_VERSION:
            raise RunDirError(
                f"{path} was written by a newer adambnn-larq (format {version}, this one reads "
                f"{FORMAT_VERSION}): upgrade, or choose another {what}"
            )
        if found != kind:
            raise RunDirError(
                f"{path} is a {found} directory, not a {kind} directory; choose another {what}"
            )
        return path
    if os.path.lexists(path) and not path.is_dir():
        raise RunDirError(f"{what} {path} is a file, not a directory")
    if path.is_dir() and any(path.iterdir()):
        reason = adopt(path) if adopt is not None else None
        if reason is None:
            raise RunDirError(
                f"{what} {path} is not empty and was not made by adambnn (no {MARKER_FILE}): "
                f"refusing to write into it, nothing was changed; choose a new or empty {what}"
            )
        print(f"{path}: {reason}; adopting it ({MARKER_FILE} written)", flush=True)
    path.mkdir(parents=True, exist_ok=True)
    record = {
        "format": FORMAT_VERSION,
        "kind": kind,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "by": "adambnn-larq",
    }
    atomic_write_text(marker, json.dumps(record, indent=2) + "\n")
    return path


@contextlib.contextmanager
def dir_lock(
    path: str | os.PathLike, *, what: str = "run directory", wait: bool = False
) -> Iterator[None]:
    """Hold ``path``'s lock while the block runs: a second process is refused at once, or,
    with ``wait``, waits until the first releases it (saying whom it waits for).

    The lock is an ``flock`` on `LOCK_FILE`, which records the holder's pid and host for the
    message. The kernel releases it when its process dies, so the lock of a killed run never
    blocks: the next run takes it over and says so. The file stays (emptied) after the block:
    removing it would let two processes lock two different files.

    Raises:
        RunDirError: another process holds the lock (its pid and host are named; not with
            ``wait``).
    """
    lock_path = Path(path) / LOCK_FILE
    descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            holder = _lock_holder(descriptor)
            if wait:
                print(f"{path}: waiting for {holder}, which is writing it", flush=True)
                fcntl.flock(descriptor, fcntl.LOCK_EX)
            else:
                raise RunDirError(
                    f"{what} {path} is being written by another process ({holder}, lock "
                    f"{lock_path}): wait for it to finish or choose another directory"
                ) from error
        except OSError as error:  # e.g. a file system without locks
            raise RunDirError(
                f"cannot lock {what} {path} ({error.strerror or error}): its file system does "
                "not support file locks; use a local directory"
            ) from error
        previous = _lock_holder(descriptor, default="")
        if previous:
            print(f"{path}: taking over the lock of {previous}, which is no longer running")
        os.ftruncate(descriptor, 0)
        os.pwrite(
            descriptor, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode(), 0
        )
        os.fsync(descriptor)
        try:
            yield
        finally:
            os.ftruncate(descriptor, 0)
    finally:
        os.close(descriptor)  # releases the flock


def _lock_holder(descriptor: int, default: str = "an unknown process") -> str:
    raw = os.pread(descriptor, 4096, 0)
    try:
        record = json.loads(raw)
        return f"process {int(record['pid'])} on {record['host']}"
    except (ValueError, TypeError, KeyError):
        return default


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files (``.tmp-*``) that a killed run left under ``path``.

    Only for a directory whose lock this process holds: no other writer's temporary file
    can then be in flight (the scratch folders of a multi-worker run's other workers, which
    write without the lock, are skipped). Returns what was removed.
    """
    removed = []
    for temporary in Path(path).rglob(".tmp-*"):
        if any(part.startswith(".worker-") for part in temporary.parts):
            continue
        if temporary.is_file() or temporary.is_symlink():
            temporary.unlink(missing_ok=True)
            removed.append(temporary)
    return removed


# --------------------------------------------------------------------------------------
# Resumable writers (the analysis callbacks' per-step and per-epoch files)
# --------------------------------------------------------------------------------------


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return repr(float(value))


class StepCsv:
    """A per-step CSV keyed by its first column (iteration), appended during training."""

    def __init__(self, path: Path, header: list[str]):
        self.path = path
        self.header = header
        self._file: TextIO | None = None
        self._writer: Any = None  # a csv writer (its type is private to _csv)

    def open(self, up_to_iteration: int) -> list[list[str]]:
        """Keep the rows with iteration <= ``up_to_iteration``, open for appending, return them."""
        rows: list[list[str]] = []
        rewrite = True
        if self.path.exists():
            with open(self.path, newline="") as file:
                reader = csv.reader(file)
                header = next(reader, None)
                if header is not None and header != self.header:
                    raise ValueError(
                        f"{self.path}: its columns ({len(header)}) belong to another model or "
                        f"layer selection than this run ({len(self.header)}); use another "
                        "log_dir or delete the file"
                    )
                total = 0
                for row in reader:
                    total += 1
                    # A run killed while writing leaves a truncated last line: drop it.
                    if (
                        len(row) == len(self.header)
                        and row[0].isdigit()
                        and int(row[0]) <= up_to_iteration
                    ):
                        rows.append(row)
                rewrite = header is None or total != len(rows)
        if rewrite:
            text = io.StringIO()
            writer = csv.writer(text)
            writer.writerow(self.header)
            writer.writerows(rows)
            atomic_write_text(self.path, text.getvalue())
        self._file = open(self.path, "a", newline="")  # noqa: SIM115 (closed in close())
        self._writer = csv.writer(self._file)
        return rows

    def reopen(self) -> None:
        """Append again after `close`, trusting the rows written by this object."""
        self._file = open(self.path, "a", newline="")  # noqa: SIM115 (closed in close())
        self._writer = csv.writer(self._file)

    def write(self, values: Sequence[Any]) -> None:
        self._writer.writerow([_format(value) for value in values])

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class EpochLog:
    """Per-epoch JSON lines, one record per completed-epoch count, rewritten atomically."""

    def __init__(self, path: Path):
        self.path = path
        self.records: list[dict] = []

    def load(self, up_to_iteration: int) -> None:
        self.records = []
        if not self.path.exists():
            return
        kept = []
        lines = self.path.read_text().splitlines()
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:  # a line cut short by a kill
                continue
            if isinstance(record, dict) and record.get("iteration", 0) <= up_to_iteration:
                kept.append(record)
        self.records = kept
        if len(kept) != len(lines):
            self._write()

    def has_iteration(self, iteration: int) -> bool:
        return any(record["iteration"] == iteration for record in self.records)

    def put(self, record: dict) -> None:
        self.records = [r for r in self.records if r["epoch"] != record["epoch"]] + [record]
        self.records.sort(key=lambda r: r["epoch"])
        self._write()

    def _write(self) -> None:
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.records))


# --------------------------------------------------------------------------------------
# Readers (ReportError names the file and what is wrong with it)
# --------------------------------------------------------------------------------------


#: Bounds of the JSON files read: far above what this project writes (the largest, a study's
#: study.json, is kilobytes), low enough that a damaged or hostile file is refused before it is
#: parsed (Python's parser recurses once per nesting level).
MAX_JSON_BYTES = 64 * 2**20
MAX_JSON_DEPTH = 64
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_TOO_LARGE = f"larger than {MAX_JSON_BYTES // 2**20} MiB, not a file of this project"


def _json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text`` (brackets in strings ignored)."""
    depth = deepest = 0
    for bracket in _NOT_BRACKET.sub("", _JSON_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def parse_json(
    raw: bytes,
    where: str,
    *,
    expect: type | None = dict,
    error: type[Exception] = ReportError,
) -> Any:
    """Parse ``raw`` as bounded JSON; any problem is one line naming ``where``.

    Arguments:
        raw: the bytes (UTF-8).
        where: the file (and line), for messages.
        expect: the type the top-level value must have (None: any).
        error: the `AdambnnError` subclass raised.

    Raises:
        error: larger than `MAX_JSON_BYTES`, not UTF-8, nested deeper than
            `MAX_JSON_DEPTH`, not JSON, or not of type ``expect``.
    """
    if len(raw) > MAX_JSON_BYTES:
        raise error(f"{where}: {_TOO_LARGE}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as problem:
        raise error(f"{where}: not UTF-8 text (byte {problem.start})") from None
    if _json_depth(text) > MAX_JSON_DEPTH:
        raise error(
            f"{where}: nested deeper than {MAX_JSON_DEPTH} levels, not a file of this project"
        )
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as problem:
        reason = str(problem).splitlines()[0] if str(problem) else type(problem).__name__
        raise error(f"{where}: not valid JSON ({reason})") from None
    if expect is not None and not isinstance(value, expect):
        names: dict[type, str] = {dict: "object", list: "array"}
        wanted = names.get(expect, expect.__name__)
        raise error(f"{where}: expected a JSON {wanted}, got a JSON {type(value).__name__}")
    return value


def _read_bounded(path: Path, error: type[Exception]) -> bytes:
    try:
        with open(path, "rb") as file:
            raw = file.read(MAX_JSON_BYTES + 1)
    except OSError as problem:
        raise error(f"{path}: cannot be read ({problem.strerror or problem})") from None
    if len(raw) > MAX_JSON_BYTES:
        raise error(f"{path}: {_TOO_LARGE}")
    return raw


def read_json(
    path: str | os.PathLike, *, expect: type | None = dict, error: type[Exception] = ReportError
) -> Any:
    """Read a JSON file of a run directory: bounded in size and depth, UTF-8, of type
    ``expect``; a damaged file is a one-line ``error`` naming it (see `parse_json`)."""
    return parse_json(_read_bounded(Path(path), error), str(path), expect=expect, error=error)


def read_jsonl(path: Path) -> list[dict]:
    """The records (objects) of a JSON-lines file ([] if it does not exist), read like
    `read_json`."""
    if not path.exists():
        return []
    raw = _read_bounded(path, ReportError)
    records = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        records.append(parse_json(line, f"{path}, line {number}"))
    return records


def read_csv(path: Path) -> dict[str, np.ndarray] | None:
    """Columns of a callback CSV as float arrays (empty cells are NaN); None if missing."""
    if not path.exists():
        return None
    with open(path, newline="") as file:
        reader = csv.reader(file)
        header = next(reader, None)
        if header is None:
            return None
        rows = [row for row in reader if len(row) == len(header)]
    try:
        values = np.array(
            [[float(cell) if cell else math.nan for cell in row] for row in rows], dtype=np.float64
        ).reshape(len(rows), len(header))
    except ValueError as error:
        raise ReportError(f"{path}: non-numeric value ({error})") from error
    return {name: values[:, index] for index, name in enumerate(header)}


def read_npz(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of an ``.npz`` file (no pickles); None if it does not exist."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise ReportError(f"{path}: not a readable .npz file ({error})") from error


# --------------------------------------------------------------------------------------
# A whole run, as the reports and the study read it
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class StepData:
    """The analysis files of one training step."""

    name: str
    directory: Path
    info: dict
    layers: list[dict]
    ff: dict[str, np.ndarray] | None
    c2i: list[dict]
    saturation: list[dict]
    weights: list[dict]
    gradients: list[dict]
    optimizer_steps: dict[str, np.ndarray] | None

    @property
    def analysis_dir(self) -> Path:
        return self.directory / ANALYSIS_DIR

    @property
    def epochs(self) -> int:
        """Completed epochs recorded by the callbacks."""
        counts = [r["epoch"] for r in self.c2i + self.saturation + self.weights + self.gradients]
        if self.ff is not None and len(self.ff["epoch"]):
            counts.append(int(self.ff["epoch"].max()))
        return max(counts, default=0)

    @property
    def layer_sizes(self) -> dict[str, int]:
        return {entry["name"]: int(entry["size"]) for entry in self.layers}

    def weights_archive(self, epoch: int) -> dict[str, np.ndarray] | None:
        return read_npz(epoch_archive(self.analysis_dir / WEIGHTS_DIR, epoch))


@dataclasses.dataclass
class RunData:
    """One run directory: its ``summary.json`` and the data of each step."""

    directory: Path
    label: str
    summary: dict
    steps: list[StepData]


def load_run(run_dir: str | os.PathLike, label: str | None = None) -> RunData:
    """Read a run directory written by the training commands.

    Arguments:
        run_dir: directory with ``summary.json`` and one subdirectory per step.
        label: name in plots and tables (default: the summary's ``recipe`` or the directory
            name).

    Returns:
        The `RunData`.

    Raises:
        ReportError: a missing or malformed file or field (named in the message).
    """
    directory = Path(run_dir)
    summary_path = directory / SUMMARY_FILE
    if directory.exists() and not directory.is_dir():
        raise ReportError(
            f"{directory} is a file, not a run directory (the directory `adambnn train` writes, "
            "with summary.json)"
        )
    if not directory.is_dir():
        raise ReportError(f"run directory not found: {directory}")
    if not summary_path.is_file():
        raise ReportError(f"{summary_path} not found: is {directory} a training run directory?")
    summary = read_json(summary_path)
    if not isinstance(summary, dict):
        raise ReportError(f"{summary_path}: expected a JSON object")
    steps_info = summary.get("steps")
    if not isinstance(steps_info, list) or not steps_info:
        raise ReportError(f"{summary_path}: field 'steps' must be a non-empty list")
    steps = []
    root = directory.resolve()
    for index, info in enumerate(steps_info):
        where = f"{summary_path}: steps[{index}]"
        if not isinstance(info, dict) or not isinstance(info.get("dir"), str):
            raise ReportError(f"{where}: field 'dir' (the step's directory) is missing")
        step_dir = (directory / info["dir"]).resolve()
        if root != step_dir and root not in step_dir.parents:
            raise ReportError(f"{where}: 'dir' {info['dir']!r} points outside the run directory")
        analysis_dir = step_dir / ANALYSIS_DIR
        if not analysis_dir.is_dir():
            raise ReportError(
                f"{analysis_dir} not found: was step {info.get('name', index + 1)!r} trained "
                "with the analysis callbacks (adambnn_larq.callbacks.paper_callbacks)?"
            )
        layers_path = analysis_dir / LAYERS_FILE
        table = read_json(layers_path) if layers_path.exists() else {}
        layers = table.get("layers") if isinstance(table, dict) else None
        if not isinstance(layers, list) or not all(
            isinstance(e, dict) and {"name", "size"} <= set(e) for e in layers
        ):
            if layers_path.exists():
                raise ReportError(f"{layers_path}: field 'layers' must list {{name, size}} objects")
            layers = []
        steps.append(
            StepData(
                name=str(info.get("name", f"step{index + 1}")),
                directory=step_dir,
                info=info,
                layers=layers,
                ff=read_csv(analysis_dir / FF_STEPS_FILE),
                c2i=read_jsonl(analysis_dir / C2I_FILE),
                saturation=read_jsonl(analysis_dir / SATURATION_FILE),
                weights=read_jsonl(analysis_dir / WEIGHTS_FILE),
                gradients=read_jsonl(analysis_dir / GRADIENTS_FILE),
                optimizer_steps=read_csv(analysis_dir / OPTIMIZER_STEPS_FILE),
            )
        )
    default_label = summary.get("recipe") or directory.name
    return RunData(directory, label or str(default_label), summary, steps)


# --------------------------------------------------------------------------------------
# Summary numbers
# --------------------------------------------------------------------------------------
