"""Export panel driven end to end (pytest-qt, offscreen): a TL round on the virtual bench, then export its
personalized weights in every format with the report, and check the files load back; the panel follows
rounds that finish after it opened and the sidecars describe the personalized model (issue 12 items 8, 9)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import pytestqt  # noqa: E402, F401 - required (test extra): a broken install fails, never skips
from PySide6.QtCore import Qt  # noqa: E402

from app.core.rounds import RoundConfig, RoundRunner  # noqa: E402
from app.ui.panels.export import ExportPanel  # noqa: E402
from tests.exportkit import strings_in  # noqa: E402
from tests.roundkit import bench_context, labelled_dataset  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.slow]


@pytest.fixture(scope="module")
def ctx_with_round(tmp_path_factory):
    ctx = bench_context(tmp_path_factory.mktemp("export"))
    labelled_dataset(ctx)
    res = RoundRunner(ctx.store, ctx.devices, ctx.data_dir, RoundConfig(epochs=2), ctx.dataset.id).run()
    assert res["status"] == "done" and set(res["energy_sources"]) <= {"d7", "d7-interp"}, res["warnings"]
    yield ctx, res
    ctx.close()


@pytest.mark.timeout(300)
def test_export_all_formats_with_report(qtbot, ctx_with_round, tmp_path):
    from app.core.models import load_model, load_npz, read_c_header, run_tflite
    from app.core.rounds import personalized_model

    ctx, res = ctx_with_round
    panel = ExportPanel(ctx)
    qtbot.addWidget(panel)
    panel.resize(1300, 800)
    panel.show()
    assert panel.round.count() == 1 and panel.round.currentData() == res["round_id"]
    assert "Estimator vs measured" in panel.report.toPlainText()
    out = tmp_path / "exports"
    panel.folder.setText(str(out))
    panel.stem.setText("alice_T20")
    qtbot.mouseClick(panel.btn_export, Qt.LeftButton)
    assert panel.btn_cancel.isEnabled()
    qtbot.waitUntil(lambda: panel.task is None, timeout=240_000)
    assert "Wrote" in panel.stage.text(), panel.stage.text()
    names = sorted(p.name for p in out.iterdir())
    for expected in (
        "alice_T20.keras",
        "alice_T20.h5",
        "alice_T20_float32.tflite",
        "alice_T20_int8.tflite",
        "alice_T20.h",
        "alice_T20.npz",
        "alice_T20_report.md",
    ):
        assert expected in names, names
    # 6 formats + the report + 3 JSON sidecars (.keras and .h5 share one): every file written is listed
    assert panel.files.count() == len(names) == 10
    ref = personalized_model(ctx.store, res["round_id"])
    for m in (
        load_model(out / "alice_T20.keras"),
        load_model(out / "alice_T20.h5"),
        load_npz(out / "alice_T20.npz"),
        read_c_header(out / "alice_T20.h"),
    ):
        assert m.classes == ref.classes
        np.testing.assert_allclose(m.weights["dense2"][0], ref.weights["dense2"][0], rtol=1e-6, atol=1e-6)
    x = np.random.default_rng(0).normal(0, 5, (4, 20, 3)).astype(np.float32)
    probs = run_tflite(out / "alice_T20_float32.tflite", x)
    assert probs.shape == (4, 5) and np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    report = (out / "alice_T20_report.md").read_text()
    assert "macro-F1" in report and "alice_T20_int8.tflite" in report


@pytest.mark.timeout(120)
def test_export_cancel_and_bad_input(qtbot, ctx_with_round, tmp_path):
    ctx, res = ctx_with_round
    panel = ExportPanel(ctx)
    qtbot.addWidget(panel)
    for cb in panel.formats.values():
        cb.setChecked(False)
    qtbot.mouseClick(panel.btn_export, Qt.LeftButton)
    assert panel.task is None and "at least one format" in panel.stage.text()
    panel.formats["keras"].setChecked(True)
    panel.formats["npz"].setChecked(True)
    panel.folder.setText(str(tmp_path / "c"))
    qtbot.mouseClick(panel.btn_export, Qt.LeftButton)
    qtbot.mouseClick(panel.btn_cancel, Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.task is None, timeout=60_000)
    assert "cancelled" in panel.stage.text()
    assert not (tmp_path / "c" / f"personalized_round{res['round_id']}_report.md").exists()


# --- items 8, 9: Export follows finished rounds; every file listed; sidecars describe the personalized model ---
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_export_follows_rounds_and_describes_the_personalized_model(qtbot, tmp_path):
    from app.core.models import load_npz
    from app.ui.panels.export import NO_ROUND, ExportPanel

    ctx = bench_context(tmp_path)
    try:
        labelled_dataset(ctx)
        panel = ExportPanel(ctx)  # the app started before any round existed
        qtbot.addWidget(panel)
        panel.show()
        assert panel.stage.text() == NO_ROUND and not panel.btn_export.isEnabled()
        res = RoundRunner(ctx.store, ctx.devices, ctx.data_dir, RoundConfig(epochs=1), ctx.dataset.id).run()
        rid = res["round_id"]
        ctx.publish("round_finished", round_id=rid)  # what the Training panel does when a round ends
        assert panel.round.count() == 1 and panel.round.currentData() == rid
        assert "No finished round" not in panel.stage.text() and panel.btn_export.isEnabled()

        out = tmp_path / "exports"
        panel.folder.setText(str(out))
        panel.stem.setText("mine")
        for f, cb in panel.formats.items():
            cb.setChecked(f in ("keras", "h5", "tflite_float32", "npz"))
        qtbot.mouseClick(panel.btn_export, Qt.LeftButton)
        qtbot.waitUntil(lambda: panel.task is None, timeout=300_000)
        files = sorted(p.name for p in out.iterdir())
        assert "mine.json" in files and "mine_float32.json" in files
        assert panel.stage.text().startswith(f"Wrote {len(files)} files")
        listed = sorted(panel.files.item(i).text().split()[0] for i in range(panel.files.count()))
        assert listed == files  # every file written, sidecars and report included
        report = (out / "mine_report.md").read_text()
        assert all(f"`{name}`" in report for name in files if name != "mine_report.md")

        after = res["after"]
        for side in ("mine.json", "mine_float32.json"):
            meta = json.loads((out / side).read_text())
            for stale in ("optimizer", "best_epoch", "learning_rate", "train_subjects", "generated_by_pretrain"):
                assert stale not in meta, (side, stale)
            assert meta.get("format") != "keras" and meta["base_model"] == "paper_cnn_wisdm5_T20.keras"
            assert not [v for v in strings_in(meta) if v.startswith("/")], "no absolute paths of this machine"
            p = meta["personalized"]
            assert p["round_id"] == rid and p["mode"] == "tl" and p["input_size"] == 20 and p["epochs"] == 1
            assert p["user"] == ctx.user.name and p["dataset"] == ctx.dataset.name
            assert p["metrics"]["after"]["macro_f1"] == pytest.approx(after["macro_f1"])
            assert p["windows"]["train"] > 0 and set(p["windows"]["per_class"]) >= {"walking", "sitting"}
        assert json.loads((out / "mine_float32.json").read_text())["tflite_quantize"] == "float32"
        assert load_npz(out / "mine.npz").meta["personalized"]["round_id"] == rid
    finally:
        ctx.close()
