"""Cost model (memory, operations, time, power, energy of on-device training) and recommender.

Pure Python + numpy: never imports Qt, ``app`` or ``device``, and never imports TensorFlow.  It reads
architectures as :class:`estimator.arch.Arch` layer lists (the model importers produce them).
Full documentation with the Table III validation: ``docs/estimator.md``.

Public interfaces (stable; other packages depend on them)
---------------------------------------------------------
Op counts (:mod:`estimator.ops`; the training engine counts with the same rules and keys)::

    count_ops(arch, trainable='tl') -> OpCounts
        .forward / .backward : dict[OP_TYPES key, int]    per sample
        .update              : dict[OP_TYPES key, int]    per batch (SGD step; 'elementwise' only)
        .per_sample, .per_batch(B), .macs_per_sample, .layers (per-layer LayerOps)
    inference_stats(arch) -> InferenceStats(macc, macs, weights_bytes, activation_peak_bytes)

Device profiles (:mod:`estimator.profiles`)::

    DeviceProfile(name, clock_hz, cycles={op: cycles/op, ..., 'update': ...}, voltage_v, i0_a,
                  k_a_per_hz, io_s_per_window, io_s_per_value, ram_bytes, flash_bytes, stack_bytes,
                  static_bytes, protocol_buffer_bytes, code_flash_bytes, description, source)
        .current_a(clock_hz=None), .power_w(clock_hz=None), .cycles_for(ops), .with_clock(f),
        .firmware_reserve_bytes, .to_dict(), DeviceProfile.from_dict(d)
    get_profile(name_or_profile, directory=None)   presets 'paper', 'l496-80mhz', 'l496-80mhz-optimized',
                                                   or <directory>/<name>.json, or a .json path
    save_profile(profile, directory, board_id=None) -> Path;  load_profile(path);  list_profiles(dir)

Estimate (:mod:`estimator.core`)::

    estimate(arch, trainable='tl', batch_size=32, profile='paper', *, n_windows=None, epochs=1,
             clock_hz=None, dataset_in_ram=False) -> Estimate      (.to_dict(), .row())
    time_per_sample_s(arch, trainable, profile, clock_hz=None) -> float
    time_per_batch_s(arch, trainable, batch_size, profile, clock_hz=None) -> float
    update_time_s(arch, trainable, profile, clock_hz=None) -> float
    inference_time_s(arch, n_windows, profile, clock_hz=None) -> float   (forward only: a validation pass)

    The emulated board times a batch with ``time_per_batch_s`` and sets its supply current with
    ``get_profile(...).current_a(clock_hz)``, so a virtual round and the estimate agree.

Calibration (:mod:`estimator.calibrate`)::

    BatchRecord(arch, trainable, batch_size, seconds, clock_hz=None, energy_j=None,
                avg_power_w=None, voltage_v=None, label='')      (BatchRecord.from_dict for JSON)
    calibrate(records, base='paper', *, groups='auto', name=None, fit_power=True)
        -> (DeviceProfile, CalibrationReport)    (.time_rows, .power_rows, .time_rms_rel, .summary())
    evaluate(profile, records) -> (time_rows, power_rows)

Recommender (:mod:`estimator.recommend`)::

    recommend(arch=paper_cnn, input_sizes=(20,..,100), modes=('tl','full'), epochs=(1,2,3,5,10), *,
              batch_size=32, profile='paper', n_windows=None, ram_kib=None, reserve_kib=None,
              time_s=None, energy_mj=None, power_source='battery', accuracy=None,
              accounting='paper', dataset_in_ram=False) -> Recommendation
        .choice (row dict or None), .reason (one sentence), .binding, .table (rows), .to_dict()
    accuracy: None / 'st' / 'wisdm' (Table II priors), TableIIPrior, MeasuredAccuracy({(T, mode[, epochs]): F1}),
              a mapping (same keys), or any callable (T, mode, epochs) -> F1.
"""

from estimator.arch import OP_TYPES, Arch, Layer, paper_cnn, resolve_trainable
from estimator.calibrate import BatchRecord, CalibrationError, CalibrationReport, calibrate, evaluate
from estimator.core import (
    Estimate,
    estimate,
    inference_time_s,
    mode_label,
    time_per_batch_s,
    time_per_sample_s,
    update_time_s,
)
from estimator.memory import TrainingMemory, training_memory
from estimator.ops import MAC_TYPES, InferenceStats, OpCounts, count_ops, inference_stats
from estimator.profiles import (
    PRESETS,
    DeviceProfile,
    ProfileError,
    get_profile,
    list_profiles,
    load_profile,
    save_profile,
)
from estimator.recommend import MeasuredAccuracy, Recommendation, TableIIPrior, recommend

__all__ = [
    "OP_TYPES",
    "MAC_TYPES",
    "Arch",
    "Layer",
    "paper_cnn",
    "resolve_trainable",
    "count_ops",
    "OpCounts",
    "inference_stats",
    "InferenceStats",
    "training_memory",
    "TrainingMemory",
    "DeviceProfile",
    "ProfileError",
    "PRESETS",
    "get_profile",
    "list_profiles",
    "load_profile",
    "save_profile",
    "estimate",
    "Estimate",
    "mode_label",
    "time_per_sample_s",
    "inference_time_s",
    "time_per_batch_s",
    "update_time_s",
    "BatchRecord",
    "calibrate",
    "evaluate",
    "CalibrationReport",
    "CalibrationError",
    "recommend",
    "Recommendation",
    "TableIIPrior",
    "MeasuredAccuracy",
]
