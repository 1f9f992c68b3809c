"""pynish.Executor (issue 17): a concurrent.futures.Executor whose every task is its own limited, supervised tree."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pynish_testutil as u

pytestmark = pytest.mark.pynish_only

if not u.IS_PYNISHER:
    import pynish

SCRIPT = u.HERE / "scripts" / "executor_ctrl_c.py"


# ---------------------------------------------------------------- workloads (run in the tasks)


def segfault():
    import ctypes

    ctypes.string_at(0)


def wait_for_file(path, piddir=None, timeout=30.0):
    """Announce, then wait until path exists (the test's go signal); return the pid."""
    pid = u.announce(piddir) if piddir is not None else os.getpid()
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return "timed out"
        time.sleep(0.01)
    return pid


def count_running(rundir, peak_file, nbytes, hold_s):
    """Marks itself running in rundir, records how many were running at once, holds nbytes for hold_s."""
    mine = Path(rundir, f"{os.getpid()}.run")
    mine.write_text("")
    seen = len(list(Path(rundir).glob("*.run")))
    Path(peak_file + f".{os.getpid()}").write_text(str(seen))
    size = u.allocate(nbytes, hold=hold_s)
    seen = max(seen, len(list(Path(rundir).glob("*.run"))))
    Path(peak_file + f".{os.getpid()}").write_text(str(seen))
    mine.unlink()
    return size


def pynish_ancestors():
    """How many pynish supervisors this process runs under (its ancestors' executables)."""
    count, pid = 0, os.getppid()
    while pid > 1:
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            break
        count += os.path.basename(exe) == "pynish"
        pid = u.ppid(pid) or 0
    return count


def with_clashing_names(wall_time, memory):
    return (wall_time, memory)


def loaded(name):
    return name in sys.modules


# ---------------------------------------------------------------- the acceptance batch


def test_mixed_batch_fails_only_its_own_futures(tmp_path, heavy_memory):
    """20 tasks on 4 workers, 200 MB: 5 values, 5 wall timeouts (5 s, their own limit) with setsid grandchildren,
    5 trees of 4x100 MB multiprocessing workers, 5 ValueErrors. Every future right, with its report; nothing left.
    The executor's own wall time is a wide backstop: under a loaded CI machine a tree of four fresh workers took
    over 2 s to reach its memory limit, which must not turn its verdict into a timeout."""
    dirs = {}
    started = time.monotonic()
    timing_out = pynish.limit(u.setsid_grandchild, memory=(200, "MB"), wall_time=5)
    with pynish.Executor(4, memory=(200, "MB"), wall_time=60) as ex:
        futures = []
        for i in range(5):
            for kind in ("value", "wall", "memory", "raise"):
                d = dirs[(kind, i)] = tmp_path / f"{kind}{i}"
                d.mkdir()
                if kind == "value":
                    f = ex.submit(u.identity, i)
                elif kind == "wall":
                    f = ex.submit(timing_out, d)
                elif kind == "memory":
                    f = ex.submit(u.workers_holding, 4, 100 * 2**20, d)
                else:
                    f = ex.submit(u.raise_value_error, f"bad {i}")
                futures.append((kind, i, f))
        for kind, i, f in futures:
            if kind == "value":
                assert f.result(timeout=60) == i
                assert f.report.verdict == "completed"
            elif kind == "wall":
                with pytest.raises(pynish.WallTimeoutException):
                    f.result(timeout=60)
                assert f.report.verdict == "wall_time"
            elif kind == "memory":
                with pytest.raises(pynish.MemoryLimitException):
                    f.result(timeout=60)
                assert f.report.verdict == "memory"
            else:
                with pytest.raises(ValueError, match=f"bad {i}"):
                    f.result(timeout=60)
                assert f.report.verdict == "completed"
    took = time.monotonic() - started
    announced = [p for d in dirs.values() for p in u.pids_in(d)]
    assert len([p for k, d in dirs.items() if k[0] == "wall" for p in u.pids_in(d)]) == 10  # task + grandchild
    left = u.wait_gone(announced, timeout=1)
    u.kill_all(left)
    assert left == [], "a process of a finished task's tree was left"
    # 4 workers: 5 wall-limited tasks at ~5.5 s (limit, grace) each take two rounds; a guard against a batch that
    # waits on a dead worker, generous for a loaded machine (the timing itself is the benchmark's).
    assert took < 60, f"the batch took {took:.1f}s"
    print(f"mixed batch of 20 on 4 workers: {took:.2f}s")


def test_a_submitted_limit_runs_under_its_own_limits():
    with pynish.Executor(2, wall_time=60, memory=(500, "MB")) as ex:
        f = ex.submit(pynish.limit(u.sleep_for, wall_time=1), 30)
        with pytest.raises(pynish.WallTimeoutException):
            f.result(timeout=30)
        assert f.report.limits.wall_time_s == 1
        assert f.report.limits.memory_bytes is None  # not the executor's 500 MB
        # Its own limits free the function's keyword names: these reach the function.
        f = ex.submit(pynish.limit(with_clashing_names, wall_time=5), wall_time="w", memory="m")
        assert f.result(timeout=30) == ("w", "m")
        # Not nested under a second supervisor: one pynish above the function, as for a plain task.
        assert ex.submit(pynish.limit(pynish_ancestors, wall_time=5)).result(timeout=30) == 1
        assert ex.submit(pynish_ancestors).result(timeout=30) == 1


def test_cancel_of_a_running_task_ends_its_tree(piddir):
    with pynish.Executor(1, wall_time=60) as ex:
        f = ex.submit(u.stubborn_tree, piddir)
        queued = ex.submit(u.identity, "next")
        pids = u.wait_for_files(piddir, 2)
        assert f.running()
        assert f.cancel() is True
        assert f.cancelled() and f.done()
        with pytest.raises(cf.CancelledError):
            f.result()
        assert u.wait_gone(pids, timeout=10) == [], "cancel() left the task's tree running"
        # The worker goes on with the queue.
        assert queued.result(timeout=30) == "next"


def test_a_segfaulting_task_fails_alone_and_the_executor_goes_on():
    with pynish.Executor(2, wall_time=30) as ex:
        crashed = ex.submit(segfault)
        with pytest.raises(pynish.PynisherException, match="SIGSEGV"):
            crashed.result(timeout=30)
        assert crashed.report.signal == "SIGSEGV"
        assert list(ex.map(u.identity, range(6))) == list(range(6))


def test_memory_budget_runs_no_more_than_fit(tmp_path, heavy_memory):
    """4 tasks of 300 MB under a 600 MB budget, on 4 workers: never more than 2 at once."""
    rundir = tmp_path / "running"
    rundir.mkdir()
    peak = str(tmp_path / "peak")
    with pynish.Executor(4, memory=(300, "MB"), memory_budget=(600, "MB"), wall_time=60) as ex:
        futures = [ex.submit(count_running, rundir, peak, 100 * 2**20, 1.0) for _ in range(4)]
        assert [f.result(timeout=60) for f in futures] == [100 * 2**20] * 4
    seen = [int(p.read_text()) for p in tmp_path.glob("peak.*")]
    assert len(seen) == 4
    assert max(seen) <= 2, f"more than 2 tasks of 300 MB ran at once under 600 MB: {seen}"


def test_memory_budget_refuses_a_task_over_it_at_submit():
    with pynish.Executor(2, memory_budget=(600, "MB")) as ex:
        with pytest.raises(ValueError, match="memory_budget"):
            ex.submit(pynish.limit(u.identity, memory=(1, "GB")), 1)
        with pytest.raises(ValueError, match="memory limit"):
            ex.submit(u.identity, 1)  # no memory limit at all: it cannot be counted
        assert ex.submit(pynish.limit(u.identity, memory=(100, "MB")), 1).result(timeout=30) == 1
    with pytest.raises(ValueError, match="memory_budget"):
        pynish.Executor(2, memory=(1, "GB"), memory_budget=(600, "MB"))


def test_shutdown_cancel_futures_cancels_the_queue_and_finishes_the_running(tmp_path, piddir):
    go = tmp_path / "go"
    ex = pynish.Executor(1, wall_time=60)
    running = ex.submit(wait_for_file, str(go), piddir)
    queued = [ex.submit(u.identity, i) for i in range(3)]
    u.wait_for_files(piddir, 1)
    ex.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in queued)
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(u.identity, 1)
    go.write_text("")
    assert running.result(timeout=30) == u.pids_in(piddir)[0]
    ex.shutdown(wait=True)


def test_leaving_with_on_an_exception_ends_every_running_tree(tmp_path):
    dirs = [tmp_path / f"t{i}" for i in range(2)]
    for d in dirs:
        d.mkdir()
    with pytest.raises(RuntimeError, match="caller failed"):
        with pynish.Executor(2, wall_time=60) as ex:
            futures = [ex.submit(u.stubborn_tree, d) for d in dirs]
            queued = ex.submit(u.identity, 1)
            for d in dirs:
                u.wait_for_files(d, 2)
            raise RuntimeError("caller failed")
    pids = [p for d in dirs for p in u.pids_in(d)]
    assert len(pids) == 4
    assert u.wait_gone(pids, timeout=1) == [], "leaving the with block left a task's tree running"
    assert all(f.cancelled() for f in futures) and queued.cancelled()


@pytest.mark.parametrize("mode", ["with", "bare"])
def test_ctrl_c_in_the_caller_ends_every_running_tree(tmp_path, mode):
    """In a with block (KeyboardInterrupt caught), and without one (it ends the program; the queue is dropped)."""
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(tmp_path), mode],
        env=u.script_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while not all((tmp_path / f"t{i}" / "ready").exists() for i in range(2)):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the tasks never got ready"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal does
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the caller did not end after Ctrl-C\n{out}\n{err}")
    if mode == "with":
        assert proc.returncode == 3, (out, err)
        assert "RESULT KeyboardInterrupt" in out
    else:
        assert proc.returncode == -signal.SIGINT, (out, err)
        assert "KeyboardInterrupt" in err
        assert u.pids_in(tmp_path / "queued") == [], "a queued task started after Ctrl-C"
    pids = [p for i in range(2) for p in u.pids_in(tmp_path / f"t{i}")]
    assert len(pids) == 4
    assert u.wait_gone(pids, timeout=1) == [], "a task's tree survived Ctrl-C in the caller"


# ---------------------------------------------------------------- the standard's semantics


def test_map_as_completed_wait_and_timeout(tmp_path):
    with pynish.Executor(2, wall_time=30) as ex:
        assert list(ex.map(u.square_in_testutil, range(5))) == [0, 1, 4, 9, 16]
        assert list(ex.map(pow, [2, 3], [3, 2], chunksize=4)) == [8, 9]
        futures = [ex.submit(u.identity, i) for i in range(4)]
        assert sorted(f.result() for f in cf.as_completed(futures, timeout=30)) == [0, 1, 2, 3]
        done, not_done = cf.wait(futures, timeout=30)
        assert len(done) == 4 and not not_done
        results = ex.map(wait_for_file, [str(tmp_path / "never")], timeout=0.5)
        with pytest.raises(cf.TimeoutError):
            next(results)
        with pytest.raises(ValueError):
            ex.map(u.identity, [1], chunksize=0)
        f = ex.submit(wait_for_file, str(tmp_path / "go"))
        assert f.report is None  # not done yet
        (tmp_path / "go").write_text("")
        f.result(timeout=30)
        assert f.report is not None and f.report.verdict == "completed"


def test_a_cancel_is_seen_by_wait_and_as_completed(piddir):
    with pynish.Executor(1, wall_time=60) as ex:
        f = ex.submit(u.sleep_for, 60, piddir)
        pids = u.wait_for_files(piddir, 1)
        f.cancel()
        done, _ = cf.wait([f], timeout=5)
        assert done == {f}
        assert list(cf.as_completed([f], timeout=5)) == [f]
    assert u.wait_gone(pids, timeout=5) == []


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"max_workers": 0}, ValueError),
        ({"max_workers": -1}, ValueError),
        ({"wall_time": 0}, ValueError),
        ({"memory": 0}, ValueError),
        ({"context": "threads"}, ValueError),
        ({"memory_budget": 0}, ValueError),
        ({"preload": ["json"], "context": "fork"}, ValueError),
        ({"preload": ["no_such_module_pynish"]}, ModuleNotFoundError),
    ],
)
def test_bad_input_is_refused_at_once(kwargs, error):
    with pytest.raises(error):
        pynish.Executor(**kwargs)


def test_fork_context_runs_closures_and_preload_warms_the_server():
    secret = "from the caller's memory"
    with pynish.Executor(2, wall_time=30, context=multiprocessing.get_context("fork")) as ex:
        assert ex.submit(lambda: secret).result(timeout=30) == secret
    with pynish.Executor(1, wall_time=30, preload=["xml.dom.minidom"]) as ex:
        assert ex.submit(loaded, "xml.dom.minidom").result(timeout=30) is True
    with pynish.Executor(1, wall_time=30) as ex:
        assert ex.submit(loaded, "xml.dom.minidom").result(timeout=30) is False


def test_amltk_scheduler_runs_on_it():
    try:
        from amltk.scheduling import Scheduler
    except ImportError as e:  # amltk 1.12 also needs scikit-learn to import
        pytest.skip(f"amltk's Scheduler cannot be imported here ({e}); pip install amltk scikit-learn")

    results, errors = [], []
    with pynish.Executor(2, wall_time=30) as ex:
        scheduler = Scheduler(executor=ex)
        task = scheduler.task(u.square_in_testutil)
        timing_out = scheduler.task(pynish.limit(u.sleep_for, wall_time=1))

        @scheduler.on_start
        def launch():
            for i in range(4):
                task.submit(i)
            timing_out.submit(60)

        @task.on_result
        def collect(_, value):
            results.append(value)

        @timing_out.on_exception
        def failed(_, err):
            errors.append(type(err).__name__)

        scheduler.run(timeout=60, on_exception="continue")
    assert sorted(results) == [0, 1, 4, 9]
    assert errors == ["WallTimeoutException"]


def test_a_caller_that_never_shuts_down_still_exits():
    done = u.run_script(u.HERE / "scripts" / "executor_no_shutdown.py", timeout=60)
    assert done.returncode == 0, done.stderr
    assert "RESULT 9" in done.stdout


@pytest.mark.parametrize("context, forked", [("forkserver", False), ("fork", False), ("forkserver", True)])
def test_the_callers_death_ends_every_running_tree(tmp_path, context, forked):
    """SIGKILL to the caller (as the OOM killer does): the lifeline ends every task's tree, and its server, also
    while a child the caller forked (which holds no copy of the server's socket) lives on."""
    extra = [str(tmp_path / "forked")] if forked else []
    proc = subprocess.Popen(
        [sys.executable, str(u.HERE / "scripts" / "executor_caller_dies.py"), str(tmp_path), context, *extra],
        env=u.script_env(),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    server = int(proc.stdout.readline().split()[1])
    deadline = time.monotonic() + 30
    while not all((tmp_path / f"t{i}" / "ready").exists() for i in range(2)):
        assert proc.poll() is None
        assert time.monotonic() < deadline, "the tasks never got ready"
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    pids = [p for i in range(2) for p in u.pids_in(tmp_path / f"t{i}")] + ([server] if server else [])
    assert len(pids) == 4 + bool(server)
    left = u.wait_gone(pids, timeout=5)
    u.kill_all(left + (u.pids_in(tmp_path / "forked") if forked else []))
    assert left == [], f"processes outlived the caller: {[u.cmdline(p) for p in left]}"


def test_the_readme_example_runs_as_written(tmp_path, heavy_memory):
    text = (u.PYTHON_DIR.parent / "README.md").read_text()
    code = text.split("<!-- python-example: executor -->\n```python\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "example.py"
    script.write_text(code)
    done = u.run_script(script, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    outcome = dict(line.split(" -> ") for line in done.stdout.splitlines())
    assert sorted(outcome) == ["10", "150", "20", "400", "50"], done.stdout
    for n in ("10", "20", "50"):
        assert outcome[n].startswith(f"{n} MB; peak"), done.stdout
    assert outcome["400"] == "MemoryLimitException memory"
    assert outcome["150"] == "MemoryLimitException memory"  # its own 100 MB limit, not the executor's 200 MB
