"""pynish's exceptions travel through every pickler that carries them between processes (issue 18, item 3):
plain pickle, cloudpickle, and tblib's pickling support, which dask.distributed installs in its workers and
client. A memory-limited call made in a worker comes back to its client as MemoryLimitException."""

from __future__ import annotations

import textwrap

import pytest

import pynish_testutil as u

pytestmark = pytest.mark.pynish_only

_NAMES = [
    "PynisherException",
    "TimeoutException",
    "CpuTimeoutException",
    "WallTimeoutException",
    "MemoryLimitException",
    "FileSizeLimitException",
    "SoftTimeLimit",
    "UnpicklableResult",
]


def _script(tmp_path, text: str):
    path = tmp_path / "caller.py"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize("pickler", ["pickle", "cloudpickle", "tblib"])
def test_every_exception_round_trips(tmp_path, pickler):
    """Type, message and args intact. Run in a fresh interpreter: tblib's install() changes pickling globally."""
    if pickler == "tblib":
        pytest.importorskip("tblib", reason="tblib (PyPI) is not installed")
    script = _script(
        tmp_path,
        f"""
        import pickle, sys
        import cloudpickle
        from pynish import exceptions
        if {pickler!r} == "tblib":
            from tblib import pickling_support
            pickling_support.install()
        module = cloudpickle if {pickler!r} == "cloudpickle" else pickle
        dumps, loads = module.dumps, module.loads
        for name in {_NAMES!r}:
            cls = getattr(exceptions, name)
            err = cls("the message", 42)
            err.note = "an attribute"
            back = loads(dumps(err))
            assert type(back) is cls, (name, type(back))
            assert back.args == ("the message", 42), (name, back.args)
            assert str(back) == str(err), (name, str(back))
            assert back.note == "an attribute", name
        print("ok")
        """,
    )
    out = u.run_script(script, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


_HOG = """
def hog():
    block = bytearray(400 * 2**20)
    block[::4096] = b"x" * len(block[::4096])
    return len(block)


def limited_hog():
    import pynish
    return pynish.limit(hog, memory=(100, "MB"), wall_time=60)()
"""


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_process_pool_worker_gives_memory_limit_exception(tmp_path, context, heavy_memory):
    """tblib installed in the caller and its workers, as dask's users have it: no BrokenProcessPool."""
    pytest.importorskip("tblib", reason="tblib (PyPI) is not installed")
    script = _script(
        tmp_path,
        _HOG
        + f"""
import concurrent.futures, multiprocessing
import pynish
from tblib import pickling_support
pickling_support.install()

if __name__ == "__main__":
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context({context!r})) as pool:
        try:
            pool.submit(limited_hog).result(timeout=120)
        except Exception as e:
            print(type(e).__name__, isinstance(e, pynish.MemoryLimitException))
""",
    )
    out = u.run_script(script, cwd=tmp_path, timeout=180)
    assert out.stdout.strip() == "MemoryLimitException True", out.stdout + out.stderr


def test_dask_worker_gives_memory_limit_exception(tmp_path, heavy_memory):
    """A memory-limited call in a dask.distributed worker process reaches the client as MemoryLimitException
    (before: the future never completed)."""
    pytest.importorskip("distributed", reason="dask.distributed (PyPI: dask[distributed]) is not installed")
    script = _script(
        tmp_path,
        _HOG
        + """
import pynish

if __name__ == "__main__":
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            future = client.submit(limited_hog, pure=False)
            try:
                future.result(timeout=120)
            except Exception as e:
                print(type(e).__name__, isinstance(e, pynish.MemoryLimitException))
""",
    )
    out = u.run_script(script, cwd=tmp_path, timeout=240)
    assert "MemoryLimitException True" in out.stdout.splitlines(), out.stdout + out.stderr
