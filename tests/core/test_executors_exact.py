"""Exact checks of where tasks run (app/core/executors.py) and of the child process runner (app/core/child.py).

Ray is never started here: a fake ``ray`` module (put into ``sys.modules``) records what the executor asks of it.
The child runner's tests spawn real (small) child processes: their targets are the module-level functions below.
"""

from __future__ import annotations

import faulthandler
import multiprocessing
import os
import signal
import sys
import time
import types
import warnings
from pathlib import Path

import pytest

import app
import device
import estimator
from app.core import child, executors
from app.core.executors import (
    RAY_INSTALL_HINT,
    ExecutorError,
    LocalExecutor,
    RayExecutor,
    make_executor,
    quiet_stdout,
)
from app.core.models import ModelError

# ------------------------------------------------------------------------------------------------
# tasks (module level: the pool's workers and the child processes import them by name)
# ------------------------------------------------------------------------------------------------


def where_and_what(shared, task):
    """A task's result: the process that ran it, the shared object it saw, the task."""
    return os.getpid(), shared, task


def shared_plus_task(shared, task):
    return shared + task


# ------------------------------------------------------------------------------------------------
# local process pool
# ------------------------------------------------------------------------------------------------


def test_a_pool_worker_keeps_the_shared_object_limits_blas_threads_and_lowers_its_priority(monkeypatch):
    niceness = []
    monkeypatch.setattr(os, "nice", lambda n: niceness.append(n))
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.setattr(executors, "_SHARED", None)
    executors._init_local({"recordings": 3})
    assert executors._SHARED == {"recordings": 3}
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    assert niceness == [5]


def test_a_pool_worker_runs_a_task_on_the_shared_object_it_was_given(monkeypatch):
    monkeypatch.setattr(os, "nice", lambda n: None)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    executors._init_local(10)
    assert executors._call_local((shared_plus_task, 4)) == 14


def test_a_pool_worker_keeps_a_blas_thread_count_the_user_set(monkeypatch):
    monkeypatch.setattr(os, "nice", lambda n: None)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    executors._init_local(None)
    assert os.environ["OPENBLAS_NUM_THREADS"] == "3"


@pytest.mark.parametrize("error", [OSError(1, "Operation not permitted"), AttributeError("nice")])
def test_a_pool_worker_that_cannot_lower_its_priority_still_runs(monkeypatch, error):
    def refuse(n):
        raise error

    monkeypatch.setattr(os, "nice", refuse)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    executors._init_local("data")
    assert executors._SHARED == "data"


def test_local_executor_counts_at_least_one_worker():
    assert (LocalExecutor(0).jobs, LocalExecutor(0).workers) == (1, 1)
    assert (LocalExecutor(-3).jobs, LocalExecutor("3").workers) == (1, 3)  # type: ignore[arg-type]
    assert (LocalExecutor().jobs, LocalExecutor().workers) == (1, 1)
    ex = LocalExecutor(4)
    assert (ex.kind, ex.local_files, ex.jobs, ex.workers) == ("local", True, 4, 4)
    with ex as entered:
        assert entered is ex
    ex.close()


def test_one_job_runs_the_tasks_in_this_process_in_order():
    out = list(LocalExecutor(1).imap(where_and_what, [3, 1, 2], shared="S"))
    assert out == [(os.getpid(), "S", 3), (os.getpid(), "S", 1), (os.getpid(), "S", 2)]


def test_a_single_task_runs_in_this_process_whatever_the_jobs():
    assert list(LocalExecutor(4).imap(where_and_what, iter([7]), shared="S")) == [(os.getpid(), "S", 7)]
    assert list(LocalExecutor(4).imap(where_and_what, [], shared="S")) == []


def test_several_jobs_run_the_tasks_in_worker_processes_that_inherit_the_shared_object():
    out = list(LocalExecutor(2).imap(where_and_what, (t for t in [1, 2, 3]), shared={"big": 1}))
    assert sorted(task for _, _, task in out) == [1, 2, 3]
    assert all(shared == {"big": 1} for _, shared, _ in out)
    assert os.getpid() not in {pid for pid, _, _ in out}


class _FakePool:
    def __init__(self, log, processes, initializer, initargs):
        log.append(("pool", processes, initializer, initargs))
        self.log = log
        self.initializer, self.initargs = initializer, initargs

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.log.append(("pool closed",))

    def imap_unordered(self, fn, items, chunksize=None):
        self.log.append(("imap_unordered", fn, chunksize))
        self.initializer(*self.initargs)
        for item in reversed(items):  # finished in another order than submitted
            yield fn(item)


def _fake_mp(monkeypatch, methods):
    import multiprocessing as mp

    log: list = []

    def get_context(method):
        log.append(("context", method))
        return types.SimpleNamespace(Pool=lambda n, initializer, initargs: _FakePool(log, n, initializer, initargs))

    monkeypatch.setattr(mp, "get_all_start_methods", lambda: methods)
    monkeypatch.setattr(mp, "get_context", get_context)
    monkeypatch.setattr(os, "nice", lambda n: None)
    return log


def test_the_pool_has_no_more_workers_than_tasks_and_yields_results_as_they_finish(monkeypatch):
    log = _fake_mp(monkeypatch, ["fork", "spawn", "forkserver"])
    out = list(LocalExecutor(5).imap(shared_plus_task, [1, 2, 3], shared=100))
    assert out == [103, 102, 101]
    assert log == [
        ("context", "fork"),
        ("pool", 3, executors._init_local, (100,)),
        ("imap_unordered", executors._call_local, 1),
        ("pool closed",),
    ]


def test_the_pool_uses_as_many_workers_as_jobs_when_there_are_more_tasks(monkeypatch):
    log = _fake_mp(monkeypatch, ["fork", "spawn"])
    assert sorted(LocalExecutor(2).imap(shared_plus_task, [1, 2, 3, 4], shared=0)) == [1, 2, 3, 4]
    assert log[1][:2] == ("pool", 2)


def test_the_pool_spawns_where_fork_does_not_exist(monkeypatch):
    log = _fake_mp(monkeypatch, ["spawn"])
    assert list(LocalExecutor(2).imap(shared_plus_task, [1, 2], shared=0)) == [2, 1]
    assert log[0] == ("context", "spawn")


# ------------------------------------------------------------------------------------------------
# Ray (a fake module)
# ------------------------------------------------------------------------------------------------


class FakeRayError(Exception):
    pass


class Ref:
    def __init__(self, name, value=None, call=None):
        self.name, self.value, self.call = name, value, call

    def hex(self):
        return self.name

    def __repr__(self):
        return f"Ref({self.name})"


class FakeRay:
    """What the executor uses of Ray; every call is logged."""

    def __init__(self, initialized=False, resources=None):
        self.log: list = []
        self.initialized = initialized
        self.init_errors: list = []
        self.shutdown_error: Exception | None = None
        self.resources = {"CPU": 4.0} if resources is None else resources
        self.exceptions = types.SimpleNamespace(RayError=FakeRayError)
        self.fail: dict = {}
        self.cancel_error: Exception | None = None
        self.puts = 0

    def is_initialized(self):
        return self.initialized

    def init(self, address=None, **kw):
        self.log.append(("init", address, kw))
        if self.init_errors:
            raise self.init_errors.pop(0)
        self.initialized = True

    def shutdown(self):
        self.log.append(("shutdown",))
        self.initialized = False
        if self.shutdown_error is not None:
            raise self.shutdown_error

    def cluster_resources(self):
        if isinstance(self.resources, Exception):
            raise self.resources
        return dict(self.resources)

    def put(self, value):
        self.puts += 1
        self.log.append(("put", value))
        return Ref(f"shared-{self.puts}", value=value)

    def remote(self, **kw):
        self.log.append(("remote", kw))

        def decorate(f):
            return types.SimpleNamespace(remote=lambda fn, box, t: Ref(f"task-{t}", call=(f, fn, box, t)))

        return decorate

    def wait(self, pending, num_returns=1):
        self.log.append(("wait", num_returns, [r.name for r in pending]))
        # the last submitted task finishes first
        return pending[-num_returns:], pending[:-num_returns]

    def get(self, ref):
        if ref.call is None:
            self.log.append(("get", ref.name))
            return ref.value
        f, fn, box, t = ref.call
        if t in self.fail:
            raise self.fail[t]
        return f(fn, box, t)

    def cancel(self, ref, force=False):
        self.log.append(("cancel", ref.name, force))
        if self.cancel_error is not None:
            raise self.cancel_error


@pytest.fixture
def fake_ray(monkeypatch):
    ray = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", ray)
    monkeypatch.setattr(executors, "_RAY_SHARED", {})
    return ray


@pytest.fixture
def no_ray(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # "import ray" raises ImportError


NO_RAY = "--executor ray needs Ray, which is not installed: pip install 'odl-studio[cluster]' (or: pip install 'ray[default]')"


def test_the_install_hint_names_the_extra_and_ray_itself():
    assert RAY_INSTALL_HINT == "pip install 'odl-studio[cluster]' (or: pip install 'ray[default]')"


def test_without_ray_the_ray_executor_says_how_to_install_it(no_ray):
    with pytest.raises(ExecutorError) as err:
        executors._import_ray()
    assert str(err.value) == NO_RAY
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_with_ray_installed_the_module_is_handed_out(fake_ray):
    assert executors._import_ray() is fake_ray


def test_a_ray_worker_fetches_the_shared_object_once_per_run(fake_ray):
    a, b = Ref("run-a", value=10), Ref("run-b", value=20)
    assert executors._ray_call(shared_plus_task, [a], 1) == 11
    assert executors._ray_call(shared_plus_task, [a], 2) == 12
    assert fake_ray.log == [("get", "run-a")]
    assert executors._ray_call(shared_plus_task, [b], 3) == 23
    assert fake_ray.log == [("get", "run-a"), ("get", "run-b")]
    assert executors._RAY_SHARED == {"run-b": 20}  # one run's data at a time


@pytest.mark.parametrize(
    ("text", "race"),
    [
        ("Initialization failure from server:\nRuntimeError: Starting Ray client server failed. See x.err", True),
        ("Starting Ray client server failed", True),
        ("Initialization failure from server:\npsutil.ZombieProcess: PID still exists but it's a zombie", True),
        ("Initialization failure from server:\npsutil.NoSuchProcess: process no longer exists (pid=3)", True),
        ("Initialization failure from server:\nRuntimeError: Version mismatch", False),
        ("psutil.ZombieProcess: PID still exists but it's a zombie (pid=7)", False),
        ("psutil.NoSuchProcess: process no longer exists (pid=7)", False),
        ("", False),
    ],
)
def test_which_connection_failures_are_the_client_server_race(text, race):
    assert executors._client_server_race(ConnectionAbortedError(text)) is race


def test_a_ray_executor_without_address_is_a_local_ray_that_imports_this_checkout():
    ex = RayExecutor()
    assert (ex.kind, ex.address, ex.jobs, ex.object_store_mb, ex.max_retries) == ("ray", None, None, 256, 3)
    assert (ex.ship_code, ex.local_files, ex._started, ex.workers) == (False, True, False, 0)
    ex = RayExecutor(address="", jobs=3, object_store_mb="100", max_retries="2")  # type: ignore[arg-type]
    assert (ex.address, ex.jobs, ex.object_store_mb, ex.max_retries) == (None, 3, 100, 2)
    assert (ex.ship_code, ex.local_files) == (False, True)


def test_a_ray_executor_on_a_cluster_ships_the_code_and_has_no_local_files():
    ex = RayExecutor(address="ray://head:10001")
    assert (ex.address, ex.ship_code, ex.local_files) == ("ray://head:10001", True, False)
    assert RayExecutor(address="auto", ship_code=False).ship_code is False
    assert RayExecutor(ship_code=True).ship_code is True
    assert RayExecutor(ship_code=1).ship_code is True  # type: ignore[arg-type]


def test_starting_a_local_ray_asks_for_the_jobs_cpus_and_the_object_store(fake_ray):
    ex = RayExecutor(jobs=3, object_store_mb=120).start()
    assert fake_ray.log == [
        (
            "init",
            None,
            {
                "include_dashboard": False,
                "logging_level": "WARNING",
                "log_to_driver": True,
                "num_cpus": 3,
                "object_store_memory": 120 * 1024 * 1024,
            },
        )
    ]
    assert ex._started is True and ex.workers == 4


def test_a_local_ray_without_jobs_gets_the_machine_cpus_and_at_least_80_mb(fake_ray, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    RayExecutor(object_store_mb=10).start()
    kw = fake_ray.log[0][2]
    assert (kw["num_cpus"], kw["object_store_memory"]) == (6, 80 * 1024 * 1024)
    fake_ray.initialized = False
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    RayExecutor(object_store_mb=80).start()
    kw = fake_ray.log[1][2]
    assert (kw["num_cpus"], kw["object_store_memory"]) == (1, 80 * 1024 * 1024)


def test_joining_a_cluster_ships_this_checkouts_packages_as_folders(fake_ray):
    fake_ray.resources = {"CPU": 16.0, "GPU": 1.0}
    ex = RayExecutor(address="ray://head:10001", jobs=2).start()
    assert fake_ray.log == [
        (
            "init",
            "ray://head:10001",
            {
                "include_dashboard": False,
                "logging_level": "WARNING",
                "log_to_driver": True,
                "runtime_env": {
                    "py_modules": [app.__path__[0], device.__path__[0], estimator.__path__[0]],
                    "excludes": ["__pycache__", "*.pyc", "*.png", "*.h5", "*.tflite"],
                },
            },
        )
    ]
    root = str(Path(app.__path__[0]).parent)
    assert fake_ray.log[0][2]["runtime_env"]["py_modules"] == [root + "/app", root + "/device", root + "/estimator"]
    assert ex.workers == 16 and ex._started


def test_a_ray_session_already_running_is_joined_and_left_running(fake_ray):
    fake_ray.initialized = True
    fake_ray.resources = {"CPU": 2.0}
    with RayExecutor(jobs=8) as ex:
        assert ex.workers == 2 and ex._started is False
    assert fake_ray.log == []  # neither started nor shut down


def test_the_executor_it_started_is_shut_down_once(fake_ray):
    ex = RayExecutor(jobs=1)
    with ex as entered:
        assert entered is ex and ex._started
    assert fake_ray.log[1:] == [("shutdown",)] and ex._started is False
    ex.close()
    assert fake_ray.log[1:] == [("shutdown",)]


@pytest.mark.parametrize("resources", [{}, {"GPU": 1.0}, RuntimeError("not connected")])
def test_the_worker_count_is_zero_when_ray_does_not_tell(fake_ray, resources):
    fake_ray.resources = resources
    ex = RayExecutor(jobs=2)
    ex.workers = 5
    assert ex.start().workers == 0


def _race():
    return ConnectionAbortedError(
        "Initialization failure from server:\nRuntimeError: Starting Ray client server failed. See x.err"
    )


def test_the_client_server_race_is_retried_up_to_four_connections(fake_ray):
    fake_ray.init_errors = [_race(), _race(), _race()]
    fake_ray.shutdown_error = RuntimeError("nothing to shut down")  # ignored
    ex = RayExecutor(address="ray://head:10001").start()
    assert [e[0] for e in fake_ray.log] == ["init", "shutdown", "init", "shutdown", "init", "shutdown", "init"]
    assert ex._started and ex.workers == 4


def test_the_fourth_race_in_a_row_is_reported(fake_ray):
    fake_ray.init_errors = [_race(), _race(), _race(), _race(), _race()]
    with pytest.raises(ExecutorError) as err:
        RayExecutor(address="ray://head:10001").start()
    assert str(err.value) == (
        "cannot start the Ray cluster at ray://head:10001: ConnectionAbortedError: Initialization failure from "
        "server:\nRuntimeError: Starting Ray client server failed. See x.err"
    )
    assert [e[0] for e in fake_ray.log] == ["init", "shutdown"] * 3 + ["init"]
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_another_start_failure_is_reported_at_once(fake_ray):
    fake_ray.init_errors = [RuntimeError("port 6379 in use")]
    ex = RayExecutor(jobs=2)
    with pytest.raises(ExecutorError) as err:
        ex.start()
    assert str(err.value) == "cannot start a local Ray: RuntimeError: port 6379 in use"
    assert [e[0] for e in fake_ray.log] == ["init"] and ex._started is False


def lost_on(task):
    return ("lost", task)


def test_ray_tasks_run_on_the_shared_object_put_once_and_yield_as_they_finish(fake_ray):
    ex = RayExecutor(jobs=2, max_retries=5).start()
    del fake_ray.log[:]
    out = list(ex.imap(shared_plus_task, (t for t in [1, 2, 3]), shared=100))
    assert out == [103, 102, 101]
    assert fake_ray.log == [
        ("put", 100),
        ("remote", {"num_cpus": 1, "max_retries": 5, "retry_exceptions": False}),
        ("wait", 1, ["task-1", "task-2", "task-3"]),
        ("get", "shared-1"),
        ("wait", 1, ["task-1", "task-2"]),
        ("wait", 1, ["task-1"]),
    ]


def test_ray_imap_starts_ray_when_needed_and_puts_nothing_for_no_tasks(fake_ray):
    ex = RayExecutor(jobs=2)
    assert list(ex.imap(shared_plus_task, [], shared=1)) == []
    assert [e[0] for e in fake_ray.log] == ["init"] and ex._started


def test_ray_imap_in_a_running_session_does_not_start_another(fake_ray):
    fake_ray.initialized = True
    assert list(RayExecutor().imap(shared_plus_task, [5], shared=1)) == [6]
    assert [e[0] for e in fake_ray.log] == ["put", "remote", "wait", "get"]


def test_a_lost_ray_task_yields_what_on_lost_makes_of_it(fake_ray):
    fake_ray.initialized = True
    fake_ray.fail = {2: FakeRayError("The worker died unexpectedly"), 3: OSError("node gone")}
    got = []

    def on_lost(task, msg):
        got.append((task, msg))
        return ("lost", task)

    out = list(RayExecutor(max_retries=2).imap(shared_plus_task, [1, 2, 3], shared=10, on_lost=on_lost))
    assert out == [("lost", 3), ("lost", 2), 11]
    assert got == [
        (3, "lost after 2 retries: OSError: node gone"),
        (2, "lost after 2 retries: FakeRayError: The worker died unexpectedly"),
    ]


def test_a_lost_ray_task_without_on_lost_stops_the_run_with_its_message(fake_ray):
    fake_ray.initialized = True
    fake_ray.fail = {2: FakeRayError("x" * 400)}
    gen = RayExecutor().imap(shared_plus_task, [1, 2], shared=10)
    with pytest.raises(ExecutorError) as err:
        next(gen)
    assert str(err.value) == "lost after 3 retries: FakeRayError: " + "x" * 300
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert fake_ray.log[-1] == ("cancel", "task-1", True)  # the rest is not left running


def test_a_ray_run_stopped_early_cancels_the_pending_tasks(fake_ray):
    fake_ray.initialized = True
    fake_ray.cancel_error = RuntimeError("already done")  # ignored: the next one is still cancelled
    gen = RayExecutor().imap(shared_plus_task, [1, 2, 3], shared=0)
    assert next(gen) == 3
    gen.close()
    assert fake_ray.log[-2:] == [("cancel", "task-1", True), ("cancel", "task-2", True)]


def test_an_error_that_is_not_a_lost_task_escapes(fake_ray):
    fake_ray.initialized = True
    fake_ray.fail = {1: ValueError("a bug in fn")}
    with pytest.raises(ValueError, match="a bug in fn"):
        list(RayExecutor().imap(shared_plus_task, [1], shared=0, on_lost=lambda t, m: "lost"))


def test_make_executor_local(no_ray):
    ex = make_executor()
    assert isinstance(ex, LocalExecutor) and ex.jobs == 1
    ex = make_executor("local", jobs=3, address="")
    assert isinstance(ex, LocalExecutor) and ex.jobs == 3


def test_make_executor_refuses_an_address_for_the_local_pool():
    with pytest.raises(ExecutorError) as err:
        make_executor("local", 2, "ray://head:10001")
    assert str(err.value) == "--address is for --executor ray"


def test_make_executor_ray(fake_ray):
    ex = make_executor("ray", jobs=4, address="auto")
    assert isinstance(ex, RayExecutor) and (ex.address, ex.jobs, ex._started) == ("auto", 4, False)
    assert fake_ray.log == []  # not started yet


def test_make_executor_ray_without_ray_says_how_to_install_it(no_ray):
    with pytest.raises(ExecutorError) as err:
        make_executor("ray", 2)
    assert str(err.value) == NO_RAY


def test_make_executor_refuses_an_unknown_kind():
    with pytest.raises(ExecutorError) as err:
        make_executor("k8s", 2)
    assert str(err.value) == "--executor must be local or ray, got 'k8s'"


def test_quiet_stdout_sends_prints_to_stderr_and_hands_out_the_real_stdout(capsys):
    real = sys.stdout
    with quiet_stdout() as out:
        print("(raylet) A worker died")
        out.write('{"rows": 4}\n')
        assert sys.stdout is sys.stderr
    assert sys.stdout is real
    assert capsys.readouterr() == ('{"rows": 4}\n', "(raylet) A worker died\n")


# ------------------------------------------------------------------------------------------------
# child.py: the words for a child's death, its last words
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exitcode", "words"),
    [
        (None, "ended without answering"),
        (-11, "crashed (SIGSEGV)"),
        (-6, "crashed (SIGABRT)"),
        (-9, "crashed (SIGKILL)"),
        (-1, "crashed (SIGHUP)"),
        (-999, "crashed (signal 999)"),
        (0, "exited with code 0 without answering"),
        (1, "exited with code 1 without answering"),
        (3, "exited with code 3 without answering"),
    ],
)
def test_how_a_child_died_in_words(exitcode, words):
    assert child._died(exitcode) == words


def _log(tmp_path, text: str | bytes) -> Path:
    p = tmp_path / "child.log"
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return p


def test_the_last_words_are_the_fatal_error_not_the_stack_after_it(tmp_path):
    log = _log(
        tmp_path,
        "loading\nFatal Python error: Segmentation fault\n\nCurrent thread 0x00007f (most recent call first):\n"
        '  File "/x/conv.py", line 3 in convert\nThread 0x00007e (most recent call first):\n'
        "  <no Python frame>\nExtension modules: numpy.core, tensorflow (total: 2)\n",
    )
    assert child._last_words(log) == "Fatal Python error: Segmentation fault"


def test_the_last_words_are_a_tensorflow_check_failure(tmp_path):
    log = _log(tmp_path, "step 1\n  2026 F tf/core/x.cc:12] Check failed: dims == 4  \nstep 2\n")
    assert child._last_words(log) == "2026 F tf/core/x.cc:12] Check failed: dims == 4"


def test_the_first_fatal_line_wins(tmp_path):
    log = _log(tmp_path, "a\nCheck failed: one\nFatal Python error: two\n")
    assert child._last_words(log) == "Check failed: one"


def test_otherwise_the_last_meaningful_line_stripped(tmp_path):
    log = _log(tmp_path, "first\n   second line   \n\n   \n")
    assert child._last_words(log) == "second line"


def test_the_noise_of_tensorflow_and_of_a_stack_is_no_last_word(tmp_path):
    log = _log(
        tmp_path,
        "real message\n"
        "I0000 oneDNN custom operations are on. You may see slightly different numerical results\n"
        "Current thread 0x1 (most recent call first):\n"
        '  File "a.py", line 1 in f\n'
        "Thread 0x2 (most recent call first):\n"
        "Extension modules: numpy\n"
        "    <no Python frame>\n"
        "\t\n",
    )
    assert child._last_words(log) == "real message"


def test_lines_that_only_look_like_noise_are_kept(tmp_path):
    # 'File' must be indented, the thread lines must start the line
    assert child._last_words(_log(tmp_path, "a\nFile not found: x.keras\n")) == "File not found: x.keras"
    assert child._last_words(_log(tmp_path, "a\nthe Current thread 0x1\n")) == "the Current thread 0x1"
    assert child._last_words(_log(tmp_path, "a\nmain Thread 0x1\n")) == "main Thread 0x1"
    assert child._last_words(_log(tmp_path, "a\nno Extension modules:\n")) == "no Extension modules:"
    assert child._last_words(_log(tmp_path, "a\n<no Python frame> x\n")) == "<no Python frame> x"


def test_no_log_or_nothing_useful_means_no_last_words(tmp_path):
    assert child._last_words(tmp_path / "missing.log") == ""
    assert child._last_words(_log(tmp_path, "")) == ""
    assert child._last_words(_log(tmp_path, "\n  \nCurrent thread 0x1:\n")) == ""


def test_the_last_words_are_cut_to_200_characters(tmp_path):
    assert child._last_words(_log(tmp_path, "x" * 300 + "\n")) == "x" * 200
    assert child._last_words(_log(tmp_path, "Fatal Python error: " + "y" * 300)) == "Fatal Python error: " + "y" * 180


def test_only_the_end_of_a_long_log_is_read(tmp_path):
    # a fatal line more than 20000 bytes before the end is not seen; bytes that are not UTF-8 are replaced
    text = b"Fatal Python error: old\n" + b"z" * 20000 + b"\nend \xff\n"
    assert child._last_words(_log(tmp_path, text)) == "end \ufffd"
    # the last 20000 bytes exactly: a fatal line that starts 20000 bytes before the end is seen, one byte more is not
    text = b"Fatal Python error: old\n" + b"z" * 19975 + b"\n"
    assert len(text) == 20000 and child._last_words(_log(tmp_path, text)) == "Fatal Python error: old"
    text = b"Fatal Python error: old\n" + b"z" * 19976 + b"\n"
    assert len(text) == 20001 and child._last_words(_log(tmp_path, text)) == "z" * 200


# ------------------------------------------------------------------------------------------------
# child.run: real spawned children
# ------------------------------------------------------------------------------------------------


def add(a, b):
    return a + b


def fail_with(exc: BaseException):
    raise exc


def say_and_exit(code: int, line: str):
    print("starting the job", flush=True)
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    os._exit(code)


def kill_myself(signum: int):
    print("loading the model", flush=True)
    os.kill(os.getpid(), signum)
    time.sleep(10)


def child_environment():
    with warnings.catch_warnings(record=True) as seen:
        warnings.warn("deprecated thing", UserWarning, stacklevel=1)
    return os.environ.get("TF_CPP_MIN_LOG_LEVEL"), len(seen)


def chatty(n):
    print("TensorFlow says hello on stdout", flush=True)
    os.write(2, b"and on stderr\n")
    return n * 2


def write_pid_and_wait(path: str):
    Path(path).write_text(str(os.getpid()))
    time.sleep(30)


class _Unreadable:
    def __reduce__(self):
        return (fail_with, (ValueError("cannot rebuild"),))


class _Unsendable:
    def __reduce__(self):
        raise TypeError("a lock cannot be sent to a child")


def unreadable():
    return _Unreadable()


def _run(target, args, **kw):
    kw.setdefault("timeout", 60)
    return child.run(target, args, what="reading m.keras", who="the Keras", **kw)


@pytest.fixture
def child_tmp(tmp_path, monkeypatch):
    """The child's log goes into tmp_path: after run() it must be gone."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    yield tmp_path
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "pid") == []


def test_the_child_returns_the_targets_value(child_tmp):
    assert _run(add, (2, 3)) == 5


def test_the_childs_output_goes_to_its_log_not_to_the_app(child_tmp, capfd):
    assert _run(chatty, (21,)) == 42
    assert capfd.readouterr() == ("", "")


def test_the_child_quiets_tensorflow_and_warnings(child_tmp, monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    assert _run(child_environment, ()) == ("2", 0)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    assert _run(child_environment, ()) == ("0", 0)


def test_an_error_of_the_target_is_its_type_and_first_line(child_tmp):
    with pytest.raises(ModelError) as err:
        _run(fail_with, (ValueError("  bad shape (3, 4)\nsecond line\n"),))
    assert str(err.value) == "reading m.keras failed: ValueError: bad shape (3, 4)"


def test_an_error_without_words_is_its_type(child_tmp):
    with pytest.raises(ModelError) as err:
        _run(fail_with, (KeyError(),))
    assert str(err.value) == "reading m.keras failed: KeyError"
    with pytest.raises(ModelError) as err:
        _run(fail_with, (RuntimeError("  \n"),))
    assert str(err.value) == "reading m.keras failed: RuntimeError"


def test_a_long_error_is_cut_to_400_characters(child_tmp):
    with pytest.raises(ModelError) as err:
        _run(fail_with, (ValueError("v" * 1000),))
    assert str(err.value) == "reading m.keras failed: ValueError: " + "v" * 388


def test_a_model_error_keeps_its_own_words_with_passthrough(child_tmp):
    words = "m.keras cannot be loaded by Keras:\n  unknown layer 'Foo'"
    with pytest.raises(ModelError) as err:
        _run(fail_with, (ModelError(words),), passthrough=True)
    assert str(err.value) == words
    with pytest.raises(ModelError) as err:
        _run(fail_with, (ModelError("w" * 3000),), passthrough=True)
    assert str(err.value) == "w" * 2000


def test_a_model_error_without_passthrough_names_the_job(child_tmp):
    with pytest.raises(ModelError) as err:
        _run(fail_with, (ModelError("no such file\nsecond"),))
    assert str(err.value) == "reading m.keras failed: no such file\nsecond"


def test_a_child_that_exits_reports_its_code_and_last_words(child_tmp):
    with pytest.raises(ModelError) as err:
        _run(say_and_exit, (3, "Fatal Python error: PyEval_SaveThread: the GIL is released"))
    assert str(err.value) == (
        "reading m.keras: the Keras process exited with code 3 without answering: "
        "Fatal Python error: PyEval_SaveThread: the GIL is released"
    )


def test_a_child_that_exits_0_without_answering_reports_its_last_printed_line(child_tmp):
    with pytest.raises(ModelError) as err:
        _run(say_and_exit, (0, ""))
    assert str(err.value) == (
        "reading m.keras: the Keras process exited with code 0 without answering: starting the job"
    )


def test_a_crashed_child_reports_its_signal_and_the_fatal_error(child_tmp):
    with pytest.raises(ModelError) as err:
        _run(kill_myself, (signal.SIGSEGV,))
    assert (
        str(err.value) == "reading m.keras: the Keras process crashed (SIGSEGV): Fatal Python error: Segmentation fault"
    )


def test_a_killed_child_reports_its_signal_and_its_last_line(child_tmp):
    with pytest.raises(ModelError) as err:
        _run(kill_myself, (signal.SIGKILL,))
    assert str(err.value) == "reading m.keras: the Keras process crashed (SIGKILL): loading the model"


def test_a_value_not_accepted_counts_as_no_answer(child_tmp):
    with pytest.raises(ModelError) as err:
        _run(add, (2, 3), accept=lambda v: v == 6)
    assert str(err.value) == "reading m.keras: the Keras process exited with code 0 without answering"
    assert _run(add, (2, 4), accept=lambda v: v == 6) == 6


def test_an_unreadable_answer_is_reported(child_tmp):
    with pytest.raises(ModelError) as err:
        _run(unreadable, ())
    assert str(err.value) == "reading m.keras failed: unreadable answer from the Keras process (cannot rebuild)"


def test_a_child_that_cannot_start_is_reported(child_tmp):
    with pytest.raises(ModelError) as err:
        _run(add, (_Unsendable(), 2))
    assert str(err.value) == "reading m.keras: cannot start the Keras process (a lock cannot be sent to a child)"
    assert isinstance(err.value.__cause__, TypeError)


def test_a_child_past_its_timeout_is_stopped(child_tmp):
    with pytest.raises(ModelError) as err:
        _run(write_pid_and_wait, (str(child_tmp / "pid"),), timeout=0.25)
    assert str(err.value) == "reading m.keras: the Keras did not finish within 0.25 s and was stopped"
    with pytest.raises(ModelError) as err:
        _run(write_pid_and_wait, (str(child_tmp / "pid"),), timeout=0.25, timeout_hint="a big model: try again")
    assert str(err.value) == (
        "reading m.keras: the Keras did not finish within 0.25 s and was stopped (a big model: try again)"
    )


def test_a_cancelled_child_is_killed(child_tmp):
    pid_file = child_tmp / "pid"
    with pytest.raises(ModelError) as err:
        _run(write_pid_and_wait, (str(pid_file),), cancelled=pid_file.exists)
    assert str(err.value) == "reading m.keras: cancelled (the Keras process was stopped)"
    pid = int(pid_file.read_text())
    pid_file.unlink()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped


def who_am_i():
    me = multiprocessing.current_process()
    return os.readlink("/proc/self/fd/1"), os.readlink("/proc/self/fd/2"), me.name, me.daemon


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux's /proc")
def test_the_child_is_a_daemon_named_odl_child_writing_to_an_odl_child_log(child_tmp):
    """(recognisable in a process list and in the temporary folder; ends with the app)"""
    out, err, name, daemon = _run(who_am_i, ())
    assert out == err and Path(out).parent == child_tmp
    assert Path(out).name.startswith("odl-child-") and Path(out).name.endswith(".log")
    assert (name, daemon) == ("odl-child", True)


def delete_my_log():
    os.unlink(os.readlink("/proc/self/fd/1"))
    return "cleaned"


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux's /proc")
def test_a_child_that_deleted_its_log_still_answers(child_tmp):
    assert _run(delete_my_log, ()) == "cleaned"


def test_a_pipe_that_cannot_be_made_is_reported(child_tmp, monkeypatch):
    def no_pipe(duplex=True):
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(multiprocessing.get_context("spawn"), "Pipe", no_pipe)
    with pytest.raises(ModelError) as err:
        _run(add, (1, 2))
    assert str(err.value) == "reading m.keras: cannot start the Keras process ([Errno 24] Too many open files)"


def test_cancelling_is_noticed_within_a_fraction_of_a_second(child_tmp):
    asked: list[float] = []

    def cancelled():
        asked.append(time.monotonic())
        return len(asked) == 4

    with pytest.raises(ModelError, match="cancelled"):
        _run(write_pid_and_wait, (str(child_tmp / "pid"),), cancelled=cancelled)
    assert asked[3] - asked[0] < 2.0  # asked every 0.1 s: 0.3 s (slack for a loaded machine; a 1.1 s poll: 3.3 s)


@pytest.fixture
def joins(monkeypatch):
    """The timeouts the runner waits for its child's end with."""
    seen: list = []
    join = multiprocessing.context.SpawnProcess.join

    def spy(self, timeout=None):
        seen.append(timeout)
        return join(self, timeout)

    monkeypatch.setattr(multiprocessing.context.SpawnProcess, "join", spy)
    return seen


def test_a_child_that_answered_is_waited_for_at_most_10_s(child_tmp, joins):
    assert _run(add, (1, 2)) == 3
    assert joins == [10]


def test_a_child_that_died_is_waited_for_at_most_10_s(child_tmp, joins):
    with pytest.raises(ModelError, match="exited with code 4"):
        _run(say_and_exit, (4, ""))
    assert joins == [10]


def test_a_stopped_child_is_waited_for_at_most_10_s(child_tmp, joins):
    with pytest.raises(ModelError, match="cancelled"):
        _run(write_pid_and_wait, (str(child_tmp / "pid"),), cancelled=lambda: True)
    assert joins == [10]


# ------------------------------------------------------------------------------------------------
# child._child, called in this process (as the child runs it): what it sends back, where its output goes
# ------------------------------------------------------------------------------------------------


class FakeConn:
    def __init__(self):
        self.sent: list = []
        self.closed = False

    def send(self, obj):
        self.sent.append(obj)

    def close(self):
        self.closed = True


@pytest.fixture
def in_child(tmp_path, monkeypatch):
    """``call(target, *args)`` runs ``child._child`` here with a fake pipe; returns ``(conn, warnings)``.  Its
    redirection of fds 1 and 2, faulthandler, warning filters and environment are undone afterwards."""
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "unset")
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    log = tmp_path / "child.log"

    def call(target, *args, log_path=log):
        conn = FakeConn()
        saved = os.dup(1), os.dup(2)
        was_enabled = faulthandler.is_enabled()
        try:
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                child._child(conn, target, args, str(log_path))
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            if was_enabled:
                faulthandler.enable(sys.__stderr__)
            else:
                faulthandler.disable()
        return conn, seen

    call.log = log  # type: ignore[attr-defined]
    return call


def write_to_fds(n):
    os.write(1, b"stdout line\n")
    os.write(2, b"stderr line\n")
    return n + 1


def test_the_child_sends_the_value_and_closes_its_end(in_child):
    conn, seen = in_child(add, 2, 3)
    assert conn.sent == [("ok", 5)] and conn.closed
    assert seen == []  # nothing said outside the log


def test_the_child_appends_its_output_to_the_log(in_child, capfd):
    in_child.log.write_bytes(b"earlier\n")
    conn, _ = in_child(write_to_fds, 1)
    assert conn.sent == [("ok", 2)]
    assert in_child.log.read_bytes() == b"earlier\nstdout line\nstderr line\n"
    assert capfd.readouterr() == ("", "")


def test_a_child_without_a_log_still_runs_the_job(in_child, tmp_path, capfd):
    conn, _ = in_child(write_to_fds, 1, log_path=tmp_path / "gone" / "child.log")
    assert conn.sent == [("ok", 2)]
    assert capfd.readouterr() == ("stdout line\n", "stderr line\n")


def segfault_in_a_fork():
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the forked process dies here
        try:
            faulthandler._sigsegv()
        finally:
            os._exit(1)
    return os.waitpid(pid, 0)[1]


def test_a_segfault_in_the_child_leaves_its_fatal_error_in_the_log(in_child):
    conn, _ = in_child(segfault_in_a_fork)
    assert conn.sent == [("ok", signal.SIGSEGV)]
    assert in_child.log.read_text().splitlines()[0] == "Fatal Python error: Segmentation fault"


def test_the_child_sets_tensorflows_log_level_and_ignores_warnings(in_child, monkeypatch):
    conn, _ = in_child(child_environment)
    assert conn.sent == [("ok", ("2", 0))] and os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    conn, _ = in_child(child_environment)
    assert conn.sent == [("ok", ("0", 0))]


@pytest.mark.parametrize(
    ("exc", "answer"),
    [
        (ValueError("  bad shape (3, 4)\nsecond line\n"), ("error", "ValueError: bad shape (3, 4)")),
        (ValueError("one line"), ("error", "ValueError: one line")),
        (KeyError(), ("error", "KeyError")),
        (RuntimeError("  \n"), ("error", "RuntimeError")),
        (SystemExit(3), ("error", "SystemExit: 3")),
        (ValueError("v" * 1000), ("error", "ValueError: " + "v" * 388)),
        (
            ModelError("m.keras cannot be loaded:\n  unknown layer"),
            ("model_error", "m.keras cannot be loaded:\n  unknown layer"),
        ),
        (ModelError("w" * 3000), ("model_error", "w" * 2000)),
    ],
)
def test_what_the_child_sends_for_an_error(in_child, exc, answer):
    conn, _ = in_child(fail_with, exc)
    assert conn.sent == [answer] and conn.closed
