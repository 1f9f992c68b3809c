"""Calls under a caller's hard RLIMIT_CPU, and nested calls with a looser ``cpu_time`` (issue 18, item 10): they
run, with the kernel's CPU backstop capped at the inherited hard limit (raising it takes CAP_SYS_RESOURCE)."""

from __future__ import annotations

import resource
import subprocess
import sys
import textwrap

import pytest

import pynish_testutil as u
from pynish import limit

CONTEXTS = ["fork", "spawn", "forkserver"]

# pynisher 1.0.10 fails these too: its setrlimit in the child cannot raise the inherited hard limit.
pytestmark = pytest.mark.pynisher_weakness


def hard_cpu_limit():
    return resource.getrlimit(resource.RLIMIT_CPU)[1]


def looser_inside(context):
    """A limited call made inside a limited call, asking for more CPU time than the outer one."""
    return limit(hard_cpu_limit, context=context, cpu_time=60, wall_time=60)()


@pytest.mark.parametrize("context", CONTEXTS)
def test_a_nested_call_with_a_looser_cpu_time_runs(context):
    inner_hard = limit(looser_inside, context=context, cpu_time=5, wall_time=60)(context)
    # The outer call's backstop (5 s + 1 + grace, whole seconds) is the hard limit the inner call inherits.
    assert inner_hard != resource.RLIM_INFINITY and inner_hard <= 10


_UNDER_A_HARD_LIMIT = """
import resource, sys
import pynish

def hard_cpu_limit():
    return resource.getrlimit(resource.RLIMIT_CPU)[1]

if __name__ == "__main__":
    print(pynish.limit(hard_cpu_limit, context=sys.argv[1], cpu_time=int(sys.argv[2]), wall_time=60)())
"""


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("cpu_time", [20, 40])
def test_a_call_at_or_above_the_callers_hard_rlimit_cpu_runs(tmp_path, context, cpu_time):
    """The caller runs under a hard RLIMIT_CPU of 20 s (a batch system's); the function keeps it."""
    script = tmp_path / "caller.py"
    script.write_text(textwrap.dedent(_UNDER_A_HARD_LIMIT))

    def hard_limit_of_20s():
        resource.setrlimit(resource.RLIMIT_CPU, (20, 20))

    out = subprocess.run(
        [sys.executable, str(script), context, str(cpu_time)],
        cwd=tmp_path,
        env=u.script_env(),
        preexec_fn=hard_limit_of_20s,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["20"]
