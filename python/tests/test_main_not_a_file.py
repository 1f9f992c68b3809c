"""A caller whose main module is no file (issue 28): ``python - <<'EOF'`` (shell scripts, CI heredocs), a script
removed since it started, ``python -c``, ``python -i``, IPython (when installed). Such a main is not re-run in a fresh child; the functions
it defines go by value. Before, ``<stdin>`` made spawn, forkserver and the Executor fail at once with
FileNotFoundError '<cwd>/<stdin>' (the stdlib and pynisher fail too).

Each test runs a real caller in a subprocess, its main fed as the case says, and reads the one JSON line it prints.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import pynish_testutil as u

CONTEXTS = ["fork", "forkserver", "spawn"]

#: The caller: a result, a function named as the fresh child's own entry point (``main``: it must stay the
#: caller's), and the memory verdict, from a limited call in ``CONTEXT`` or from an Executor.
CALLER = """
import json
import pynish

CONTEXT = {context!r}


def double(x):
    return 2 * x


def main():
    return "the caller's main"


def hog():
    block = bytearray(b"\\1") * (300 * 2**20)
    return len(block)


def verdict(run):
    try:
        return run()
    except pynish.MemoryLimitException:
        return "MemoryLimitException"


if CONTEXT == "executor":
    with pynish.Executor(2, wall_time=60, memory=(100, "MB")) as ex:
        done = {{
            "result": ex.submit(double, 21).result(),
            "main": ex.submit(main).result(),
            "memory": verdict(ex.submit(hog).result),
        }}
else:
    def limited(f):
        return pynish.limit(f, context=CONTEXT, wall_time=60, memory=(100, "MB"))

    done = {{"result": limited(double)(21), "main": limited(main)(), "memory": verdict(limited(hog))}}
print(json.dumps(done))
"""

EXPECTED = {"result": 42, "main": "the caller's main", "memory": "MemoryLimitException"}


def outcome(argv, tmp_path, stdin=None):
    """The JSON line a caller started as ``argv`` (in ``tmp_path``) printed last."""
    env = u.script_env()
    # IPython keeps its history and profile here, not in the user's home.
    env["IPYTHONDIR"] = str(tmp_path / "ipython")
    done = subprocess.run(
        [sys.executable, *argv],
        input=stdin,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    # At the interactive prompt the line may follow a prompt (">>> ").
    lines = [line[line.index("{") :] for line in done.stdout.splitlines() if "{" in line]
    assert lines, (done.stdout, done.stderr)
    return json.loads(lines[-1])


@pytest.mark.pynisher_weakness  # pynisher: FileNotFoundError '<cwd>/<stdin>' in spawn and forkserver
@pytest.mark.parametrize("context", CONTEXTS)
def test_a_main_read_from_stdin(context, tmp_path):
    assert outcome(["-"], tmp_path, stdin=CALLER.format(context=context)) == EXPECTED


@pytest.mark.pynish_only
def test_a_main_read_from_stdin_in_the_executor(tmp_path):
    assert outcome(["-"], tmp_path, stdin=CALLER.format(context="executor")) == EXPECTED


@pytest.mark.parametrize("context", CONTEXTS)
def test_a_main_given_with_dash_c(context, tmp_path):
    assert outcome(["-c", CALLER.format(context=context)], tmp_path) == EXPECTED


@pytest.mark.pynish_only
def test_a_main_given_with_dash_c_in_the_executor(tmp_path):
    assert outcome(["-c", CALLER.format(context="executor")], tmp_path) == EXPECTED


@pytest.mark.pynisher_weakness  # pynisher: FileNotFoundError for the removed script (spawn, forkserver)
@pytest.mark.parametrize("context", ["forkserver", "spawn"])
def test_a_main_script_removed_since_it_started(context, tmp_path):
    script = tmp_path / "gone.py"
    script.write_text("import os\nos.remove(__file__)\n" + CALLER.format(context=context))
    assert outcome([str(script)], tmp_path) == EXPECTED


@pytest.mark.parametrize("context", ["forkserver", "spawn"])
def test_the_interactive_prompt(context, tmp_path):
    # Typed at the prompt: a compound statement ends with a blank line.
    typed = (
        "import json, pynish\n"
        "def double(x):\n"
        "    return 2 * x\n"
        "\n"
        f"print(json.dumps({{'result': pynish.limit(double, context={context!r}, wall_time=60)(21)}}))\n"
    )
    assert outcome(["-i"], tmp_path, stdin=typed) == {"result": 42}


#: IPython as a terminal user starts it, without colours or a banner that would surround the printed line.
IPYTHON = ["-m", "IPython", "--no-banner", "--simple-prompt", "--colors=nocolor"]


@pytest.mark.parametrize("context", [*CONTEXTS, pytest.param("executor", marks=pytest.mark.pynish_only)])
def test_ipython(context, tmp_path):
    pytest.importorskip("IPython", reason="IPython is not installed here (pip install ipython)")
    assert outcome([*IPYTHON, "-c", CALLER.format(context=context)], tmp_path) == EXPECTED


@pytest.mark.parametrize("context", ["forkserver", "spawn"])
def test_the_ipython_prompt(context, tmp_path):
    pytest.importorskip("IPython", reason="IPython is not installed here (pip install ipython)")
    typed = (
        "import json, pynish\n"
        "def double(x):\n"
        "    return 2 * x\n"
        "\n"
        f"print(json.dumps({{'result': pynish.limit(double, context={context!r}, wall_time=60)(21)}}))\n"
    )
    # IPython asks whether to exit at the end of its input; the answer is the default.
    assert outcome(IPYTHON, tmp_path, stdin=typed) == {"result": 42}
