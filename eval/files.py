"""Reading and writing the files that runners and scorers exchange.

Every reader reports bad input as a :class:`Problem` naming the file, the line, the sample id and what is wrong, so a
long run can skip one bad record, count it and go on. Every writer of a final artifact writes atomically (temporary
file in the same folder, then rename), so a crash never leaves a half-written results file behind.
"""
from __future__ import annotations

import errno
import gzip
import hashlib
import json
import os
import shlex
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator


class InputError(ValueError):
    """Input that cannot be used at all (missing file, wrong format); the message names the file and the reason."""


@dataclass(frozen=True)
class Problem:
    """One bad record: where it is and why it was skipped (``skipped=False``: a notice about a record that is run all
    the same, e.g. an image outside the image folder)."""

    file: str
    line: int | None
    id: str | None
    reason: str
    skipped: bool = True

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        who = "" if self.id is None else f" (id {self.id})"
        return f"{where}{who}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        record = {"file": self.file, "line": self.line, "id": self.id, "reason": self.reason}
        return record if self.skipped else {**record, "skipped": False}


def sample_id(value: Any) -> str | None:
    """The id of a JSON record as text, the same however a tool wrote it: ``5``, ``5.0``, ``"5"``, ``" 5 "`` and
    ``"5.0"`` are all ``"5"``; ``None`` for what cannot be an id (missing, a boolean, a list, a fractional or
    non-finite number).

    >>> sample_id(5), sample_id(5.0), sample_id(" 5 "), sample_id("COCO_1.jpg"), sample_id(5.5), sample_id(True)
    ('5', '5', '5', 'COCO_1.jpg', None, None)
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        whole, dot, zeros = text.partition(".")
        return (whole if dot and whole.isdigit() and zeros and not zeros.strip("0") else text) or None
    return None


def record_key(value: Any) -> str:
    """The key a runner files a sample under: :func:`sample_id`, or the value as text where that gives none."""
    key = sample_id(value)
    return key if key is not None else str(value)


def report_problems(problems: list[Problem], limit: int = 20) -> None:
    """Print the first ``limit`` problems to stderr, and how many there were (all go into the output json)."""
    if not problems:
        return
    print(f"{len(problems)} problem(s):", file=sys.stderr)
    for problem in problems[:limit]:
        print(f"  {problem}", file=sys.stderr)
    if len(problems) > limit:
        print(f"  ... {len(problems) - limit} more in the output json", file=sys.stderr)


class NotJson(ValueError):
    """Text that is not strict JSON (see :func:`parse_json`)."""


def _no_constant(name: str) -> Any:
    raise NotJson(f"{name} is not a JSON value")


def _unpaired_surrogate(value: Any) -> str | None:
    """The first string of ``value`` (at any depth, keys included) that holds an unpaired UTF-16 surrogate (a ``\\ud800``
    escape: valid JSON, but no text: it cannot be written as UTF-8 again), shortened, or None."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return item.encode("utf-8", "backslashreplace").decode("ascii")[:60]
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def parse_json(text: str | bytes) -> Any:
    """``json.loads`` for inputs: strict JSON only. :class:`NotJson` (a ``ValueError``) for ``NaN`` / ``Infinity``
    (Python's extensions, which no strict reader takes back), a document nested too deeply to read, and a string with
    an unpaired surrogate escape; ``json.JSONDecodeError`` (also a ``ValueError``) for a syntax error."""
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise NotJson("nested too deeply to read") from None
    bad = _unpaired_surrogate(value)
    if bad is not None:
        raise NotJson(f"a string with an unpaired surrogate escape ({bad!r}) is not text")
    return value


def dumps_json(value: Any, indent: int | None = None) -> str:
    """JSON text of ``value`` for every file we write: strict JSON (``ValueError`` for NaN or infinity), UTF-8 text
    kept as it is."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, indent=indent)


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any] | Problem]]:
    """Yield ``(line_number, record)`` for each non-blank line; a line that is not a strict JSON object in UTF-8
    (bad bytes, a syntax error, NaN, a nesting too deep to read, an unpaired surrogate escape, not an object) yields
    a :class:`Problem` instead, so one bad line never stops a run."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            if number == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")  # a byte-order mark some editors write is not part of line 1
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield number, Problem(str(path), number, None, f"not UTF-8 text (byte 0x{raw[e.start]:02x} at "
                                                               f"column {e.start + 1})")
                continue
            if not line.strip():
                continue
            try:
                record = parse_json(line)
            except json.JSONDecodeError as e:
                yield number, Problem(str(path), number, None, f"not valid JSON ({e.msg} at column {e.colno})")
                continue
            except NotJson as e:
                yield number, Problem(str(path), number, None, f"not valid JSON ({e})")
                continue
            if not isinstance(record, dict):
                yield number, Problem(str(path), number, None, f"expected a JSON object, got {type(record).__name__}")
                continue
            yield number, record


def read_records(path: str | Path, problems: list[Problem]) -> list[tuple[int | None, dict[str, Any]]]:
    """Read a ``.jsonl`` file (one object per line) or a ``.json`` file (a list of objects).

    Returns ``(line_number, record)`` pairs (line numbers are ``None`` for ``.json`` lists, whose items are numbered
    from 1 in problem messages instead); bad records are appended to ``problems`` and skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    text_start = path.read_text(encoding="utf-8", errors="replace")[:4096].lstrip()
    if path.suffix == ".json" and text_start.startswith("["):
        try:
            items = parse_json(path.read_bytes())
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e
        except (NotJson, UnicodeDecodeError) as e:
            raise InputError(f"{path}: not valid JSON ({e})") from e
        records: list[tuple[int | None, dict[str, Any]]] = []
        for index, item in enumerate(items, start=1):
            if isinstance(item, dict):
                records.append((None, item))
            else:
                problems.append(Problem(str(path), None, None, f"item {index}: expected an object"))
        return records
    records = []
    for number, record in iter_jsonl(path):
        if isinstance(record, Problem):
            problems.append(record)
        else:
            records.append((number, record))
    return records


def read_json(path: str | Path) -> Any:
    """Read ``.json`` or ``.json.gz``; :class:`InputError` names the file when it cannot be read."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            return parse_json(f.read())
    except (OSError, ValueError, EOFError) as e:  # ValueError: NotJson, JSONDecodeError, UnicodeDecodeError
        raise InputError(f"{path}: cannot read JSON ({e})") from e


def manifest(ids: list[str], **about: Any) -> dict[str, Any]:
    """The ordered sample ids of a run and their sha256 (what ``--subset-manifest`` takes back), with ``about``."""
    return {**about, "count": len(ids), "sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(), "ids": ids}


def read_manifest(manifest_file: str | Path, dataset_type: str | None = None) -> list[str]:
    """The ordered ids of a manifest written by :func:`manifest`. Raises :class:`InputError` when the file is
    unreadable or has no list of ids, or (with ``dataset_type``) was written for another dataset type."""
    path = Path(manifest_file)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        ids = data["ids"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: not a subset manifest ({type(e).__name__}: {e})") from None
    if not isinstance(ids, list):
        raise InputError(f"{path}: not a subset manifest ('ids' is not a list)")
    kind = data.get("dataset_type")
    if dataset_type is not None and kind is not None and kind != dataset_type:
        raise InputError(f"{path}: a manifest of dataset type {kind!r}, not {dataset_type!r}")
    return [str(i) for i in ids]


def run_subset(answers_file: str | Path) -> set[str] | None:
    """The sample ids a runner chose for the run whose answers file is ``answers_file`` (its manifest beside it: a
    ``--limit`` trial or a short subset), or None when there is none (answers from another tool). Scorers expect
    answers for exactly these ids."""
    path = RunPaths.of_answers(answers_file).manifest
    return set(read_manifest(path)) if path.is_file() else None


def write_text_atomic(path: str | Path, text: str, keep_if_same: bool = False) -> None:
    """Write ``text`` to ``path`` atomically (temporary file in the same folder, fsync, rename). With
    ``keep_if_same``, a file that already holds ``text`` is left alone (its modification time says when its content
    last changed: what decides whether a scorer's output is older than it)."""
    path = Path(path)
    if keep_if_same:
        try:
            if path.stat().st_size == len(text.encode("utf-8")) and path.read_text(encoding="utf-8") == text:
                return
        except (OSError, UnicodeDecodeError):
            pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the permissions open() would
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    """Write ``obj`` as strict JSON (:func:`dumps_json`) to ``path`` atomically."""
    write_text_atomic(path, dumps_json(obj, indent) + "\n")


def _folder_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be created or written, or ``None``."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as e:
        return str(e.strerror or e)
    return None


def check_output_folder(folder: Path, flag: str = "--save-path") -> None:
    """Fail now, not after a long model load or scoring, when the output folder cannot be created or written
    (``InputError``, one line naming ``flag``)."""
    problem = _folder_problem(folder)
    if problem:
        raise InputError(f"cannot write to {folder}: {problem}; choose another {flag}")


def check_output_file(path: str | Path, flag: str = "--save_path") -> Path:
    """``path`` as a file that can be written atomically (its folder created and writable, the path not a
    folder); ``InputError`` otherwise."""
    path = Path(path)
    if path.is_dir():
        problem: str | None = "it is a folder"
    elif path.exists() and not path.is_file():
        problem = "it is not a regular file (a device or a pipe would be replaced)"
    else:
        problem = _folder_problem(path.parent)
    if problem:
        raise InputError(f"cannot write to {path}: {problem}; choose another {flag}")
    return path


def output_error(e: OSError, kept: str) -> InputError:
    """One line for an output that could not be written (``e``): what happened and what to do; ``kept`` says what
    survives (``"the answers written so far are kept"``). A full disk, a read-only or forbidden folder, and any
    other write error each get their own advice."""
    where = f" writing {e.filename}" if e.filename else ""
    if e.errno == errno.ENOSPC:
        return InputError(f"disk full{where}: {kept}; free space and rerun the same command to resume")
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return InputError(f"cannot write{where} ({e.strerror}): make the output folder writable and rerun to resume")
    return InputError(f"output error{where}: {e.strerror or e}; rerun the same command to resume")


def exit_status(body: Callable[[], int], interrupted: str) -> int:
    """The exit status of a command whose work is ``body``: its own status; bad input (:class:`InputError`, a
    refused lock included) one line ``error: ...`` on stderr and 2; an interruption (Ctrl-C) the line
    ``interrupted`` (or the KeyboardInterrupt's own message, when the code raised one that says more) and 130; never
    a traceback for either."""
    try:
        return body()
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(str(e) or interrupted, file=sys.stderr)
        return 130


class LockHeld(InputError):
    """The file is locked by another process; the message names it (pid, host, command, since when) in one line."""

    def __init__(self, message: str, holder: dict[str, Any] | None) -> None:
        super().__init__(message)
        self.holder = holder


class ExclusiveLock:
    """Keeps two processes from writing the same file at once: an exclusive ``fcntl.flock`` on ``<path>.lock``
    beside the protected ``path``.

    The holder writes its pid, host, command line and start time into the lock file; a second process is refused
    at once (:class:`LockHeld`, an :class:`InputError`, so a CLI prints it as one ``error:`` line) with a message
    that names the holder. The kernel releases the lock when its process ends, however it ends, so a lock left by a
    killed process never blocks; its stale lock file is simply taken over. The lock file is removed on release.
    A lock is not re-entrant: the same process taking it twice is refused too.

    >>> with ExclusiveLock(Path("out/cache.jsonl"), "the judge cache"):     # doctest: +SKIP
    ...     append_to_cache(...)
    """

    def __init__(self, path: str | Path, what: str | None = None, command: str | None = None) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.what = what or str(self.path)
        self.command = command if command is not None else shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "ExclusiveLock":
        """Take the lock or raise :class:`LockHeld` at once (never waits); returns ``self``."""
        import fcntl

        if self._fd is not None:
            raise LockHeld(f"{self.what} is already locked by this process ({self.lock_path})", None)
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                holder = self.holder()
                raise LockHeld(f"{self.what} is in use by {self.describe(holder)}: one process at a time; wait for "
                               f"it to end or stop it (lock file {self.lock_path})", holder) from None
            except BaseException:
                os.close(fd)
                raise
            try:  # the file may have been released and removed between open and flock: lock the one at the path
                same = os.path.samestat(os.fstat(fd), os.stat(self.lock_path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        about = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command[:500],
                 "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(about, ensure_ascii=False) + "\n").encode("utf-8"))
        self._fd = fd
        return self

    def release(self) -> None:
        """Remove the lock file and release the lock (nothing if not held)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            self.lock_path.unlink(missing_ok=True)
        finally:
            os.close(fd)  # closing the last descriptor releases the flock

    def holder(self) -> dict[str, Any] | None:
        """What the lock file says about its holder, or None (not written yet, unreadable)."""
        try:
            data = json.loads(self.lock_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    @staticmethod
    def describe(holder: dict[str, Any] | None) -> str:
        """``pid 123 on host (python -m eval.clair ...) since ...``, or ``another process`` when unknown."""
        if not holder:
            return "another process"
        text = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
        if holder.get("command"):
            text += f" ({' '.join(str(holder['command']).split())[:200]})"
        if holder.get("since"):
            text += f" since {holder['since']}"
        return text

    def __enter__(self) -> "ExclusiveLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def settings_changes(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(dotted key, before, after)`` for every setting that differs between two nested settings dicts, sorted.

    >>> settings_changes({"method": "avisc", "protocol": {"seed": 42}}, {"method": "avisc", "protocol": {"seed": 43}})
    [('protocol.seed', 42, 43)]
    """
    flat_before, flat_after = _flatten(before), _flatten(after)
    return [(key, flat_before.get(key), flat_after.get(key)) for key in sorted(set(flat_before) | set(flat_after))
            if flat_before.get(key) != flat_after.get(key)]


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@dataclass
class RunPaths:
    """Every file a runner writes, from ``save_path`` and ``experiment_name`` (the one home of these names: the
    scorers use it to find a run's manifest and results beside its answers, and to skip side files)."""

    folder: Path
    name: str

    @classmethod
    def of_answers(cls, answers: str | Path) -> "RunPaths":
        """The files of the run whose answers file is ``answers`` (``{name}.jsonl``)."""
        answers = Path(answers)
        return cls(answers.parent, answers.name.removesuffix(".jsonl"))

    @staticmethod
    def is_side_file(path: Path) -> bool:
        """Whether a ``.jsonl`` beside answers files is not one: the errors file, a shard or a temporary file."""
        return path.name.startswith(".") or path.name.endswith("_errors.jsonl")

    @property
    def answers(self) -> Path:
        return self.folder / f"{self.name}.jsonl"

    @property
    def results(self) -> Path:
        return self.folder / f"{self.name}_results.json"

    @property
    def manifest(self) -> Path:
        return self.folder / f"{self.name}_manifest.json"

    @property
    def config(self) -> Path:
        return self.folder / f"{self.name}_config.json"

    def metrics(self, scorer: str) -> Path:
        """The metrics file a scorer writes for these answers by default (``{name}_{scorer}.json``)."""
        return self.folder / f"{self.name}_{scorer}.json"

    @property
    def errors(self) -> Path:
        return self.folder / f"{self.name}_errors.jsonl"

    @property
    def kept(self) -> Path:
        """Answers of earlier runs for samples this run does not include (a smaller ``--limit``): kept out of the
        answers file, which holds exactly the run's samples, and reused when a later run includes them again."""
        return self.folder / f".{self.name}.kept.jsonl"

    def shard(self, kind: str, rank: int) -> Path:
        """Per-process file of a sharded run (``kind`` is ``answers`` or ``errors``)."""
        return self.folder / f".{self.name}.{kind}.rank{rank}.jsonl"

    def shards(self, kind: str) -> list[Path]:
        return sorted(self.folder.glob(f".{self.name}.{kind}.rank*.jsonl"))

    def all_outputs(self) -> list[Path]:
        fixed = [self.answers, self.results, self.manifest, self.config, self.errors, self.kept]
        return fixed + self.shards("answers") + self.shards("errors")
