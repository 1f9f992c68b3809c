"""Which start method a call takes (issue 18, item 2): multiprocessing's running default when no context is given,
another library's start method (loky's) taken as the nearest of fork, forkserver and spawn, any library's context
object by its start method; an explicitly wrong name is still refused."""

from __future__ import annotations

import textwrap

import pytest

import pynish_testutil as u
from pynish import limit

pytestmark = pytest.mark.pynish_only


def test_a_wrong_context_name_is_refused_naming_it():
    with pytest.raises(ValueError, match="`context` bogus must be in"):
        limit(u.identity, context="bogus")


def test_an_object_without_a_start_method_is_refused():
    with pytest.raises(ValueError, match="must be in"):
        limit(u.identity, context=object())


@pytest.mark.parametrize(
    "name,taken",
    [
        ("fork", "fork"),
        ("spawn", "spawn"),
        ("forkserver", "forkserver"),
        ("loky", "spawn"),
        ("loky_init_main", "spawn"),
    ],
)
def test_any_libraries_context_object_is_taken_by_its_start_method(name, taken):
    class Context:  # what any library's context offers: its start method's name
        def get_start_method(self, allow_none=False):
            return name

    limited = limit(u.whoami, context=Context(), wall_time=30)
    assert limited.start_method == taken
    assert limited() != u.whoami()


def test_lokys_context_object_runs_a_call():
    context = pytest.importorskip("loky.backend.context", reason="loky (PyPI) is not installed")
    limited = limit(u.identity, context=context.get_context("loky"), wall_time=30)
    assert limited.start_method == "spawn"
    assert limited(7) == 7


def test_a_call_in_a_loky_worker_takes_its_default(tmp_path):
    """In loky's reusable executor (joblib's, amltk's), multiprocessing's default start method is "loky"; a call
    with no context runs there (before: ValueError about a context the caller never passed)."""
    pytest.importorskip("loky", reason="loky (PyPI) is not installed")
    script = tmp_path / "caller.py"
    script.write_text(
        textwrap.dedent(
            """
            import multiprocessing, os

            def double(x):
                return 2 * x

            def in_worker(x):
                import pynish
                limited = pynish.limit(double, wall_time=30)
                return multiprocessing.get_start_method(), limited.start_method, limited(x), os.getpid()

            if __name__ == "__main__":
                from loky import get_reusable_executor
                executor = get_reusable_executor(max_workers=1)
                try:
                    default, taken, result, worker = executor.submit(in_worker, 21).result(timeout=120)
                    print(default, taken, result, worker != os.getpid())
                finally:
                    executor.shutdown(wait=True, kill_workers=True)
            """
        )
    )
    out = u.run_script(script, cwd=tmp_path, timeout=180)
    assert out.stdout.split() == ["loky", "spawn", "42", "True"], out.stdout + out.stderr
