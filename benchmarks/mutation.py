"""Mutation score of the modules whose bugs cost data or trust (``make mutation``; docs/benchmarks.md).

Usage::

    python benchmarks/mutation.py                 # every target, one after the other
    python benchmarks/mutation.py cobs crc16_32   # some targets
    python benchmarks/mutation.py --list          # the targets, their functions and tests
    python benchmarks/mutation.py --report        # scores of the last runs, without running

Each target runs mutmut (pinned in the ``mutation`` extra of pyproject.toml) in its own work folder
``build/mutation/<target>/``: mutmut copies the tree into ``mutants/`` there, mutates only the target's
file, runs the target's test selection once to learn which test calls which function, then runs each
mutant of the target's functions against only the tests that call that function (forked, ``pytest -x``).

Score per target = killed / (mutants - equivalent), where equivalent mutants are those listed, each with
a one-line reason, in ``benchmarks/mutation_equivalent.txt``.  Timeouts count as killed (the mutant made
the tests hang), ``no tests`` as survived.  The goal is >= 90 % per target.

**The target list is TARGETS below** (file, functions, tests): when code moves (e.g. the energy
attribution into app/core/energy.py), update it here and nowhere else.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "mutation"
EQUIVALENT = ROOT / "benchmarks" / "mutation_equivalent.txt"
GOAL = 0.90


@dataclass(frozen=True)
class Target:
    file: str  # the one file mutated
    functions: tuple[str, ...]  # "func", "Class.method", "Class.*" or "*" (all functions of the file)
    tests: tuple[str, ...]  # pytest arguments selecting the (fast) tests of this target
    timeout_s: int = 15  # per test (pytest-timeout): a mutant that loops forever fails after it


TARGETS: dict[str, Target] = {
    "cobs": Target("device/nucleo/cobs.py", ("*",), ("tests/device/test_nucleo_protocol.py",), 60),
    # (test_nucleo_protocol's hypothesis round trips need more than 15 s on a loaded machine)
    "crc16_32": Target("device/nucleo/crc.py", ("*",), ("tests/device/test_nucleo_protocol.py",), 60),
    "frame_decode": Target(
        "device/nucleo/protocol.py",
        ("frame_body", "encode_frame", "parse_body", "FrameDecoder.*"),
        ("tests/device/test_nucleo_protocol.py",),
        60,
    ),
    # the board's host client, which every round on a board goes through: seq/retries/NAK, error answers,
    # the event queue, the transfers, a round's reports and its liveness check, evaluation, the weights read back.
    # Left out: NucleoClient.open, reconnect and _open_port (they open real serial ports or pyserial URLs, with
    # waits of seconds: test_nucleo_bench/test_board_conformance and test_faults_nucleo cover them on the virtual
    # bench's sockets); properties are never mutated by mutmut
    "nucleo_client": Target(
        "device/nucleo/client.py",
        (
            "DeviceTransport.*",
            "NucleoError.*",
            *(
                f"NucleoClient.{m}"
                for m in (
                    "__init__ close __enter__ __exit__ _reader _dispatch _push_event _next_seq request _write "
                    "fail_waiters next_event drain_events hello ping info status reset set_clock set_marker "
                    "sensor_config sensor_state stream_start stream_stop read_samples set_activity get_activity "
                    "_transfer upload_model clear_data upload_dataset train abort wait_round_done _check_round_alive "
                    "evaluate download_weights"
                ).split()
            ),
            "_names",
        ),
        ("tests/device/test_nucleo_client_exact.py",),
        30,
    ),
    # (its two hypothesis fuzzers are left out for time: they check robustness, the exact tests check values)
    # (test_every_split_offset_gives_identical_results decodes a session at ~7,000 splits: slow when traced)
    "lpm01a_decode": Target(
        "device/lpm01a/decode.py", ("*",), ("tests/device/test_lpm01a_decode.py", "-k", "not fuzz"), 120
    ),
    # the LPM01A host driver: command grammar, replies and rejections, argument checks, setters, configure,
    # the stale-stream drain, the acquisition hand-over and the commands answered inside a stream; its tests run
    # the real emulator behind an in-process port on a stepped clock, with the driver's time module faked (the
    # socket/pty tests of test_lpm01a_driver.py wait in real time: too slow for a run per mutant).  Left out:
    # reconnect and psrst (they re-open a real port after a USB re-enumeration, poll discovery and sleep; the
    # slow socket tests cover them)
    "lpm01a_driver": Target(
        "device/lpm01a/driver.py",
        (
            "error_for_event",
            "CommandRejected.__init__",
            "_Pending.*",
            "_norm",
            "_parse_value",
            *(
                f"PowerShield.{m}"
                for m in (
                    "__init__ open close __enter__ __exit__ read_raw _read_reply_bytes _write _next_line command "
                    "_await_reply _error_detail _drain_lines _command_in_stream deliver_stream_event fail_pending "
                    "begin_acquisition end_acquisition send_stop htc hrc help echo powershield version range status "
                    "lcd set_volt volt_get set_freq set_acqtime set_acqmode set_funcmode set_output set_format "
                    "set_trigsrc set_trigdelay set_currthre pwr set_pwrend targrst temp autotest calib eventsrc stop "
                    "configure drain_stale_stream check_combination check_settings _number _check_choice _choice"
                ).split()
            ),
        ),
        ("tests/device/test_lpm01a_driver_exact.py",),
        30,
    ),
    # the emulated PowerShield the driver is tested against: the shell (reply grammar, every command's reply and
    # refusal, argument checks, states), the ascii_dec and bin_hexa streams (framing, timestamps, events, pwr
    # metadata), the end sequence (end tag, summary, banner), the TX model (buff %, overflow), overcurrent, static
    # mode, the D7 trigger, psrst and the fault switches, all on a hand-stepped clock with the noise removed
    "lpm01a_emulator": Target(
        "device/lpm01a/emulator.py",
        ("*",),
        ("tests/device/test_lpm01a_emulator_exact.py", "tests/device/test_lpm01a_emulator.py"),
        30,
    ),
    # the Python board of the virtual bench, the reference the firmware must agree with byte for byte: its request
    # handlers (every request's reply, refusal, error code and arguments, the busy rules, the transfers and their
    # descriptor checks, the slots, the training mode and the slot a round or an evaluation uses).  Left out: the
    # timing/current model (_tick, sim_time, current, d7_edges, the levels, _advance_locked, batch_seconds,
    # round_memory_bytes) and the round/evaluation workers; test_nucleo_emulator's garbage-and-bit-flips test is
    # left out for time (random noise through the client's retries: it checks robustness, not values)
    "nucleo_emulator": Target(
        "device/nucleo/emulator.py",
        tuple(
            f"NucleoEmulator.{m}"
            for m in (
                "_on_frame _not_busy _check_clock _h_hello _h_ping _h_info _h_reset _h_set_clock _h_status _h_marker "
                "_sensor_state _h_sensor_config _h_stream_start _h_stream_stop _h_get_sensor _activity_msg "
                "_h_sim_set_activity _h_sim_get_activity _h_model_begin _chunk _h_model_chunk _parse_descriptor "
                "_h_model_end _data_state _h_data_clear _h_data_begin _h_data_chunk _h_data_end _h_weights_info "
                "_h_weights_read _trainable _slot_for_model _h_train_start _h_train_abort _h_evaluate"
            ).split()
        ),
        (
            "tests/device/test_nucleo_emulator_exact.py",
            "tests/device/test_nucleo_emulator.py",
            "-k",
            "not survive_garbage",
        ),
        30,
    ),
    "energy_rounds": Target(
        "app/core/energy.py",
        ("align_batches", "attribute_energy", "with_energy", "alignment_warnings"),
        ("tests/core/test_rounds.py", "-k", "align or attribute"),
    ),
    # a round's totals (the round report, the CLI summary) and the power panel's D7 view: a target of its own, not
    # more functions of energy_rounds, so that neither run has to repeat the other's mutants; its tests build their
    # rows and stream by hand (no bench)
    "energy_totals": Target(
        "app/core/energy.py",
        ("round_totals", "d7_intervals"),
        ("tests/core/test_rounds.py", "-k", "round_totals or d7_intervals"),
    ),
    # statistics between two times (the power panel's marker readout, energy between markers, the D7 view's
    # mean current): exact from the full-resolution ring, else summed from the pyramid by _range_sums
    "streams_stats": Target(
        "app/core/streams.py",
        ("SampleStream.stats", "SampleStream._range_sums", "Moments.add", "Moments.stats"),
        ("tests/core/test_streams.py", "tests/core/test_power_gaps.py"),
    ),
    # the same statistics of a reopened recording, read from its HDF5 file when the range is older than the ring
    "replay_stats": Target(
        "app/core/recording.py",
        ("ReplayStream.stats",),
        (
            "tests/core/test_store_recording.py",
            "tests/core/test_power_gaps.py",
            "-k",
            "stats or reopen or events or dropped",
        ),
    ),
    "energy_personalize": Target(
        "app/core/personalize.py",
        ("batch_summary",),
        ("tests/core/test_personalize.py", "-k", "batch_summary"),
    ),
    # the paper's and the peak accounting (liveness) of training memory, and a robust round's extra buffers
    "estimator_memory": Target(
        "estimator/memory.py",
        (
            "training_memory",
            "_memory",
            "_needs_saved_input",
            "_needs_saved_output",
            "robust_round_bytes",
            "trained_values",
        ),
        ("tests/estimator/test_estimator.py",),
    ),
    # the `firmware` accounting (the ODL firmware's memory plan mirrored in Python), checked against what the
    # firmware itself reports under QEMU (needs `make -C firmware qemu`; the ST-model cell, the only robust-round
    # check, needs ../shared)
    "estimator_firmware_memory": Target(
        "estimator/memory.py",
        (
            "model_blob_bytes",
            "_round8",
            "firmware_plan_bytes",
            "firmware_round_bytes",
            "canonical_trained_values",
        ),
        ("tests/estimator/test_estimator_firmware_memory.py",),
        180,
    ),
    # issue 17's robust round, the part that decides whether a user keeps a personalized model: which windows
    # validate, and which mode Auto keeps from their scores (with the reason the report gives)
    "robust_choice": Target(
        "app/core/procedure.py",
        ("validation_split", "score", "choose_mode", "choice_reason", "Procedure.split", "Procedure.wire"),
        ("tests/device/test_robust_round.py",),
    ),
    # the reference engine's robust step (L2-SP, clipping, feature lr) and validation scores, which the boards
    # must reproduce bit for bit
    "robust_step": Target(
        "device/engine/model.py",
        ("Model._robust_update", "Model.val_scores", "macro_f1_f32"),
        (
            "tests/device/test_robust_round.py",
            "tests/device/test_engine_core.py",
            "tests/device/test_firmware_robust.py",
        ),
        60,
    ),
    # the engine's round: validation after every epoch, the best pass, its restore and early stopping
    "robust_train": Target(
        "device/engine/train.py",
        ("train", "_better", "_finish"),
        (
            "tests/device/test_engine_train_loop.py",
            "tests/device/test_robust_round.py",
            "tests/device/test_engine_core.py",
            "tests/device/test_firmware_robust.py",
        ),
        60,
    ),
    # issue 17 item 3: the recommender's measured-accuracy prior — the table made from LOSO rows, and how the
    # estimator reads it (the F1 and spread a user is shown, and what it falls back to)
    "accuracy_prior": Target(
        "app/core/accuracy_prior.py",
        ("build_prior", "write_prior"),
        ("tests/core/test_accuracy_prior.py",),
        60,
    ),
    "loso_prior": Target(
        "estimator/recommend.py",
        ("_interp", "LosoPrior.*", "load_accuracy_prior", "default_accuracy"),
        ("tests/core/test_accuracy_prior.py", "tests/estimator/test_estimator.py"),
        60,
    ),
    # issue 17's measurements: a fold's rounds and its Auto row (which mode was kept, on which validation scores),
    # and the per-T summary that says whether each goal holds (docs/results.md is made of these)
    "loso_goals": Target(
        "app/core/loso.py",
        ("personalize_procedure", "run_task", "summarize"),
        ("tests/core/test_loso.py",),
        120,
    ),
    # the ST model zoo's classes mapped onto the user's activities (which recordings train which output)
    # (test_st_zoo personalizes ST's model on the bench: minutes per mutant, so it is left out)
    "classmap": Target("app/core/classmap.py", ("*",), ("tests/core/test_classmap.py",)),
    # the labelling workflow: the label store's edits, undo/redo and overlap rules, the windows cut from labels
    "label_edit": Target(
        "app/core/labels.py",
        ("LabelModel.*", "windows", "class_balance", "labelled_recording_set", "_finite_runs"),
        ("tests/core/test_labels.py", "tests/core/test_labels_edit.py"),
    ),
    # a user's labels in and out: WISDM-format import (what is skipped and why), CSV and windows export
    # (and what the exports read)
    "label_io": Target(
        "app/core/labels.py",
        (
            "read_wisdm",
            "_read_named_users",
            "_unescape_user",
            "class_for_activity",
            "WisdmImport.*",
            "import_wisdm",
            "import_wisdm_csv",
            "wisdm_user_field",
            "export_wisdm_csv",
            "export_windows_npz",
            "labelled_parts",
        ),
        (
            "tests/core/test_labels.py",
            "tests/core/test_hostile_files.py",
            "tests/core/test_labels_io.py",
            "tests/core/test_labels_import_checks.py",
            "-k",
            "wisdm or labelled or npz",
        ),
        60,
    ),
    # exporting personalized weights: the C header and .npz formats (written and read back), the sidecar,
    # the weight checks that refuse a damaged model
    "model_export": Target(
        "app/core/models.py",
        (
            "check_weights",
            "sidecar_dict",
            "_jsonable",
            "_c_ident",
            "_c_float",
            "_c_string",
            "_c_comment",
            "_shape3",
            "c_header_text",
            "read_c_header",
            "export_npz",
            "load_npz",
            "nonfinite_layers",
            "_loaded",
            "_refuse_a_capture",
            "_refused_write",
            "evaluate",
        ),
        # (TensorFlow-free tests only: mutmut forks a child per mutant, and a fork of a process that has
        # imported TensorFlow hangs)
        ("tests/core/test_model_formats.py",),
        60,
    ),
    # the TFLite conversion's parent side: the timeout from the environment, what the child-process runner is
    # handed (the conversion itself needs TensorFlow: it runs in the child, tests/core/test_tflite_child.py)
    "tflite_convert": Target(
        "app/core/tflite_convert.py", ("default_timeout", "convert"), ("tests/core/test_tflite_convert_exact.py",), 30
    ),
    # the app's store (SQLite): users, datasets, recordings, labels, markers, rounds and their transactions
    "store_rows": Target(
        "app/core/store.py",
        ("Store.*", "_Txn.*", "_quiet_rollback", "_interval", "_recording", "_plain", "_read_only", "_disk_full"),
        ("tests/core/test_store.py", "tests/core/test_store_damage.py", "tests/core/test_store_rows.py"),
        60,
    ),
    # a damaged store: backups, restoring one, starting anew, rebuilding from what can be read (never losing data)
    "store_repair": Target(
        "app/core/store.py",
        (
            "list_backups",
            "_set_aside",
            "start_new_store",
            "_quarantine_files",
            "restore_backup",
            "rebuild_store",
            "_salvage_sources",
            "_read_rows",
            "_copy_rows",
            "_adopt_files",
            "_check_integrity",
            "_recording_files",
            "_statements",
        ),
        ("tests/core/test_store.py", "tests/core/test_store_damage.py", "tests/core/test_store_repair.py"),
        60,
    ),
    "estimator_time": Target(
        "estimator/core.py",
        # the model, not its presentation (Estimate.row/to_dict); properties are never mutated by mutmut
        ("time_per_sample_s", "update_time_s", "time_per_batch_s", "estimate"),
        ("tests/estimator/test_estimator.py",),
    ),
    "estimator_profile": Target(
        "estimator/profiles.py",
        ("DeviceProfile.current_a", "DeviceProfile.power_w", "DeviceProfile.cycles_for", "DeviceProfile.io_s"),
        ("tests/estimator/test_estimator.py",),
    ),
    # what every round trains and tests on (board, personalize, loso): the chronological split per subject and
    # activity, the windows (training stride T/2, test stride T), the RecordingSet helpers and activity names they
    # use.  Left out: the WISDM/HAPT parsers; sliding_windows and resample_to live in preprocess.py (exercised here
    # through make_windows and resampled); properties are never mutated by mutmut
    "round_windows": Target(
        "app/core/datasets.py",
        (
            *(
                f"RecordingSet.{m}"
                for m in "_with for_subjects without_subjects select resampled concat subjects activities "
                "samples_per summary".split()
            ),
            "_natural_key",
            "canonical_activity",
            "order_activities",
            "activity_targets",
            "resolve_activities",
            "split_chronological",
            "WindowSet.*",
            "make_windows",
            "personal_split",
        ),
        ("tests/core/test_round_windows.py", "tests/core/test_datasets.py"),
        30,
    ),
    # what a data file given where another kind is expected recognisably is (a HAPT npz, a windows export, a model, the
    # shipped sample, a damaged zip walked header by header, ...) and the messages that name it for loso, personalize
    # and pretrain; the readers themselves are left out (their parsers have their own tests)
    "data_kinds": Target(
        "app/core/datasets.py",
        (
            "FileKind.*",
            "_hapt_like",
            "_windows_like",
            "_names",
            "_zip64_compressed_size",
            "_local_members",
            "_sample_kind",
            "sniff_file",
            "_hint",
            "_hapt_problem",
            "check_dataset_data",
        ),
        ("tests/core/test_data_file_kinds.py", "tests/core/test_data_file_kinds_exact.py"),
        30,
    ),
    # a round's local data from the app's store (the labels named as the model's classes, the windows, what was
    # left out) and the metrics of its confusion matrix
    "round_data": Target(
        "app/core/round_data.py",
        ("*",),
        ("tests/core/test_round_windows.py", "tests/core/test_round_plan.py", "-m", "not slow"),
        30,
    ),
    # the signal preprocessing every ST model and every round at another rate goes through: ST's gravity rotation
    # and suppression (its fixed high-pass, lfilter_zi, the Rodrigues rotation; per window or continuous), the
    # polyphase resampling (50 -> 20 Hz, 25 -> 20 Hz) and sliding_windows
    "preprocess": Target(
        "app/core/preprocess.py",
        ("*",),
        ("tests/core/test_preprocess_exact.py", "tests/core/test_datasets.py", "tests/core/test_round_windows.py"),
        30,
    ),
    # the keyed Feistel order in which a board visits a round's training windows; the firmware (train.c: odl_perm)
    # must compute the same order, so a host can replay a round (its tests pin orders taken from the firmware)
    "shuffle": Target("device/nucleo/shuffle.py", ("*",), ("tests/device/test_shuffle_exact.py",), 30),
    # what a user reads while a round runs: progress by batches, the time left (scaled by the batches' pace) and its
    # wording, the thread-safe state the views snapshot, how the round's events become rows, warnings and progress,
    # and the RoundRunner helpers that need no board (windows subsampled to fit the board's SRAM, the diverged-
    # weights refusal, the round's files).  Left out: RoundRunner.run/_run/_run_on_board/_power/_board_ready (they
    # need the virtual bench's threads and sockets: tests/core/test_rounds*.py) and load_model (a child process)
    "round_progress": Target(
        "app/core/rounds.py",
        (
            "batch_fraction",
            "round_eta",
            "eta_text",
            "RoundState.*",
            "_RunnerObserver.*",
            "RoundRunner.__init__",
            "RoundRunner.stage",
            "RoundRunner._fit_ram",
            "RoundRunner.store_row",
            "RoundRunner._save_weights",
            "_board_windows",
        ),
        ("tests/core/test_round_progress_exact.py",),
        30,
    ),
    # the round's orchestration: what RoundRunner.run stores, tells the user and hands the one round pipeline, and how
    # it gets the board and the power monitor ready (the pipeline, the devices and the model loading are stand-ins
    # that record what they were given: they have targets of their own; the whole round on the virtual bench is
    # tests/core/test_rounds.py)
    "round_run": Target(
        "app/core/rounds.py",
        (
            "RoundRunner.run",
            "RoundRunner._run",
            "RoundRunner._run_on_board",
            "RoundRunner._power",
            "RoundRunner._board_ready",
        ),
        ("tests/core/test_round_run_exact.py", "tests/core/test_round_plan.py", "-m", "not slow"),
        30,
    ),
    # the QEMU board's bench side (the real firmware's partner on the virtual bench): the bench-link records as
    # board_qemu.c sends them (boot/SYNC, time requests, pace, marks, jobs, idle, clock, sensor set-up, SIM requests)
    # and the replies, the supply current and D7 edges at the firmware's timestamps, the bench clock's horizon and
    # stall release, the samples played in, the byte path and its faults, the counter file, QEMU's command line and
    # where the firmware is looked for; its tests build the board without QEMU (_start_qemu stubbed with the input
    # files and the doorbell) and read what it writes back.  Left out: _start_qemu, _proc_error, _qmp_init, _qmp,
    # _kill, close, __del__ and reset (the QEMU process, its monitor socket and the reset's ring-until-boot thread
    # with its 10 s waits: tests/device/test_firmware_qemu.py runs them); properties are never mutated by mutmut
    "qemu_board": Target(
        "device/nucleo/qemu_board.py",
        (
            "_firmware_dirs",
            "find_firmware",
            "qemu_available",
            "read_counters",
            *(
                f"QemuBoard.{m}"
                for m in (
                    "__init__ _sim_ranges _region_ranges counters command _write_in _ring _send_record _bench_us "
                    "_sim sim_time _send_time _read_loop _pump_link _check_stall _on_record _answer_sim _on_board_output "
                    "set_wakeup connect disconnect _freeze receive advance pending consume horizon _run_level "
                    "_sleep_level _set_level _drop_edges_after _prune current d7_edges set_activity"
                ).split()
            ),
        ),
        ("tests/device/test_qemu_board_exact.py",),
        30,
    ),
    # where the app finds what it ships (checkout, frozen bundle, $ODL_ASSETS) and the context every panel gets
    # (settings, cancel token, user and dataset, the publish/subscribe hub, create/close also when a step fails)
    "paths": Target("app/core/paths.py", ("*",), ("tests/core/test_paths_exact.py",), 30),
    "context": Target("app/core/context.py", ("*",), ("tests/core/test_context_exact.py",), 30),
    # how the virtual bench is put together: the board per board_kind (QEMU a stand-in), the URLs, start/stop/unplug
    "bench": Target("device/bench.py", ("*",), ("tests/device/test_bench_exact.py",), 30),
    # the emulated devices' byte plumbing: the output FIFO and the byte faults both emulators inject
    "emulated": Target("device/emulated.py", ("*",), ("tests/device/test_emulated_exact.py",), 30),
    # the marker times a user types in the Power panel (units, bounds, the refusals' messages)
    "markers": Target("app/core/markers.py", ("*",), ("tests/core/test_markers_exact.py",), 30),
    # what the app takes for an ODL image of the NUCLEO-L496ZG before flashing it (the vector table, the ODL-FW
    # identification, its version and board, the size) and where the shipped image is looked for; every function of
    # the file (FirmwareImage.version_text is a property: never mutated by mutmut)
    "fwimage": Target("device/nucleo/fwimage.py", ("*",), ("tests/device/test_fwimage_exact.py",), 30),
    # flashing the board from the app: the image (or --force), the ST-LINK drive (labels, MBED.HTM, the OS's mount
    # roots: Linux, macOS and Windows, the last two with a faked sys.platform and volume-label call), the tools and
    # their command lines, progress, cancel and timeouts, the copy onto the drive and its re-enumeration and FAIL.TXT,
    # the HELLO check afterwards, the report, the Devices panel's flash_managed.  Every function of the file; its
    # tests fake the clock, the processes, the port lister and the board (test_flashing.py runs the real ones, slower)
    "flashing": Target("app/core/flashing.py", ("*",), ("tests/core/test_flashing_exact.py",), 30),
    # the stream buffer every live view, recorder and capture reads through (absolute indices, wrap-around,
    # blocks larger than the buffer, overrun accounting, waiting for data)
    "ringbuffer": Target("device/ringbuffer.py", ("*",), ("tests/device/test_ringbuffer.py",), 30),
    # what protects a user's files: zip archives (models, data sets) refused by their declared sizes before anything
    # is extracted; output paths checked before a long job starts, a rescue folder, whole-or-nothing writes
    "safezip": Target("app/core/safezip.py", ("*",), ("tests/core/test_outputs_exact.py",), 30),
    "outputs": Target("app/core/outputs.py", ("*",), ("tests/core/test_outputs_exact.py",), 30),
    # a sweep's results store: rows by key (the first wins), damaged and over-long lines skipped and counted, one
    # write + fsync per append, a torn last line ended, the lock against a second writer, the messages
    "sweepstore": Target("app/core/sweepstore.py", ("*",), ("tests/core/test_sweepstore_exact.py",), 30),
    # power captures written to disk (live power-monitor sessions): HDF5 in SWMR mode (samples, events, status, the
    # full-disk stop and the NaN fill, salvage), the capped CSV, reading a capture back, the room left on the disk,
    # and the repair of a killed writer's file (HDF5 superblock write flags, its lookup3 checksum, the end of file)
    "recorder": Target(
        "device/lpm01a/recorder.py",
        ("*",),
        (
            "tests/device/test_recorder_exact.py",
            "tests/device/test_recorder_start.py",
            "tests/core/test_capture_file_messages.py",
        ),
        30,
    ),
    # rounds after they ran: their stored batches, the history line and the report, the personalized model's
    # metadata and its export, the calibration records and the Estimator's inputs
    "round_history": Target(
        "app/core/round_history.py",
        ("*",),
        ("tests/core/test_round_history_exact.py", "tests/core/test_round_plan.py", "-m", "not slow"),
        30,
    ),
    # the estimator refitted from measured batches: the records read back (and refused by name), NNLS, the grouping
    # chosen ('auto': rank, share, spread), the time and power fits, the report and the evaluation against records
    "estimator_calibrate": Target(
        "estimator/calibrate.py",
        ("*",),
        ("tests/estimator/test_estimator.py", "tests/estimator/test_calibrate_exact.py"),
        30,
    ),
    # the architecture every import, estimate and round starts from: layers and their checks, shapes inferred layer by
    # layer (and their refusals), parameter shapes and counts, the trainable selection by mode or names, the JSON form
    # (what a hostile model file reaches), the paper's CNN; and the estimator's operation counts per layer and batch
    "estimator_arch": Target("estimator/arch.py", ("*",), ("tests/estimator/test_arch_exact.py",), 30),
    "estimator_ops": Target("estimator/ops.py", ("*",), ("tests/estimator/test_arch_exact.py",), 30),
    # the acquisition pipeline of a power capture: the reader thread, samples by device index into the ring (lost ones
    # NaN), the events log, the acquisition's end and errors, and each consumer's blocks (overrun, events in order)
    "capture": Target("device/lpm01a/capture.py", ("*",), ("tests/device/test_capture_exact.py",), 30),
    # a sweep (issue 18): its spec read and refused by name, the cells' keys, the plan (what is done, what is left),
    # the tasks' results stored, the report's groups and overview table
    "sweep": Target("app/core/sweep.py", ("*",), ("tests/core/test_sweep_exact.py",), 30),
    # the power-monitor interface every consumer of a current measurement uses (blocks, loss accounting, running
    # statistics, the errors), the registry a new kind of monitor is added to, and the LPM01A's implementation of it
    "power_monitor": Target("device/monitor.py", ("*",), ("tests/device/test_monitor_exact.py",), 30),
    "lpm01a_monitor": Target("device/lpm01a/monitor.py", ("*",), ("tests/device/test_monitor_exact.py",), 30),
    # where a sweep's (and loso's) tasks run: the local process pool, Ray (with a fake ray module), the executor's
    # choice and its messages; and the child process a model load or export runs in (its death reported in words)
    "executors": Target("app/core/executors.py", ("*",), ("tests/core/test_executors_exact.py",), 30),
    "child": Target("app/core/child.py", ("*",), ("tests/core/test_executors_exact.py",), 60),
    # "Simulate on my windows": personalization simulated on the user's own labelled data, its table, the general
    # model's score and the accuracy model handed to the recommender (the small-test-split warning is the panel's)
    "simulate": Target("app/core/simulate.py", ("*",), ("tests/core/test_simulate_exact.py",), 30),
    # the reference training engine the firmware is checked against byte for byte: its kernels (conv, dense, ReLU,
    # pooling, global pooling, batch norm, softmax with cross-entropy; forward and backward), the graph it lowers
    # a model to (shapes, which layers train and need a gradient), the operation counts the estimator is fitted
    # on, the weights (initialisation, checks, BN folding) and the metrics a round reports
    "engine_kernels": Target(
        "device/engine/kernels.py",
        ("*",),
        ("tests/device/test_engine_core.py", "tests/device/test_engine_kernels_exact.py"),
        30,
    ),
    "engine_graph": Target(
        "device/engine/graph.py",
        ("*",),
        ("tests/device/test_engine_core.py", "tests/device/test_engine_graph_exact.py"),
        30,
    ),
    "engine_ops": Target(
        "device/engine/ops.py",
        ("*",),
        ("tests/device/test_engine_core.py", "tests/device/test_engine_graph_exact.py"),
        30,
    ),
    "engine_weights": Target(
        "device/engine/weights.py",
        ("*",),
        ("tests/device/test_engine_core.py", "tests/device/test_engine_weights_exact.py"),
        30,
    ),
    "engine_metrics": Target(
        "device/engine/metrics.py",
        ("*",),
        ("tests/device/test_engine_core.py", "tests/device/test_engine_weights_exact.py"),
        30,
    ),
    # the board protocol's messages (everything of protocol.py but the frame layer, target frame_decode): the
    # catalogue's struct layouts, strings and tails, their refusals, TRAIN_START's v2 extension, ERROR's texts,
    # the ODR/FS checks, the model descriptor and weights blobs, the dataset blob, chunks and the golden vectors
    "protocol_msgs": Target(
        "device/nucleo/protocol.py",
        (
            "is_request",
            "is_event",
            "ProtocolError.*",
            "_fixed_str",
            "_unfixed_str",
            "Message.*",
            "_str_size",
            "_pack_tail",
            "_unpack_tail",
            "decode_message",
            "message_types",
            "TrainStart.*",
            "EvalResult.*",
            "Samples.*",
            "Error.*",
            "error_message",
            "odr_to_mhz",
            "check_odr_mhz",
            "check_fs_g",
            "UnknownLayerError.*",
            "encode_arch",
            "decode_arch",
            "named_layer_index",
            "weight_tensors",
            "encode_weights",
            "decode_weights",
            "encode_model",
            "decode_model",
            "encode_dataset",
            "decode_dataset",
            "chunks",
            "golden_vectors",
            "cobs_golden_vectors",
        ),
        # (test_nucleo_protocol's hypothesis fuzzers exercise the frame layer: left out for time)
        ("tests/device/test_protocol_exact.py", "tests/device/test_nucleo_protocol.py", "-k", "not fuzz"),
        60,
    ),
    # the recommender of the Estimator panel and `odlstudio estimate`: accuracy priors (Table II, measured, LOSO),
    # the (T, mode, epochs) table under the RAM/time/energy/power-source budgets, the choice and its one-sentence why
    "recommend": Target(
        "estimator/recommend.py",
        ("*",),
        (
            "tests/estimator/test_recommend_exact.py",
            "tests/estimator/test_estimator.py",
            "tests/core/test_accuracy_prior.py",
            "tests/core/test_round_plan.py",
            "-m",
            "not slow",
        ),
        30,
    ),
    # estimate(): time per sample/batch/update, energy per batch/epoch/round, memory in each accounting, the row and
    # JSON form, mode_label
    "estimator_core": Target(
        "estimator/core.py",
        ("*",),
        ("tests/estimator/test_recommend_exact.py", "tests/estimator/test_estimator.py"),
        30,
    ),
    # a training round on a board (the GUI's and `odlstudio personalize`'s): uploads at the shared int16 scale, the
    # evaluations, TRAIN_START, the OUT_OF_RAM retry, reports to rows, energy while it runs and for the whole round
    "board_round": Target("app/core/board_round.py", ("*",), ("tests/core/test_board_round_exact.py",), 30),
    # the virtual board's LSM6DSO: trace validation and loaders (every bad file a TraceError), quantisation, playback
    "sensor": Target("device/nucleo/sensor.py", ("*",), ("tests/device/test_sensor_exact.py",), 30),
    # the virtual bench's simulated clock: time scale, re-basing, the limit cap, wall_seconds
    "simclock": Target("device/simclock.py", ("*",), ("tests/device/test_sensor_exact.py",), 30),
    # the current the virtual bench's LPM01A measures: constant, piecewise (periodic) and the STM32L496 profile, D7 edges
    "power_profiles": Target("device/power_profiles.py", ("*",), ("tests/device/test_power_profiles_exact.py",), 30),
    # the Training panel's settings (validation, refusals and their messages), the general model per T, trainable sets
    "round_config": Target(
        "app/core/round_config.py", ("*",), ("tests/core/test_round_config_exact.py", "-m", "not slow"), 30
    ),
    # what a Keras model file's neighbours state before it loads (ST's folder, YAML and name; its sidecar)
    "model_facts": Target(
        "app/core/models.py",
        ("stated_info", "st_input_size", "_st_defaults", "_read_st_config"),
        ("tests/core/test_model_stated_info.py", "tests/core/test_round_config_exact.py", "-m", "not slow"),
        30,
    ),
    # the LPM01A's number syntax, rates, setting ranges and messages, ascii/bin_hexa sample codecs (UM2269)
    "lpm01a_spec": Target("device/lpm01a/spec.py", ("*",), ("tests/device/test_lpm01a_spec_exact.py",), 30),
    # finding the shield / NUCLEO serial ports by VID:PID and waiting for them to come back after a reset
    "discovery": Target("device/discovery.py", ("*",), ("tests/device/test_lpm01a_spec_exact.py",), 30),
    # the app's device manager (Qt-free core of the Devices panel): each session's state machine (connect, reconnect
    # with backoff and auto-reconnect, stream, configure, calls, TRAINING for a round and back), link-loss detection
    # without I/O (fast_check: EOF, BOOT, garbage, lost samples, a stream that stopped) and the words the user reads
    # for each fault (describe, _link_lost, NeedsFirmware, the power monitor's protective stop), the board's sample
    # blocks on the shared timeline, and the manager's look-ups (ports that moved, discovery, first, rates, the
    # configure checks, streams).  Left out, thread plumbing whose mutants only hang or race: _Session.submit, _run,
    # shutdown, request_shutdown, join_shutdown, DeviceManager.shutdown, _PowerSession._pump_loop, _stop_capture
    # and start_stream (the pump thread); the slow fault matrices (test_app_faults*.py, test_crash_safety.py: minutes
    # per run, a child process) are left out, test_devices_exact.py drives the same paths in process
    "devices": Target(
        "app/core/devices.py",
        (
            *(
                f"_Session.{m}"
                for m in (
                    "status enter_training leave_training _set _tick _cmd_connect _connect _cmd_disconnect "
                    "_cmd_stream _cmd_call fault _link_lost handle_fault describe"
                ).split()
            ),
            *(
                f"_BoardSession.{m}"
                for m in (
                    "open _abort_orphan_round _apply_config close_link _beat alive training_beat link_broken "
                    "fast_check fail_round describe start_stream stop_stream _cmd_config _on_event"
                ).split()
            ),
            *(
                f"_PowerSession.{m}"
                for m in "open close_link alive fast_check handle_fault describe _cmd_config".split()
            ),
            "_junk_state",
            "_garbage_since",
            "_recorder_of",
            *(
                f"DeviceManager.{m}"
                for m in (
                    "log fault current_url discover _make first set_auto_reconnect configure_accel power_rates_hz "
                    "_monitor_cls configure_power _refuse_while_measured power_voltage_range board_session unplug "
                    "lost_samples _session ensure_accel_stream ensure_power_stream"
                ).split()
            ),
        ),
        (
            "tests/core/test_device_manager.py",
            "tests/core/test_devices_exact.py",
            "tests/core/test_power_config_recording.py",
        ),
        30,
    ),
    # the virtual bench's serial endpoints (a loopback TCP port pyserial opens as socket://, a pty): the service loop
    # (host bytes in, the device advanced and its output sent as the OS takes it), one host at a time (the newest
    # TCP client wins), unplug/replug (same or new port, the device's own request), stall catch-up, the stats
    "endpoint": Target(
        "device/endpoint.py", ("*",), ("tests/device/test_endpoint_exact.py", "tests/device/test_endpoint.py"), 30
    ),
}

# copied beside the mutated tree (tests read docs/ and assets/; the packages import each other; the firmware
# targets' tests run the ODL firmware under QEMU from firmware/build)
TREE = ("app", "device", "estimator", "tests", "docs", "assets", "firmware", "pyproject.toml")


def module_of(file: str) -> str:
    return file[: -len(".py")].replace("/", ".")


def mutant_globs(t: Target) -> list[str]:
    """mutmut mutant-name globs of a target's functions (mutmut mangles ``Class.method`` as
    ``xǁClassǁmethod`` and ``func`` as ``x_func``)."""
    mod = module_of(t.file)
    out = []
    for f in t.functions:
        if f == "*":
            out.append(f"{mod}.x*__mutmut_*")
        elif "." in f:
            cls, meth = f.split(".", 1)
            out.append(f"{mod}.xǁ{cls}ǁ{meth}__mutmut_*")
        else:
            out.append(f"{mod}.x_{f}__mutmut_*")
    return out


def load_equivalent() -> dict[str, str]:
    out = {}
    if EQUIVALENT.exists():
        for line in EQUIVALENT.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, _, reason = line.partition(" ")
            out[name] = reason.strip()
    return out


def prepare(name: str, t: Target, fresh: bool) -> Path:
    work = WORK / name
    if fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    for entry in TREE:
        link = work / entry
        if not link.exists():
            link.symlink_to(ROOT / entry)
    cfg = {
        "source_paths": [t.file],
        "also_copy": [e for e in TREE if e != "pyproject.toml"],
        "pytest_add_cli_args_test_selection": list(t.tests),
        # a mutant that loops forever fails its test after timeout_s (pytest-timeout) instead of running
        # into mutmut's CPU limit of 30x the tests' time
        "pytest_add_cli_args": [
            "-p",
            "no:cacheprovider",
            "-W",
            "ignore::DeprecationWarning",
            f"--timeout={t.timeout_s}",
        ],
        "timeout_multiplier": 5.0,
        "use_git_change_detection": False,
        "track_dependencies": False,
    }
    lines = ["[mutmut]"]
    for k, v in cfg.items():
        if isinstance(v, list):
            lines.append(f"{k} =\n" + "".join(f"    {x}\n" for x in v).rstrip("\n"))
        else:
            lines.append(f"{k} = {v}")
    (work / "setup.cfg").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return work


def run(name: str, t: Target, fresh: bool, jobs: int, survivors: bool = False) -> None:
    names = mutant_globs(t)
    res = results(name, t) if survivors else None
    if res is not None:  # only the mutants not killed last time (killed ones stay killed when tests are added)
        names = sorted(k for k, v in res.items() if v not in ("killed", "timeout"))
        if not names:
            return
        (WORK / name / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)  # tests changed: re-map them
        fresh = False
    work = prepare(name, t, fresh)
    cmd = [sys.executable, "-m", "mutmut", "run", "--max-children", str(jobs), *names]
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "ODL_FUZZ_EXAMPLES": os.environ.get("ODL_FUZZ_EXAMPLES", "500"),
        # the data sets and ST's models beside the checkout (tests/conftest.py), not beside the mutants' copy
        "ODL_SHARED": os.environ.get("ODL_SHARED", str(ROOT.parent / "shared")),
    }
    print(f"== {name}: {t.file} {' '.join(t.functions)}  (tests: {' '.join(t.tests)})", flush=True)
    t0 = time.monotonic()
    with open(work / "mutmut.log", "w", encoding="utf-8") as log:
        rc = subprocess.run(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    print(f"   mutmut exit {rc} after {time.monotonic() - t0:.0f} s (log: {work / 'mutmut.log'})", flush=True)


STATUS: dict[int | None, str] = {
    1: "killed",
    3: "killed",
    0: "survived",
    5: "no tests",
    33: "no tests",
    34: "skipped",
    36: "timeout",
}
STATUS.update({-24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout", None: "not checked"})
# a mutant that crashes the test process (e.g. numpy's as_strided on None: SIGSEGV) fails the tests as surely as
# an assertion: the bug does not go unnoticed
STATUS.update({-11: "killed"})


def results(name: str, t: Target) -> dict[str, str] | None:
    meta = WORK / name / "mutants" / (t.file + ".meta")
    if not meta.exists():
        return None
    codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
    globs = mutant_globs(t)
    return {k: STATUS.get(v, "suspicious") for k, v in codes.items() if any(fnmatch.fnmatchcase(k, g) for g in globs)}


def unowned(equivalent: dict[str, str]) -> list[str]:
    """Equivalent-mutant names that no target's functions can produce (their function moved or was renamed:
    the entry counts for nothing and its reason is about code that is gone)."""
    globs = [g for t in TARGETS.values() for g in mutant_globs(t)]
    return [k for k in equivalent if not any(fnmatch.fnmatchcase(k, g) for g in globs)]


def report(names: list[str]) -> int:
    equivalent = load_equivalent()
    rows, short = [], 0
    print()
    print("| target | file | mutants | killed | equivalent | survived | score |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        t = TARGETS[name]
        res = results(name, t)
        if res is None:
            print(f"| {name} | `{t.file}` | not run | | | | |")
            short += 1
            continue
        killed = [k for k, s in res.items() if s in ("killed", "timeout")]
        eq = [k for k, s in res.items() if s not in ("killed", "timeout") and k in equivalent]
        survived = [k for k, s in res.items() if s not in ("killed", "timeout") and k not in equivalent]
        stale = [k for k in killed if k in equivalent]
        denom = len(res) - len(eq)
        score = len(killed) / denom if denom else 1.0
        short += score < GOAL
        print(
            f"| {name} | `{t.file}` | {len(res)} | {len(killed)} | {len(eq)} | {len(survived)} | {100 * score:.1f} % |"
        )
        rows.append((name, survived, stale, res))
    for name, survived, stale, res in rows:
        for k in survived:
            print(f"  {name}: survived ({res[k]}): {k}", file=sys.stderr)
        for k in stale:
            print(f"  {name}: listed as equivalent but killed (drop it from the list): {k}", file=sys.stderr)
        globs = mutant_globs(TARGETS[name])
        for k in sorted(e for e in equivalent if e not in res and any(fnmatch.fnmatchcase(e, g) for g in globs)):
            print(f"  {name}: listed as equivalent but no such mutant (code changed?): {k}", file=sys.stderr)
    for k in sorted(unowned(equivalent)):
        print(f"  listed as equivalent but no target mutates it (code moved?): {k}", file=sys.stderr)
    print(f"\ngoal >= {100 * GOAL:.0f} % per target: {'met' if not short else f'{short} target(s) short'}")
    return 1 if short else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("targets", nargs="*", help=f"targets (default: all): {', '.join(TARGETS)}")
    ap.add_argument("--list", action="store_true", help="show the targets and exit")
    ap.add_argument("--report", action="store_true", help="only report the last results")
    ap.add_argument("--keep", action="store_true", help="reuse the work folder (mutmut's cache) instead of a fresh run")
    ap.add_argument("--jobs", type=int, default=1, help="mutants run in parallel (default 1: shared 2-core machine)")
    ap.add_argument(
        "--survivors",
        action="store_true",
        help="rerun only the mutants that survived the last run, after adding tests (changed code needs a fresh run)",
    )
    a = ap.parse_args(argv)
    names = a.targets or list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        ap.error(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")
    if a.list:
        for n in names:
            t = TARGETS[n]
            print(f"{n}: {t.file} [{', '.join(t.functions)}] tests: {' '.join(t.tests)}")
        return 0
    if not a.report:
        if importlib.util.find_spec("mutmut") is None:
            ap.error("mutmut is not installed in this Python: run `make mutation` (it installs the `mutation` extra)")
        for n in names:
            run(n, TARGETS[n], fresh=not a.keep, jobs=a.jobs, survivors=a.survivors)
    return report(names)


if __name__ == "__main__":
    sys.exit(main())
