"""Host-side simulation of personalization on a user's own windows as the recommender's accuracy model."""

from __future__ import annotations

import pytest

from app.core import datasets as ds
from app.core.simulate import simulate
from estimator.arch import paper_cnn
from estimator.recommend import MeasuredAccuracy, recommend
from tests.datakit import real_lines, write

CLASSES = ("walking", "jogging", "stairs", "sitting", "standing")


@pytest.fixture(scope="module")
def user_rs(tmp_path_factory, shared_data) -> ds.RecordingSet:
    d = tmp_path_factory.mktemp("sim")
    return ds.load_wisdm(write(d, "data_1600_accel_phone.txt", real_lines(shared_data, "1600", 500)))


@pytest.fixture(scope="module")
def general(user_rs, shared_data):
    """Small general models for T=20 and 40 pretrained on two other real subjects (host engine, seconds)."""
    from app.core.loso import pretrain_general

    others = ds.load_wisdm(shared_data / "wisdm2019_phone_accel" / "raw" / "phone" / "accel", subjects=["1604", "1606"])
    out = {}
    for T in (20, 40):
        tr, va = ds.split_chronological(others, 0.9)
        wt, wv = ds.make_windows(tr, T, T // 2, CLASSES), ds.make_windows(va, T, T, CLASSES)
        arch = paper_cnn(T, 5, CLASSES)
        w, _ = pretrain_general(arch, wt.x, wt.y, wv.x, wv.y, epochs=3, patience=3, lr=0.01, batch=32, seed=0)
        out[T] = (arch, w)
    return out


def test_simulate_measures_every_T_mode_epoch_and_feeds_the_recommender(user_rs, general):
    sim = simulate(user_rs, general, modes=("tl", "full"), epochs=(1, 3))
    assert set(sim.table) == {(T, m, e) for T in (20, 40) for m in ("tl", "full") for e in (1, 3)}
    assert all(0.0 <= v <= 1.0 for v in sim.table.values())
    # personalizing helps this unseen user compared with the general model, at the largest budget
    assert max(sim.table[(T, "full", 3)] for T in (20, 40)) > min(sim.none.values())
    # deterministic
    again = simulate(user_rs, general, sizes=[20], modes=("full",), epochs=(1, 3))
    assert again.table[(20, "full", 3)] == sim.table[(20, "full", 3)]
    acc = sim.accuracy_model()
    assert isinstance(acc, MeasuredAccuracy)
    assert acc(20, "full", 3) == sim.table[(20, "full", 3)] and acc(40, "tl", 0) == sim.none[40]
    assert sim(20, "full", 10) == sim.table[(20, "full", 3)]  # nearest simulated epoch count below
    rec = recommend(
        input_sizes=(20, 40), modes=("tl", "full"), epochs=(1, 3), accuracy=acc, power_source="charging", n_windows=200
    )
    assert rec.choice is not None
    assert rec.choice["accuracy"] == pytest.approx(max(r["accuracy"] for r in rec.table if r["feasible"]), abs=0.0021)
    assert all(r["accuracy_source"].startswith("measured") for r in rec.table)


def test_simulate_rejects_bad_input(user_rs, general):
    with pytest.raises(ValueError, match="epochs"):
        simulate(user_rs, general, epochs=(0,))
    with pytest.raises(ValueError, match="no general model for T=60"):
        simulate(user_rs, general, sizes=[60])
    with pytest.raises(ValueError, match=r"^modes deep not allowed \(tl, full, last\)$"):
        simulate(user_rs, general, modes=("deep",))
