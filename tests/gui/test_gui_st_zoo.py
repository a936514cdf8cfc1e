"""ST's model zoo HAR models imported and personalized through the GUI, as a user would (pytest-qt,
offscreen): Labelling › Import WISDM (a WISDM-2019 slice of subject 1600), Training › Import… (the file
dialog answers with ST's ``.h5``), a TL and a Full round on the virtual bench (on the windows after ST's
preprocessing: the emulated board's datasets are checked), then Estimator › Simulate
on my windows with the same model.  Four models: IGN and GMP, WISDM and mobility_v1, both zoo versions
and both window lengths (every one of the 16 goes through the CLI in ``tests/core/test_st_zoo.py``; the
data and expectations both share are in ``tests/stzookit.py``).  Skipped when ../shared is absent.

(A bare QGuiApplication made earlier in the process would forbid every QWidget; ``odlstudio loso``'s plot,
which tests/core runs before this folder, leaves a QApplication: ``tests/core/test_loso.py`` checks it.)
"""

from __future__ import annotations

import numpy as np
import pytest
import pytestqt  # noqa: F401 - required (test extra): a broken install fails, never skips

from tests.stzookit import (
    assert_board_holds_preprocessed,
    changed_layers,
    expected_classes,
    model_path,
    write_user_file,
)

pytestmark = [pytest.mark.needs_shared, pytest.mark.slow, pytest.mark.gui]


@pytest.fixture(scope="module")
def user_file(tmp_path_factory, shared_data):
    return write_user_file(tmp_path_factory.mktemp("st_user"), shared_data)


GUI_MODELS = [
    ("v2.0.1", "ign", "WISDM", 24),
    ("v2.0.1", "gmp", "mobility_v1", 48),
    ("v1.4.0", "gmp", "WISDM", 48),
    ("v1.4.0", "ign", "mobility_v1", 24),  # Keras 2.4 Sequential, activations fused
]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("spec", GUI_MODELS, ids=[f"{v}-{f}-{d}-{wl}" for v, f, d, wl in GUI_MODELS])
def test_gui_imports_and_personalizes_st_model(spec, qtbot, st_models, user_file, tmp_path, monkeypatch):
    from PySide6.QtCore import Qt

    import app.ui.panels.training as training_mod
    from app.core.models import load_model
    from app.core.rounds import local_windows, personalized_model
    from app.ui.app import build_window
    from estimator.arch import resolve_trainable
    from tests.roundkit import bench_context

    path = model_path(st_models, spec)
    wl = spec[3]
    classes, _, unserved = expected_classes(spec[2])
    ctx = bench_context(tmp_path, time_scale=100.0, power_rate=1000)
    win = build_window(ctx)
    qtbot.addWidget(win)
    win.resize(1300, 800)
    win.show()
    try:
        # Labelling › Import WISDM: the user's recording, labelled with the dataset's classes
        lab = win.show_panel("labelling")
        lab.import_wisdm(str(user_file))
        qtbot.waitUntil(
            lambda: lab.import_result is not None or "failed" in lab.import_report.toPlainText(), timeout=30_000
        )
        assert lab.import_result is not None and len(lab.import_result.recordings) == 1, lab.import_report.toPlainText()
        # Training › Import…: the file dialog answers with ST's .h5
        panel = win.show_panel("training")
        monkeypatch.setattr(training_mod.QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(path), "")))
        qtbot.mouseClick(panel.btn_import, Qt.LeftButton)
        qtbot.waitUntil(lambda: panel.model.currentData() is not None, timeout=60_000)
        assert panel.model.currentText() == f"{path.name} (T={wl}, 4 classes)"
        assert panel.size.currentData() == wl and not panel.size.isEnabled()
        general = load_model(path)
        tl_layers = resolve_trainable(general.arch, "tl")
        for mode in ("tl", "full"):
            panel.mode.setCurrentIndex(panel.mode.findData(mode))
            panel.epochs.setValue(1)
            panel.warmup.setValue(1)
            qtbot.mouseClick(panel.btn_run, Qt.LeftButton)
            qtbot.waitUntil(lambda: panel.task is None, timeout=120_000)
            assert "Error" not in panel.stage.text(), panel.warnings.text()
            r = ctx.store.rounds()[-1]
            res = r["result"]
            assert r["status"] == "done" and r["config"]["mode"] == mode
            # ST's class names and the default mapping: every class WISDM-2019 serves has windows
            assert res["classes"] == list(classes)
            assert [c for c in classes if res["counts"][c][0] == 0] == unserved, res["counts"]
            assert any(f"no labelled windows for {', '.join(unserved)}" in w for w in res["warnings"]) == bool(unserved)
            # before / after F1 shown, with the model's class names
            assert 0.0 <= res["before"]["macro_f1"] <= 1.0 and 0.0 <= res["after"]["macro_f1"] <= 1.0
            text = panel.summary.text()
            assert f"macro-F1 {res['before']['macro_f1']:.3f}" in text and "<b>After</b>" in text
            cm, k = panel.cm_after, panel.cm_after.columnCount()
            assert [cm.verticalHeaderItem(i).text() for i in range(k)] == list(classes)  # rows: the true class
            # columns: abbreviated above the cells, whole in their tooltips
            assert [cm.horizontalHeaderItem(i).toolTip() for i in range(k)] == [f"predicted {c}" for c in classes]
            assert np.all(np.asarray(panel.bars["energy"].opts["height"]) > 0)  # LPM01A energy per batch
            # the board trained and evaluated on the windows after ST's preprocessing
            cfg = r["config"]
            raw = local_windows(ctx.store, r["dataset_id"], classes, wl, cfg["rate_hz"], cfg["train_fraction"])
            assert_board_holds_preprocessed(ctx.devices.bench.board, general, raw.train_x, raw.test_x)
            # the weights downloaded from the board
            pm = personalized_model(ctx.store, r["id"])
            assert pm.classes == classes and pm.preprocessing == "gravity_rot_sup"
            changed = changed_layers(general.weights, pm.weights)
            kept = res["validation"]["kept"]["epoch"]  # the robust round (default) keeps its best validation pass
            if kept == 0:  # the general model validated best: the board ended with it
                assert not changed, changed
            elif mode == "tl" or kept == 1:  # TL, or Full's warm-up epoch (last Dense only)
                assert changed and changed <= tl_layers, (kept, changed)
            else:  # a main-phase epoch of Full: the convolutions trained too
                assert changed - tl_layers, (kept, changed)
        # Estimator › Simulate on my windows: the same labels, mapped by the same rule, on the host
        est = win.show_panel("estimator")
        est.import_model(str(path), wait=True)
        est.epochs.setValue(1)
        est.simulate(epochs=(1,), wait=True)
        assert est.sim is not None and est.sim.complete, est.calib_text.toPlainText()
        assert set(est.sim.table) == {(wl, "tl", 1), (wl, "full", 1)} and est.sim.n_test[wl] > 0
    finally:
        win.close()
        ctx.close()
