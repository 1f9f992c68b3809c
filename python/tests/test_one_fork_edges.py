"""The one-copy fork (``pynish._call.native``, issue 18 item 5) at the edges a caller brings: signals arriving while calls
start, what the function's process inherits, a caller that cannot make more processes, calls nested in workers.
Each compares with the Python path (``pynish._call.native.disabled``) or states what it must keep. Callers that change
their own process (nice, rlimits, handlers, cgroup) are scripts of their own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

import pynish_testutil as u

pytestmark = pytest.mark.pynish_only

PATHS = ["native", "python"]

PREAMBLE = """
import json, os, signal, sys
import pynish, pynish._call.native
pynish._call.native.disabled = sys.argv[1] == "python"
"""


def run(tmp_path, body: str, path: str, *args, timeout: float = 120) -> dict:
    script = tmp_path / "caller.py"
    script.write_text(PREAMBLE + textwrap.dedent(body))
    done = u.run_script(script, path, *args, timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return u.last_json_line(done.stdout)


STORM = """
import subprocess
seen = {}

def note(signum, frame):
    seen[os.getpid()] = seen.get(os.getpid(), 0) + 1

for signum in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD, signal.SIGWINCH):
    signal.signal(signum, note)
mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
me = os.getpid()
# Four signals every 0.2 ms or so, for as long as the calls start.
storm = subprocess.Popen([sys.executable, "-c", f'''
import os, signal, time
while True:
    for signum in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD, signal.SIGWINCH):
        os.kill({me}, signum)
    time.sleep(0.0002)
'''])
limited = pynish.limit(os.getpid, context="fork", wall_time=60)
try:
    while not seen:  # the storm has begun
        signal.pause()
    before = sum(seen.values())
    pids = [limited() for _ in range(20)]
    during = sum(seen.values()) - before
finally:
    storm.kill()
    storm.wait()
print(json.dumps({"me": me, "pids": pids, "handled_in": sorted(seen), "during": during,
                  "mask_kept": signal.pthread_sigmask(signal.SIG_BLOCK, []) == mask}))
"""


@pytest.mark.parametrize("path", PATHS)
def test_calls_start_under_a_storm_of_signals_with_python_handlers(tmp_path, path):
    """Every signal is blocked while A shares the caller's memory: none runs a handler there; all are handled by
    the caller, whose mask is as before, and every call gets a process of its own."""
    seen = run(tmp_path, STORM, path)
    assert seen["during"] > 20, seen  # signals did arrive while the calls started
    assert seen["handled_in"] == [seen["me"]]
    assert seen["mask_kept"]
    assert len(set(seen["pids"])) == 20 and seen["me"] not in seen["pids"]


INHERITED = """
import ctypes, faulthandler, resource, threading

class StackT(ctypes.Structure):
    _fields_ = [("sp", ctypes.c_void_p), ("flags", ctypes.c_int), ("size", ctypes.c_size_t)]

def attributes():
    alt = StackT()
    ctypes.CDLL(None).sigaltstack(None, ctypes.byref(alt))
    umask = os.umask(0)
    os.umask(umask)
    status = [line for line in open("/proc/self/status") if line.startswith(("SigBlk", "SigIgn", "SigCgt"))]
    return {
        "cwd": os.getcwd(), "umask": umask, "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
        "nice": os.nice(0), "affinity": sorted(os.sched_getaffinity(0)), "comm": open("/proc/self/comm").read(),
        "oom_score_adj": open("/proc/self/oom_score_adj").read(), "altstack": [bool(alt.sp), alt.flags, alt.size],
        "signals": status, "env": os.environ.get("PYNISH_TEST_MARK"),
    }

os.chdir(sys.argv[2])
os.umask(0o027)
os.nice(3)
os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
resource.setrlimit(resource.RLIMIT_NOFILE, (900, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
try:
    open("/proc/self/oom_score_adj", "w").write("123")
except OSError:
    pass
os.environ["PYNISH_TEST_MARK"] = "set"
signal.signal(signal.SIGUSR1, signal.SIG_IGN)
faulthandler.enable()  # an alternate signal stack for the main thread
limited = pynish.limit(attributes, context="fork", wall_time=60)
seen = {"main": limited()}
worker = threading.Thread(target=lambda: seen.update(thread=limited()), name="caller-thread")
worker.start()
worker.join()
print(json.dumps(seen))
"""


def test_the_function_inherits_what_it_inherited_through_python_forks(tmp_path):
    """cwd, umask, rlimits, nice, affinity, comm, oom_score_adj, the alternate signal stack, signal dispositions
    and mask, the environment: the same as a fork through Python gives, from the main thread and another one."""
    native = run(tmp_path, INHERITED, "native", tmp_path)
    python = run(tmp_path, INHERITED, "python", tmp_path)
    assert native == python
    assert native["main"]["cwd"] == str(tmp_path) and native["main"]["nice"] >= 3
    assert native["main"]["altstack"][0], "faulthandler's alternate stack is kept, as a fork keeps it"


PIDS = """
import subprocess
group = sys.argv[2]
limited = pynish.limit(os.getpid, context="fork", wall_time=60)
assert limited() != os.getpid()  # the helper is loaded (its loading starts a process)
outcomes = {}
for allowed in (1, 2):  # 1: A cannot be made; 2: A cannot fork B
    with open(f"{group}/pids.max", "w") as f:
        f.write(str(allowed))
    try:
        limited()
        outcomes[allowed] = "ran"
    except BaseException as e:
        outcomes[allowed] = type(e).__name__
    finally:
        with open(f"{group}/pids.max", "w") as f:
            f.write("max")
    left = subprocess.run(["ps", "--ppid", str(os.getpid()), "-o", "pid=,stat=,comm="], capture_output=True, text=True)
    outcomes[f"left{allowed}"] = [line for line in left.stdout.splitlines() if "ps" not in line.split()[-1:]]
outcomes["after"] = limited() != os.getpid()
print(json.dumps(outcomes))
"""


def pids_group(tmp_path):
    root = "/sys/fs/cgroup/pids"
    if not os.access(root, os.W_OK) or not os.path.exists(f"{root}/cgroup.procs"):
        pytest.skip("needs a writable cgroup v1 pids hierarchy at /sys/fs/cgroup/pids (root)")
    group = f"{root}/pynish-test-{os.getpid()}-{tmp_path.name}"
    os.mkdir(group)
    return group


@pytest.mark.parametrize("path", PATHS)
def test_a_caller_that_cannot_make_processes_gets_an_error_and_leaves_none(tmp_path, path):
    """The caller's pids limit reached: when A cannot be made, or A cannot fork B, the call raises, nothing is
    left behind (no zombie, no held B), and the next call works."""
    group = pids_group(tmp_path)
    script = tmp_path / "caller.py"
    script.write_text(PREAMBLE + textwrap.dedent(PIDS))
    env = u.script_env()
    argv = [sys.executable, str(script), path, group]
    try:
        done = subprocess.run(
            ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', group, *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        os.rmdir(group)
    assert done.returncode == 0, done.stdout + done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["1"] != "ran" and seen["2"] != "ran", seen
    assert seen["left1"] == [] and seen["left2"] == [], seen
    assert seen["after"]


NESTED = """
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

def inner(x):
    return x * 2

def in_a_call(x):
    return pynish.limit(inner, context="fork", wall_time=60)(x)

if __name__ == "__main__":
    seen = {"nested": pynish.limit(in_a_call, context="fork", wall_time=60)(3)}
    for method in ("fork", "forkserver"):
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context(method)) as pool:
            seen[method] = list(pool.map(in_a_call, [1, 2, 3]))
    print(json.dumps(seen))
"""


def test_calls_nested_in_a_call_and_in_pool_workers(tmp_path):
    """A fork-context call inside a fork-context function, and inside fork and forkserver pool workers."""
    seen = run(tmp_path, NESTED, "native")
    assert seen == {"nested": 6, "fork": [2, 4, 6], "forkserver": [2, 4, 6]}


STUCK_HANDLER = r"""
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
static const char *marker;
/* Armed: says which process runs it, then never returns (as a library's handler racing another thread can). */
static void prepare(void) {
    if (!marker)
        return;
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%d", (int)getpid());
    int fd = open(marker, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    write(fd, pid, n);
    close(fd);
    for (;;)
        pause();
}
void arm(const char *path) { marker = path; }
__attribute__((constructor)) static void init(void) { pthread_atfork(prepare, 0, 0); }
"""

STUCK = """
import ctypes
handler = ctypes.CDLL(sys.argv[2])
limited = pynish.limit(os.getpid, context="fork", wall_time=60)
assert limited() != os.getpid()  # the helper is loaded
marker = ctypes.create_string_buffer(sys.argv[3].encode())  # kept alive: the handler reads it later
handler.arm(marker)
limited()
"""


def test_a_process_stuck_in_an_at_fork_handler_dies_with_its_caller(tmp_path):
    """A runs the caller's libraries' at-fork handlers, sharing the caller's memory. One that never returns keeps
    the call from starting (as it would keep os.fork from returning), but once the caller is killed, A must go
    too, and not keep the caller's memory alive."""
    import shutil

    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("needs a C compiler to build the at-fork handler")
    source = tmp_path / "stuck.c"
    source.write_text(STUCK_HANDLER)
    library = tmp_path / "stuck.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(library), str(source)], check=True, timeout=120)
    script = tmp_path / "caller.py"
    script.write_text(PREAMBLE + textwrap.dedent(STUCK))
    marker = tmp_path / "stuck-pid"
    caller = subprocess.Popen([sys.executable, str(script), "native", str(library), str(marker)], env=u.script_env())
    stuck = None
    try:
        deadline = time.monotonic() + 60
        while not (marker.exists() and marker.read_text()):
            assert caller.poll() is None, "the caller ended before its call reached the handler"
            assert time.monotonic() < deadline, "the handler never ran"
            time.sleep(0.02)
        stuck = int(marker.read_text())
        assert stuck != caller.pid  # the handler runs in A, not in the caller
        caller.kill()
        caller.wait()
        assert u.wait_gone([stuck], timeout=10) == [], f"A ({stuck}) outlived its caller"
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait()
        if stuck is not None and u.alive(stuck):
            u.kill_all([stuck])
