"""Issue 18 items 2-3: the Ray executor computes the same rows as the local pool, ships the data once and
retries a task whose worker died.  Runs on a small local Ray (2 CPUs, 100 MB object store, no dashboard),
shut down at the end of the module; skipped with a message when Ray is not installed."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[test]' or '.[cluster]')")

from app.core import loso  # noqa: E402
from app.core.executors import LocalExecutor, RayExecutor  # noqa: E402
from app.core.sweep import parse_spec, plan_sweep, run_sweep  # noqa: E402
from tests.core.test_sweep import FAST, comparable, comparable_loso, spec_doc  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ray_session():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(
        num_cpus=2,
        object_store_memory=100 * 1024 * 1024,
        include_dashboard=False,
        logging_level="WARNING",
        log_to_driver=False,
    )
    try:

        @ray.remote
        def where():
            import app

            return app.__file__

        # the workers run this checkout's code (the rows compared below are computed by it)
        assert ray.get(where.remote()) == str(ROOT / "app" / "__init__.py")
        yield ray
    finally:
        ray.shutdown()


def test_pool_and_ray_give_identical_rows(ray_session, tiny_wisdm, tmp_path):
    spec = parse_spec(spec_doc(tiny_wisdm))  # 2 subjects x 2 T x 2 modes
    pool = run_sweep(spec, tmp_path / "pool", LocalExecutor(2), progress=False)
    loso._DATA_CACHE.clear()  # the Ray workers must get the recordings from the object store
    with RayExecutor(jobs=2) as ex:
        on_ray = run_sweep(spec, tmp_path / "ray", ex, progress=False)
        assert ex.workers == 2 and ray.is_initialized()
    assert ray.is_initialized()  # a session the executor joined is left running
    assert not pool.errors and not on_ray.errors and on_ray.executor == "ray"
    assert len(pool.rows) == len(on_ray.rows) == 8
    assert comparable(pool.rows) == comparable(on_ray.rows)
    # the tasks sent to the workers are small: the data is not pickled into them
    plan = plan_sweep(spec)
    data_bytes = sum(s.data.nbytes for rs in plan.data.values() for s in rs.segments)
    assert data_bytes > 50_000 and all(len(pickle.dumps(t)) < data_bytes / 10 for t in plan.tasks)


def test_loso_on_ray_matches_the_pool(ray_session, tiny_wisdm, tmp_path):
    cfg = loso.LosoConfig(dataset="wisdm2019", data=str(tiny_wisdm), sizes=(20,), **FAST)
    a = loso.run_loso(cfg, tmp_path / "a", jobs=2, progress=False)
    b = loso.run_loso(cfg, tmp_path / "b", jobs=2, progress=False, executor=RayExecutor(jobs=2))
    assert not a.errors and not b.errors and len(b.rows) == 9
    assert comparable_loso(a.rows) == comparable_loso(b.rows)
    again = loso.run_loso(cfg, tmp_path / "b", jobs=2, progress=False, executor=RayExecutor(jobs=2))
    assert again.tasks_run == 0  # loso's own JSONL resume is unchanged on Ray


def die_once(marker: str, task: int) -> tuple[int, int]:
    """Kills its worker process the first time it runs task 1 (as a lost node would)."""
    if task == 1 and not os.path.exists(marker):
        Path(marker).write_text("x")
        os._exit(1)
    return task, os.getpid()


def test_a_task_whose_worker_died_is_retried(ray_session, tmp_path):
    marker = str(tmp_path / "died")
    out = sorted(RayExecutor(jobs=2).imap(die_once, [0, 1, 2], marker))
    assert [t for t, _ in out] == [0, 1, 2] and os.path.exists(marker)
    os.remove(marker)
    ex = RayExecutor(jobs=2, max_retries=0)
    lost = list(ex.imap(die_once, [1], marker, on_lost=lambda t, msg: ("lost", t, msg)))
    assert lost[0][:2] == ("lost", 1) and "lost after 0 retries" in lost[0][2]


def test_cli_sweep_and_loso_on_ray(ray_session, tiny_wisdm, tmp_path, capsys):
    from app.cli import main
    from tests.core.test_sweep import toml_text

    spec_file = tmp_path / "s.toml"
    spec_file.write_text(toml_text(spec_doc(tiny_wisdm, T=20)))
    argv = ["sweep", str(spec_file), "--results", str(tmp_path), "--executor", "ray", "--json", "--quiet"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["executor"] == "ray" and out["rows"] == 4 and out["tasks_run"] == 2


class Shipped:
    """A shared object that counts its picklings (in the driver) and unpicklings (in each worker process)."""

    pickled = 0
    unpickled = 0

    def __init__(self, payload: bytes):
        self.payload = payload

    def __reduce__(self):
        Shipped.pickled += 1
        return (_unpickle_shipped, (self.payload,))


def _unpickle_shipped(payload: bytes) -> Shipped:
    Shipped.unpickled += 1
    return Shipped(payload)


def report_unpickled(shared: Shipped, task: int) -> tuple[int, int, int, int]:
    return task, os.getpid(), Shipped.unpickled, len(shared.payload)


def test_the_shared_data_is_shipped_once_not_per_task(ray_session):
    """Item 2: the data goes into the object store once (one pickling in the driver) and each worker process
    deserializes it once, however many tasks it runs (pickled into every task, both would count tasks)."""
    Shipped.pickled = 0
    out = list(RayExecutor(jobs=2).imap(report_unpickled, range(8), Shipped(bytes(300_000))))
    assert sorted(t for t, *_ in out) == list(range(8)) and all(n == 300_000 for *_, n in out)
    assert Shipped.pickled == 1
    pids = {pid for _, pid, _, _ in out}
    assert len(pids) < 8  # some worker ran several tasks: the count below would show a reload
    assert all(unpickled == 1 for _, _, unpickled, _ in out), out
