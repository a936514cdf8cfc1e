"""Where the tasks of a sweep (or of ``odlstudio loso``) run: a local process pool or a Ray cluster (issue 18).

An executor runs ``fn(shared, task)`` for every task and yields the results **as they finish** (not in
task order).  ``shared`` is the big read-only input every task needs (the recordings): it is handed over
once, never pickled per task —

* :class:`LocalExecutor` (the default, no extra dependency): ``jobs`` worker processes; ``shared`` is
  inherited by the forked workers (or pickled once per worker where fork does not exist);
  ``jobs=1`` runs in this process.
* :class:`RayExecutor` (``pip install 'odl-studio[cluster]'``): ``shared`` goes once into Ray's object
  store (workers on the same node map it without a copy) and each worker process deserializes it once;
  a task whose worker or node dies is retried (``max_retries``); ``address`` ``None`` starts a small
  local Ray, ``"auto"`` joins the cluster this machine is part of, ``"ray://host:port"`` connects a
  client to a remote cluster (then the code of this checkout is shipped to the workers, so every node
  computes with the same code as the driver).

``fn`` must be a module-level function and must catch its own errors (a task's failure is part of its
result); an exception that escapes it stops the run.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from typing import Any, Callable, Iterable, Iterator

__all__ = ["ExecutorError", "LocalExecutor", "RayExecutor", "make_executor", "quiet_stdout", "RAY_INSTALL_HINT"]

RAY_INSTALL_HINT = "pip install 'odl-studio[cluster]' (or: pip install 'ray[default]')"


class ExecutorError(RuntimeError):
    """An executor that cannot start (Ray missing, cluster unreachable); the message says what to do."""


# ------------------------------------------------------------------------------------------------
# local process pool
# ------------------------------------------------------------------------------------------------

_SHARED: Any = None


def _init_local(shared: Any) -> None:
    global _SHARED
    _SHARED = shared
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:  # workers compete for the cores: be polite to the other processes on the machine
        os.nice(5)
    except (AttributeError, OSError):
        pass


def _call_local(item: tuple) -> Any:
    fn, task = item
    return fn(_SHARED, task)


class LocalExecutor:
    """``jobs`` worker processes on this machine (``jobs=1``: in this process)."""

    kind = "local"
    local_files = True  # workers see this machine's files (the general-model cache)

    def __init__(self, jobs: int = 1):
        self.jobs = max(1, int(jobs))
        self.workers = self.jobs

    def __enter__(self) -> "LocalExecutor":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def close(self) -> None:
        pass

    def imap(
        self,
        fn: Callable[[Any, Any], Any],
        tasks: Iterable,
        shared: Any = None,
        on_lost: Callable[[Any, str], Any] | None = None,
    ) -> Iterator[Any]:
        """``fn(shared, task)`` for every task, yielded as they finish.  (``on_lost`` is for executors
        that can lose a task; a local worker that dies stops the run.)"""
        tasks = list(tasks)
        if self.jobs == 1 or len(tasks) <= 1:
            for t in tasks:
                yield fn(shared, t)
            return
        import multiprocessing as mp  # noqa: PLC0415

        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        ctx = mp.get_context(method)
        with ctx.Pool(min(self.jobs, len(tasks)), initializer=_init_local, initargs=(shared,)) as pool:
            yield from pool.imap_unordered(_call_local, [(fn, t) for t in tasks], chunksize=1)


# ------------------------------------------------------------------------------------------------
# Ray
# ------------------------------------------------------------------------------------------------

#: Per Ray worker process: the shared object of the current run, deserialized once (key: object id).
_RAY_SHARED: dict[str, Any] = {}


def _ray_call(fn: Callable, shared_box: list, task: Any) -> Any:
    """Runs in a Ray worker.  ``shared_box`` is ``[ObjectRef]`` (a ref inside a list is not resolved by
    Ray), so the shared object is fetched from the object store only on a worker's first task."""
    import ray  # noqa: PLC0415

    ref = shared_box[0]
    key = ref.hex()
    if key not in _RAY_SHARED:
        _RAY_SHARED.clear()  # one run's data at a time per worker
        _RAY_SHARED[key] = ray.get(ref)
    return fn(_RAY_SHARED[key], task)


def _import_ray():
    try:
        import ray  # noqa: PLC0415
    except ImportError:
        raise ExecutorError(f"--executor ray needs Ray, which is not installed: {RAY_INSTALL_HINT}") from None
    return ray


#: Connections tried on a ``ray://`` cluster whose client server died while starting (see below).
CLIENT_ATTEMPTS = 4


#: How Ray's proxy reports, in the connection's failed initialisation, that the client server it forked died
#: while starting: psutil finding the process already a zombie or gone while the proxy waited for it to become
#: the client server (``start_specific_server``).  Its own check says "Starting Ray client server failed".
_PSUTIL_SIGNS = ("ZombieProcess", "NoSuchProcess")


def _unreachable(address: str | None) -> str | None:
    """Why a cluster's GCS address ``host:port`` does not answer a TCP connection (None: it does, or the
    address is not of that form).  Ray itself retries such an address for many minutes, printing only its own
    log lines; ``auto`` and ``ray://`` fail by themselves."""
    if not address or address == "auto" or "://" in address:
        return None
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5.0).close()
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__
    return None


def _client_server_race(exc: BaseException) -> bool:
    """The Ray client's server for this connection died while the cluster forked it (a race in Ray's proxy,
    ray-project/ray#63202: a few percent of connections, more on a loaded head node).  Nothing ran yet, so
    connecting again is safe."""
    text = str(exc)
    if "Starting Ray client server failed" in text:
        return True
    return "Initialization failure from server" in text and any(sign in text for sign in _PSUTIL_SIGNS)


class RayExecutor:
    """Tasks on Ray.  Joins an already initialised Ray session if there is one (and leaves it running),
    otherwise starts one (``address``) and shuts it down on :meth:`close`."""

    kind = "ray"

    def __init__(
        self,
        address: str | None = None,
        jobs: int | None = None,
        object_store_mb: int = 256,
        max_retries: int = 3,
        ship_code: bool | None = None,
    ):
        self.address = address or None
        self.jobs = jobs
        self.object_store_mb = int(object_store_mb)
        self.max_retries = int(max_retries)
        # a remote cluster runs the driver's code only if it is shipped; a local Ray imports it from here
        self.ship_code = bool(self.address) if ship_code is None else bool(ship_code)
        self.local_files = self.address is None
        self._started = False
        self.workers = 0

    def start(self) -> "RayExecutor":
        ray = _import_ray()
        if not ray.is_initialized():
            why = _unreachable(self.address)
            if why is not None:
                raise ExecutorError(
                    f"cannot reach the Ray cluster at {self.address}: {why} (check --address: the head node's "
                    "address as 'ray start --head' prints it, 'auto' on a node of the cluster, or ray://host:port)"
                )
            kw: dict = {"include_dashboard": False, "logging_level": "WARNING", "log_to_driver": True}
            if self.ship_code:
                import app  # noqa: PLC0415
                import device  # noqa: PLC0415
                import estimator  # noqa: PLC0415

                # as folder paths, not module objects: Ray's client copies the runtime_env (a module
                # object cannot be copied: ray:// failed before connecting)
                kw["runtime_env"] = {
                    "py_modules": [m.__path__[0] for m in (app, device, estimator)],
                    "excludes": ["__pycache__", "*.pyc", "*.png", "*.h5", "*.tflite"],
                }
            if self.address is None:
                kw.update(num_cpus=int(self.jobs or os.cpu_count() or 1))
                kw["object_store_memory"] = max(80, self.object_store_mb) * 1024 * 1024
            for attempt in range(CLIENT_ATTEMPTS):
                try:
                    ray.init(address=self.address, **kw)
                    break
                except Exception as exc:  # noqa: BLE001 - Ray raises many kinds (ConnectionError, RuntimeError ...)
                    if _client_server_race(exc) and attempt + 1 < CLIENT_ATTEMPTS:
                        try:  # drop what the failed connection left, then ask the cluster again
                            ray.shutdown()
                        except Exception:  # noqa: BLE001
                            pass
                        continue
                    where = f"the Ray cluster at {self.address}" if self.address else "a local Ray"
                    raise ExecutorError(f"cannot start {where}: {type(exc).__name__}: {exc}") from None
            self._started = True
        try:
            self.workers = int(ray.cluster_resources().get("CPU", 0))
        except Exception:  # noqa: BLE001 - informational only
            self.workers = 0
        return self

    def __enter__(self) -> "RayExecutor":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._started:
            import ray  # noqa: PLC0415

            ray.shutdown()
            self._started = False

    def imap(
        self,
        fn: Callable[[Any, Any], Any],
        tasks: Iterable,
        shared: Any = None,
        on_lost: Callable[[Any, str], Any] | None = None,
    ) -> Iterator[Any]:
        """As :meth:`LocalExecutor.imap`; a task still lost after its retries (worker or node died) yields
        ``on_lost(task, message)`` (or raises :class:`ExecutorError` without ``on_lost``)."""
        ray = _import_ray()
        if not ray.is_initialized():
            self.start()
        tasks = list(tasks)
        if not tasks:
            return
        ref = ray.put(shared)
        remote = ray.remote(num_cpus=1, max_retries=self.max_retries, retry_exceptions=False)(_ray_call)
        of = {}
        for t in tasks:
            of[remote.remote(fn, [ref], t)] = t
        pending = list(of)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for d in done:
                    try:
                        res = ray.get(d)
                    except (ray.exceptions.RayError, OSError) as exc:
                        msg = f"lost after {self.max_retries} retries: {type(exc).__name__}: {str(exc)[:300]}"
                        if on_lost is None:
                            raise ExecutorError(msg) from None
                        res = on_lost(of[d], msg)
                    yield res
        finally:
            for p in pending:  # stopped early (Ctrl-C, a store error): do not leave work running
                try:
                    ray.cancel(p, force=True)
                except Exception:  # noqa: BLE001
                    pass
            del ref


def make_executor(kind: str = "local", jobs: int = 1, address: str | None = None):
    """``local`` or ``ray`` (raises :class:`ExecutorError` with the install hint when Ray is missing)."""
    if kind == "local":
        if address:
            raise ExecutorError("--address is for --executor ray")
        return LocalExecutor(jobs)
    if kind == "ray":
        _import_ray()
        return RayExecutor(address=address, jobs=jobs)
    raise ExecutorError(f"--executor must be local or ray, got {kind!r}")


@contextlib.contextmanager
def quiet_stdout() -> Iterator[Any]:
    """For the time of a command that runs on an executor, what anything prints to stdout goes to stderr; the
    block gets the real stdout to write the command's results to.  A CLI's stdout holds its results
    (``--json``: exactly one JSON object), and Ray's driver prints its workers' and raylet's messages
    ("(raylet) A worker died ...") to stdout at any moment while it is connected, which broke the JSON of
    ``sweep --executor ray``."""
    stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        yield stdout
