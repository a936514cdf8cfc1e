"""What the WISDM import refuses to write into a dataset (exploratory session, 2026-12-07): a user already
imported (the same file imported twice, or copied elsewhere and imported again), and a user whose samples are
not m/s² with gravity (a file in g, in mg, or of linear acceleration).  Exact report text.

Every test name holds ``wisdm`` (the mutation target ``label_io`` selects its tests by name)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.core.labels import import_wisdm
from app.core.store import Store

CLASSES = ("Walking", "Jogging", "Sitting")
T0 = 1_000_000_000
AT_20HZ = 50_000_000


def _file(folder: Path, name: str, users: dict[str, tuple[float, float, float]], n: int = 40) -> Path:
    """``n`` walking records per user, every one ``(x, y, z)``, 20 Hz."""
    lines = [f"{u},Walking,{T0 + k * AT_20HZ},{x},{y},{z};" for u, (x, y, z) in users.items() for k in range(n)]
    p = folder / name
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


@pytest.fixture()
def store(tmp_path):
    s = Store(tmp_path / "db")
    yield s
    s.close()


def _dataset(store: Store) -> int:
    return store.create_dataset(store.ensure_user("u").id, "d", CLASSES).id


def test_a_wisdm_file_imported_twice_is_not_imported_again(tmp_path, store):
    """Was: a second recording "WISDM 7" of the same samples, without a word (twice that user's windows, copies
    on both sides of a train/test split).  A copy of the file elsewhere is the same data too; a user new in the
    file is imported."""
    did = _dataset(store)
    first = _file(tmp_path, "a.txt", {"7": (0.5, 9.5, 0.25)})
    import_wisdm(store, first, did, CLASSES)
    copy = tmp_path / "copy" / "a.txt"
    copy.parent.mkdir()
    shutil.copy(first, copy)
    for again in (first, copy):
        res = import_wisdm(store, again, did, CLASSES)
        assert res.recordings == [] and res.already == ["7"] and res.warn
        assert res.summary() == [
            "Imported 0 recording(s) with 0 label(s), 0.0 s from a.txt.",
            "Already in this dataset, not imported again: WISDM 7 (delete its recording first to import it again).",
        ]
    assert [r.name for r in store.recordings("accel", did)] == ["WISDM 7"]
    res = import_wisdm(store, _file(tmp_path, "b.txt", {"7": (0.5, 9.5, 0.25), "8": (0.1, 9.7, 0.3)}), did, CLASSES)
    assert [r.name for r in res.recordings] == ["WISDM 8"] and res.already == ["7"]
    res = import_wisdm(store, tmp_path / "b.txt", did, CLASSES)  # two users already there: both named
    assert res.summary()[1] == (
        "Already in this dataset, not imported again: WISDM 7, WISDM 8 (delete its recording first to import it again)."
    )


def test_a_wisdm_file_in_one_dataset_is_imported_into_another(tmp_path, store):
    """Only the dataset imported into counts: the same user in another dataset (of this or another user) is not
    'already there'."""
    did = _dataset(store)
    other = store.create_dataset(store.ensure_user("v").id, "e", CLASSES).id
    f = _file(tmp_path, "a.txt", {"7": (0.5, 9.5, 0.25)})
    import_wisdm(store, f, did, CLASSES)
    res = import_wisdm(store, f, other, CLASSES)
    assert [r.name for r in res.recordings] == ["WISDM 7"] and res.already == [] and not res.warn
    assert [r.name for r in store.recordings("accel", other)] == ["WISDM 7"]


@pytest.mark.parametrize(
    ("magnitude", "refused", "looks"),
    [
        (3.0, True, "these look like g (multiply x, y and z by 9.81) or like acceleration with gravity removed."),
        (3.4, False, ""),
        (29.0, False, ""),
        (30.0, True, "these look like mg or another unit."),
    ],
)
def test_a_wisdm_users_median_magnitude_is_refused_below_a_third_or_above_three_times_gravity(
    tmp_path, store, magnitude, refused, looks
):
    """9.8 / 3 = 3.27 and 3 × 9.8 = 29.4 m/s² are the limits; which words the refusal uses follows the lower one."""
    did = _dataset(store)
    res = import_wisdm(store, _file(tmp_path, "m.txt", {"5": (0.0, magnitude, 0.0)}), did, CLASSES)
    assert [r.name for r in res.recordings] == ([] if refused else ["WISDM 5"])
    assert res.wrong_units == ({"5": pytest.approx(magnitude)} if refused else {})
    if refused:
        assert res.summary()[1].endswith(looks)


@pytest.mark.parametrize(
    ("xyz", "median", "looks"),
    [
        (
            (0.05, 0.97, 0.02),
            "0.971",
            "these look like g (multiply x, y and z by 9.81) or like acceleration with gravity removed.",
        ),
        ((50.0, 970.0, 20.0), "971", "these look like mg or another unit."),
    ],
)
def test_a_wisdm_user_in_other_units_is_not_imported(tmp_path, store, xyz, median, looks):
    """Was: a file in g imported as m/s² without a word (every sample ten times too small for the model); one in
    mg lost the lines beyond ±1000 m/s² and imported the rest, a thousand times too large.  The other users of
    the file are imported."""
    did = _dataset(store)
    res = import_wisdm(store, _file(tmp_path, "g.txt", {"5": xyz, "6": (0.5, 9.5, 0.25)}), did, CLASSES)
    assert [r.name for r in res.recordings] == ["WISDM 6"] and res.warn
    assert res.summary()[1] == (
        f"Not imported: user 5's accelerations are not in m/s² with gravity (their median magnitude is {median} "
        "m/s², about 9.8 expected): WISDM text holds m/s² as the phone measured them; " + looks
    )
