"""The one activity -> model class rule (``app.core.classmap``) and every job that uses it: ``odlstudio
personalize``'s user data (text and windows export), training rounds / "Simulate on my windows" (labels in
the app's store) and the dataset selection of LOSO and pretraining.  ST's zoo models spell their classes
``Jogging, Stationary, Stairs, Walking`` (WISDM) and ``Stationary, Walking, Jogging, Biking``
(mobility_v1); the app's activities are lower-case canonical names.  No ../shared needed."""

from __future__ import annotations

import numpy as np
import pytest

from app.core import datasets as ds
from app.core.classmap import ClassMapError, class_map
from app.core.models import ST_MOBILITY_CLASSES, ST_WISDM_CLASSES
from app.core.personalize import PersonalizeError, load_user_data

WISDM2019 = ("walking", "jogging", "stairs", "sitting", "standing", "typing", "teeth")
ST_DEFAULT_STATIONARY = ["stationary", "sitting", "standing"]


def test_st_wisdm_classes_gather_the_wisdm_activities_by_canonical_name():
    cm = class_map(ST_WISDM_CLASSES)
    assert cm.to_dict() == {
        "Jogging": ["jogging"],
        "Stationary": ["stationary", "sitting", "standing"],
        "Stairs": ["stairs", "upstairs", "downstairs"],
        "Walking": ["walking"],
    }
    assert cm.mapping(WISDM2019) == {
        "walking": "Walking",
        "jogging": "Jogging",
        "stairs": "Stairs",
        "sitting": "Stationary",
        "standing": "Stationary",
    }
    # any spelling of an activity, the model's spelling out
    assert [cm.class_of(a) for a in ("Sitting", "UPSTAIRS", "walking_downstairs", "running", "typing")] == [
        "Stationary",
        "Stairs",
        "Stairs",
        "Jogging",
        None,
    ]
    assert cm.unserved(WISDM2019) == []


def test_mobility_v1_biking_is_not_served_by_wisdm2019():
    cm = class_map(ST_MOBILITY_CLASSES)
    assert cm.mapping(WISDM2019) == {
        "walking": "Walking",
        "jogging": "Jogging",
        "sitting": "Stationary",
        "standing": "Stationary",
    }
    assert cm.unserved(WISDM2019) == ["Biking"]
    assert cm.class_of("stairs") is None  # not a mobility_v1 class; left out unless mapped explicitly
    assert class_map(ST_MOBILITY_CLASSES, "Walking=walking+stairs").class_of("stairs") == "Walking"


@pytest.mark.parametrize(
    "spec",
    [
        "Jogging=jogging,Stationary=sitting+standing,Stairs=stairs,Walking=walking",  # the command line
        "jogging=jogging,stationary=Sitting+STANDING,stairs=stairs,walking=walking",
        ["Jogging", "stationary", "Stairs", "walking"],
        {"Jogging": ["jogging"], "Stationary": "sitting+standing", "stairs": ["stairs"], "Walking": ["walking"]},
    ],
)
def test_explicit_mappings_match_by_canonical_name_and_keep_the_models_spelling(spec):
    cm = class_map(ST_WISDM_CLASSES, spec)
    assert set(cm.sources) == set(ST_WISDM_CLASSES)
    assert cm.mapping(WISDM2019) == {
        "walking": "Walking",
        "jogging": "Jogging",
        "stairs": "Stairs",
        "sitting": "Stationary",
        "standing": "Stationary",
    }


def test_a_subset_keeps_the_others_out():
    cm = class_map(ST_WISDM_CLASSES, "walking,stationary")
    assert cm.mapping(WISDM2019) == {"walking": "Walking", "sitting": "Stationary", "standing": "Stationary"}
    assert cm.classes == ST_WISDM_CLASSES  # indices stay the model's softmax order


def test_bad_specifications_are_named():
    with pytest.raises(ClassMapError, match=r"Sitting: not classes of the model \(classes: Jogging, Stat"):
        class_map(ST_WISDM_CLASSES, "Walking,Sitting")
    with pytest.raises(ClassMapError, match="'sitting' is mapped to two classes, Stationary and Walking"):
        class_map(ST_WISDM_CLASSES, "Stationary=sitting,Walking=walking+sitting")
    with pytest.raises(ClassMapError, match="names no activity after '='"):
        class_map(ST_WISDM_CLASSES, "Walking=")
    with pytest.raises(ClassMapError, match="no activities selected"):
        class_map(ST_WISDM_CLASSES, " , ")


def test_a_merged_activity_that_is_a_class_itself_is_not_gathered():
    cm = class_map(("Stairs", "Upstairs", "Walking"))
    assert cm.to_dict()["Stairs"] == ["stairs", "downstairs"] and cm.class_of("upstairs") == "Upstairs"
    # an unsplit 'stairs' cannot be told apart for a model with up/down classes: left out
    assert class_map(("Upstairs", "Downstairs")).class_of("stairs") is None


def _rs(*acts: tuple[str, int]) -> ds.RecordingSet:
    rng = np.random.default_rng(0)
    segs = [
        ds.Segment("u", a, rng.normal(0, 1, (n, 3)).astype(np.float32), 20.0, order=k) for k, (a, n) in enumerate(acts)
    ]
    return ds.RecordingSet(segs, "test")


def test_apply_renames_to_the_model_spelling_and_reports_what_is_left_out():
    m = class_map(ST_MOBILITY_CLASSES).apply(_rs(("walking", 100), ("sitting", 50), ("standing", 60), ("stairs", 70)))
    assert sorted(s.activity for s in m.recordings.segments) == ["Stationary", "Stationary", "Walking"]
    assert m.left_out == {"stairs": 70} and m.missing == ["Jogging", "Biking"]
    assert m.notes() == [
        "labels stairs are not classes of the model and were left out",
        "no data for Jogging, Biking",
    ]
    with pytest.raises(ClassMapError, match=r"none of the activities \(typing\) is a class of the model \(Stat"):
        class_map(ST_MOBILITY_CLASSES).apply(_rs(("typing", 100)))


def test_dataset_selection_uses_the_same_rule_with_canonical_targets():
    """LOSO and pretraining select a dataset's activities through ``resolve_activities``: same rule, and
    the targets stay the canonical names they always were."""
    avail = ["walking", "upstairs", "downstairs", "sitting", "standing"]
    assert ds.resolve_activities(["Walking", "Stairs"], avail) == {
        "walking": "walking",
        "upstairs": "stairs",
        "downstairs": "stairs",
    }
    assert ds.resolve_activities("stationary=sitting+standing", avail) == {
        "sitting": "stationary",
        "standing": "stationary",
    }
    with pytest.raises(ds.DatasetError, match=r"activities jogging not found in x"):
        ds.resolve_activities("walking,jogging", avail, "x")
    with pytest.raises(ds.DatasetError, match="mapped to two classes"):
        ds.resolve_activities({"a": ["sitting"], "b": ["sitting"]}, avail)


# --- odlstudio personalize's user data --------------------------------------------------------------------


def _wisdm2019_text(tmp_path, seconds: int = 60, codes: str = "ABCDEF"):
    """A synthetic WISDM-2019 file of subject 1650: ``seconds`` of each activity code at 20 Hz."""
    rng = np.random.default_rng(1)
    lines, t = [], 0
    for code in codes:
        for _ in range(seconds * 20):
            x, y, z = rng.normal(0, 2, 3) + (0, 0, 9.8)
            lines.append(f"1650,{code},{t},{x:.4f},{y:.4f},{z:.4f};")
            t += 50_000_000
    p = tmp_path / "data_1650_accel_phone.txt"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_personalize_user_data_for_st_classes(tmp_path):
    """The issue: WISDM-2019 data against ST's class names found no activity at all; and spelling the
    mapping out was refused.  Both now give windows labelled with the model's classes."""
    p = _wisdm2019_text(tmp_path)
    for spec in (None, "Jogging=jogging,Stationary=sitting+standing,Stairs=stairs,Walking=walking"):
        u = load_user_data(p, ST_WISDM_CLASSES, 24, activities=spec)
        assert u.train.classes == ST_WISDM_CLASSES
        counts = u.train.counts()
        assert set(counts) == set(ST_WISDM_CLASSES) and all(n > 0 for n in counts.values()), counts
        assert counts["Stationary"] > 1.5 * counts["Walking"]  # sitting + standing
        assert u.info()["class_map"]["Stationary"] == (["sitting", "standing"] if spec else ST_DEFAULT_STATIONARY)
        assert u.left_out == {"typing": 1200} and not u.notes
    u = load_user_data(p, ST_MOBILITY_CLASSES, 48, rate=26.0)
    counts = u.train.counts()
    assert counts.pop("Biking") == 0 and all(n > 0 for n in counts.values()) and u.rate == 26.0
    assert u.notes == ["user 1650 has no data for Biking"] and u.left_out == {"stairs": 1560, "typing": 1560}
    with pytest.raises(PersonalizeError, match=r"--activities: Cycling: not classes"):
        load_user_data(p, ST_MOBILITY_CLASSES, 48, activities="Walking,Cycling")
    with pytest.raises(PersonalizeError, match=r"no data for any class of the model \(Biking <- biking\)"):
        load_user_data(p, ST_MOBILITY_CLASSES, 48, activities="Biking")


def test_windows_export_maps_sitting_and_standing_to_stationary(tmp_path):
    rng = np.random.default_rng(2)
    X = rng.normal(0, 1, (60, 24, 3)).astype(np.float32)
    y = np.repeat(np.arange(3), 20)
    p = tmp_path / "w.npz"
    np.savez(p, X=X, y=y, classes=np.array(["Sitting", "Standing", "Typing"]), stride=24)
    u = load_user_data(p, ST_WISDM_CLASSES, 24)
    assert set(np.unique(np.concatenate([u.train.y, u.test.y]))) == {ST_WISDM_CLASSES.index("Stationary")}
    assert len(u.train) + len(u.test) == 40 and u.left_out == {"Typing": 20}


# --- training rounds and "Simulate on my windows": labels in the store -----------------------------------


def test_round_windows_use_the_models_spelling(tmp_path):
    from app.core.recording import write_accel
    from app.core.rounds import RoundError, local_windows, model_recordings
    from app.core.store import Store

    store = Store(tmp_path)
    did = store.ensure_user("u").dataset_id
    x = np.random.default_rng(3).normal(0, 2, (2400, 3)).astype(np.float32)
    rec = write_accel(store, "r", x, 20.0, did)
    for k, lab in enumerate(("Walking", "Sitting", "Standing", "Upstairs", "Typing")):
        store.add_label(rec.id, 24.0 * k, 24.0 * (k + 1), lab)
    rs, notes = model_recordings(store, did, ST_WISDM_CLASSES, "u", 20.0)
    assert sorted({s.activity for s in rs.segments}) == ["Stairs", "Stationary", "Walking"]
    assert notes == [f"labels typing are not classes of the model ({', '.join(ST_WISDM_CLASSES)}) and were left out"]
    d = local_windows(store, did, ST_WISDM_CLASSES, 24, 20.0)
    assert d.classes == ST_WISDM_CLASSES
    counts = d.counts()
    assert counts["Jogging"] == (0, 0) and all(counts[c][0] > 0 for c in ("Stationary", "Stairs", "Walking"))
    assert any("no labelled windows for Jogging:" in n for n in d.notes)
    with pytest.raises(RoundError, match="is a class of the model"):
        model_recordings(store, did, ("Biking",), "u")
    store.close()


# --- every rule at its edge, with the messages a user reads (planted bugs: `make mutation`, target classmap) -----


def test_a_label_set_name_selects_its_activities():
    """``--activities common4`` (spaces around it too) is the label set, not a class called "common4"."""
    cm = class_map(("Walking", "Stairs", "Sitting", "Standing", "Jogging"), " common4 ")
    assert cm.to_dict() == {
        "Walking": ["walking"],
        "Stairs": ["stairs", "upstairs", "downstairs"],
        "Sitting": ["sitting"],
        "Standing": ["standing"],
    }


def test_empty_items_are_skipped_wherever_they_are():
    assert class_map(ST_WISDM_CLASSES, " ,Walking,,Jogging").to_dict() == {
        "Jogging": ["jogging"],
        "Walking": ["walking"],
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"Walking": []}, "activities: 'Walking': [] is not a class and its source activities"),
        ({"Walking": " + "}, "activities: 'Walking': [' + '] is not a class and its source activities"),
        ({" ": ["walking"]}, "activities: ' ': ['walking'] is not a class and its source activities"),
        ("=walking", "activities: '=walking' names no class before '='"),
        ("Walking=walking, Jogging = ", "activities: 'Jogging =' names no activity after '='"),
        (
            "Walking,Sitting,Typing",
            "Sitting, Typing: not classes of the model (classes: Jogging, Stationary, Stairs, Walking)",
        ),
        (" , ", "no activities selected"),
    ],
)
def test_each_bad_specification_gets_its_own_sentence(spec, message):
    with pytest.raises(ClassMapError) as e:
        class_map(ST_WISDM_CLASSES, spec)
    assert str(e.value) == message


def test_a_model_without_classes_is_refused():
    with pytest.raises(ClassMapError) as e:
        class_map(())
    assert str(e.value) == "the model has no classes"


def test_the_description_and_the_full_mapping():
    cm = class_map(ST_WISDM_CLASSES, "Stationary,Walking=walking+jogging")
    assert cm.describe() == "Stationary <- stationary + sitting + standing; Walking <- walking + jogging"
    assert cm.mapping() == {
        "stationary": "Stationary",
        "sitting": "Stationary",
        "standing": "Stationary",
        "walking": "Walking",
        "jogging": "Walking",
    }


def test_apply_counts_every_left_out_sample_and_keeps_the_sets_report():
    rs = _rs(("walking", 100), ("typing", 40), ("stairs", 70), ("typing", 25))
    rs.source, rs.units = "me.txt", "g"
    rs.skipped, rs.notes = [ds.SkippedLine("me.txt", 3, "bad", "x")], ["resampled to 20 Hz"]
    m = class_map(ST_MOBILITY_CLASSES).apply(rs)
    assert m.left_out == {"typing": 65, "stairs": 70}
    assert m.notes() == [
        "labels stairs, typing are not classes of the model and were left out",
        "no data for Stationary, Jogging, Biking",
    ]
    out = m.recordings
    assert (out.source, out.units, out.notes) == ("me.txt", "g", ["resampled to 20 Hz"])
    assert [(k.line, k.reason) for k in out.skipped] == [(3, "bad")]
    assert out.skipped is not rs.skipped and out.notes is not rs.notes  # its own lists: appending to one ...
    np.testing.assert_array_equal(out.segments[0].data, rs.segments[0].data)


def test_apply_names_every_activity_when_none_fits():
    with pytest.raises(ClassMapError) as e:
        class_map(("Biking",)).apply(_rs(("typing", 10), ("walking", 5)))
    assert str(e.value) == "none of the activities (walking, typing) is a class of the model (Biking <- biking)"
    with pytest.raises(ClassMapError) as e:
        class_map(("Biking",)).apply(ds.RecordingSet([], "empty"))
    assert str(e.value) == "none of the activities (no data) is a class of the model (Biking <- biking)"
