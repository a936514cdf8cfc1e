"""``odlstudio pretrain --labels``: the classes are read as the data layer reads them, groups included."""

from __future__ import annotations

import pytest

from app.commands.pretrain import pretrain
from app.core import datasets as ds
from tests.datakit import synthetic_phone_file


def test_activity_targets_reads_names_sets_groups_and_mappings():
    assert ds.activity_targets("wisdm5") == ds.LABEL_SETS["wisdm5"]
    assert ds.activity_targets("moving=walking+jogging, Sit ,standing") == ("moving", "sitting", "standing")
    assert ds.activity_targets({"moving": ["walking", "jogging"], "still": "sitting+standing"}) == ("moving", "still")
    assert ds.activity_targets("walking,walk") == ("walking",)  # one class, named twice
    for bad, says in (("=walking", "names no class"), ("moving=", "names no activity"), (" , ", "no activities")):
        with pytest.raises(ds.DatasetError, match=says):
            ds.activity_targets(bad)


def test_pretrain_with_a_class_that_gathers_two_activities(tmp_path):
    """``--labels moving=walking+jogging,sitting,standing`` trains a 3-class model whose 'moving' class holds the
    windows of both activities (was: refused, "class 'moving=walking+jogging' has no training windows")."""
    for s in (1600, 1601):
        synthetic_phone_file(tmp_path, s, seed=s)
    said: list[str] = []
    model, _, info = pretrain(
        [tmp_path], 20, epochs=1, labels="moving=walking+jogging,sitting,standing", val_subjects="1601",
        progress=False, log=said.append,
    )  # fmt: skip
    assert tuple(model.classes) == ("moving", "sitting", "standing")
    assert info["label_set"] == "moving=walking+jogging,sitting,standing"
    counts = next(m for m in said if m.startswith("train:"))
    alone = ds.make_windows(
        ds.load_dataset(tmp_path, activities=None, rate=20.0).select("walking,sitting").for_subjects(["1600"]),
        20, 10, ("walking", "sitting"),
    ).counts()  # fmt: skip
    assert alone["walking"] == alone["sitting"] > 0
    assert f"'moving': {2 * alone['walking']}, 'sitting': {alone['sitting']}" in counts, counts
