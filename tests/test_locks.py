"""Writers of one output stay apart: the output lock between processes, a mark the first writer sets, and a
directory that replaces its previous version in one step."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from skdcgn.utils.atomic import atomic_directory, create_once, exchange
from skdcgn.utils.locks import LockHeld, OutputLock


@pytest.fixture
def holder(tmp_path):
    """Another process holding part 0 of the lock (POSIX locks never exclude their own process), until killed."""
    path = tmp_path / ".texture.lock"
    script = textwrap.dedent(f"""
        import sys, time
        from skdcgn.utils.locks import OutputLock
        lock = OutputLock({str(path)!r})
        lock.part(0)
        print("held", flush=True)
        time.sleep(60)
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    yield path, process
    process.kill()
    process.wait()


def test_a_part_excludes_itself_and_whole_runs_but_not_other_parts(holder):
    path, process = holder
    lock = OutputLock(path)
    with pytest.raises(LockHeld, match="part 0 is already running"):
        lock.part(0)
    with pytest.raises(LockHeld, match="another run or a part is writing it"):
        lock.whole()
    lock.part(1)
    lock.release()
    process.kill()
    process.wait()
    lock.whole()  # the kernel dropped the killed holder's lock: nothing to clean up


def test_the_first_writer_of_a_mark_wins_and_nothing_else_is_left(tmp_path):
    mark = tmp_path / "key"
    create_once(mark, "first")
    create_once(mark, "second")
    assert mark.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["key"]


def test_a_directory_replaces_its_previous_version_and_leaves_no_partial(tmp_path):
    output = tmp_path / "out"
    with atomic_directory(output) as partial:
        (partial / "old").write_text("1")
    with atomic_directory(output) as partial:
        (partial / "new").write_text("2")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and [p.name for p in output.iterdir()] == ["new"]


def test_exchange_swaps_two_directories(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "from-a").touch()
    assert exchange(a, b)  # Linux with renameat2, on the file systems the project runs on
    assert [p.name for p in b.iterdir()] == ["from-a"] and not any(a.iterdir())
