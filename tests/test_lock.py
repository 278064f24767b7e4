"""The files layer's exclusive lock (``eval.files.ExclusiveLock``), with real second processes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT
from eval.files import ExclusiveLock, InputError, LockHeld, exit_status

HOLD = """
import sys, time
from pathlib import Path
from eval.files import ExclusiveLock
lock = ExclusiveLock(Path(sys.argv[1]), "the test file", command="holder --for the test").acquire()
print("locked", flush=True)
time.sleep(60)
"""


def hold_in_another_process(path: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], cwd=PROJECT_ROOT, text=True,
                               stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    assert process.stdout is not None and process.stdout.readline() == "locked\n"
    return process


def test_a_second_process_is_refused_at_once_with_one_line_naming_the_holder(tmp_path: Path) -> None:
    target = tmp_path / "cache.jsonl"
    holder = hold_in_another_process(target)
    try:
        start = time.monotonic()
        with pytest.raises(LockHeld) as refused:
            ExclusiveLock(target, "the test file").acquire()
        assert time.monotonic() - start < 1.0  # never waits
        message = str(refused.value)
        assert "\n" not in message and isinstance(refused.value, InputError)
        assert message.startswith("the test file is in use by pid ")
        assert f"pid {holder.pid} on " in message and "(holder --for the test)" in message
        assert str(target) + ".lock" in message
        assert refused.value.holder["pid"] == holder.pid
        info = json.loads((tmp_path / "cache.jsonl.lock").read_text())
        assert set(info) == {"pid", "host", "command", "since"}
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_killed_process_never_blocks(tmp_path: Path) -> None:
    target = tmp_path / "cache.jsonl"
    holder = hold_in_another_process(target)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert (tmp_path / "cache.jsonl.lock").is_file()  # the stale file stays; the kernel released the flock
    with ExclusiveLock(target) as lock:
        assert lock.held and json.loads(lock.lock_path.read_text())["pid"] == os.getpid()
    assert not lock.held and not lock.lock_path.exists()  # released: removed


def test_released_lock_can_be_taken_again_and_is_not_reentrant(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.jsonl"
    first = ExclusiveLock(target, "out").acquire()
    with pytest.raises(LockHeld, match=rf"^out is in use by pid {os.getpid()} "):
        ExclusiveLock(target, "out").acquire()  # a second lock in the same process is refused too
    first.release()
    first.release()  # twice is harmless
    with ExclusiveLock(target, "out"):
        pass


def test_a_refused_lock_is_one_error_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "x.jsonl"
    with ExclusiveLock(target, "x"):
        assert exit_status(lambda: ExclusiveLock(target, "x").acquire() and 0, "interrupted") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: x is in use by pid ") and err.count("\n") == 1
