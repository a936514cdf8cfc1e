"""The board protocol's messages byte for byte (docs/protocol.md §3, §5): every payload written out by hand from the
catalogue's layouts (field order, little-endian, NUL-padded strings, variable tails), TRAIN_START's 28- and 44-byte
forms, ERROR's text and its description, the ODR/full-scale checks, the model descriptor and weights blobs and the
dataset blob; and every refusal (ProtocolError and its subclass) with its exact message, code and arguments.
The frame layer (COBS, CRC, the decoder) is pinned by test_nucleo_protocol.py."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from device.nucleo import cobs
from device.nucleo import protocol as P
from estimator.arch import Arch, Layer

DOC = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")


def h(text: str) -> bytes:
    """Hex with spaces for reading (`bytes.fromhex` ignores them)."""
    return bytes.fromhex(text)


def refusal(fn, *args, **kw) -> P.ProtocolError:
    with pytest.raises(P.ProtocolError) as exc:
        fn(*args, **kw)
    return exc.value


# --- request / event ranges ---------------------------------------------------------------------------------
def test_requests_are_the_types_0x01_to_0x6f():
    assert [t for t in (0x00, 0x01, 0x02, 0x6E, 0x6F, 0x70, 0x80) if P.is_request(t)] == [0x01, 0x02, 0x6E, 0x6F]


def test_events_are_the_types_0xf0_to_0xfe():
    assert [t for t in (0xEF, 0xF0, 0xF1, 0xFD, 0xFE, 0xFF) if P.is_event(t)] == [0xF0, 0xF1, 0xFD, 0xFE]


# --- ProtocolError ------------------------------------------------------------------------------------------
def test_protocol_error_defaults_to_bad_payload_without_arguments():
    exc = P.ProtocolError("what went wrong")
    assert (str(exc), exc.code, exc.arg0, exc.arg1) == ("what went wrong", P.ErrorCode.BAD_PAYLOAD, 0, 0)
    assert isinstance(exc, ValueError)


def test_protocol_error_keeps_its_code_and_arguments():
    exc = P.ProtocolError("no room", P.ErrorCode.OUT_OF_RAM, 400000, 250000)
    assert (str(exc), exc.code, exc.arg0, exc.arg1) == ("no room", P.ErrorCode.OUT_OF_RAM, 400000, 250000)


def test_unknown_layer_error_carries_the_layer_index_and_kind_code():
    exc = P.UnknownLayerError("layer 2: unknown layer kind code 99", 2, 99)
    assert str(exc) == "layer 2: unknown layer kind code 99"
    assert (exc.code, exc.index, exc.kind_code) == (P.ErrorCode.UNKNOWN_LAYER, 2, 99)
    assert (exc.arg0, exc.arg1) == (2, 99)  # the ERROR's arguments (protocol.md §3.5), as any ProtocolError
    assert isinstance(exc, P.ProtocolError)


# --- fixed strings ------------------------------------------------------------------------------------------
def test_fixed_string_is_nul_padded_to_its_size():
    assert P._fixed_str("walk", 6, "X.f") == b"walk\x00\x00"
    assert P._fixed_str("sixteen_chars_ab", 16, "X.f") == b"sixteen_chars_ab"  # exactly N bytes: no NUL


def test_fixed_string_replaces_non_ascii_characters_with_a_question_mark():
    assert P._fixed_str("café", 6, "X.f") == b"caf?\x00\x00"


def test_fixed_string_longer_than_its_field_is_refused_naming_the_field():
    exc = refusal(P._fixed_str, "seventeen_chars_x", 16, "Info.board")
    assert str(exc) == "Info.board: 'seventeen_chars_x' is longer than 16 bytes"
    assert exc.code == P.ErrorCode.BAD_PAYLOAD


def test_unfixed_string_ends_at_the_first_nul():
    assert P._unfixed_str(b"walk\x00ing\x00") == "walk"
    assert P._unfixed_str(b"sixteen_chars_ab") == "sixteen_chars_ab"
    assert P._unfixed_str(b"\x00abc") == ""


def test_unfixed_string_replaces_non_ascii_bytes():
    assert P._unfixed_str(b"caf\xe9\x00") == "caf\ufffd"


def test_str_size_finds_the_string_items_of_a_struct_format():
    fmt = "<2H16sB4s"  # items: H H 16s B 4s
    assert [P._str_size(fmt, i) for i in range(5)] == [0, 0, 16, 0, 4]
    assert P._str_size("<s", 0) == 1
    assert P._str_size("BBBBHHIIIIIBBH16s16s16s16s", 15) == 16


# --- the catalogue's payloads, byte for byte ------------------------------------------------------------------
def test_hello_payload():
    # magic "ODL1", proto_min 1, proto_max 2, max_payload 1024
    assert P.Hello().pack() == h("4f444c31 01 02 0004")


def test_info_payload_has_its_four_names_nul_padded_to_16_bytes():
    info = P.Info(build="paper")
    want = (
        h("01 00 00 02 6104 0000 00127a00 40420f00 00000500 00000000 00001000 6c 00 0000")
        + b"NUCLEO-L496ZG\x00\x00\x00"
        + b"STM32L496ZG"
        + bytes(5)
        + b"LSM6DSO"
        + bytes(9)
        + b"paper"
        + bytes(11)
    )
    assert info.pack() == want and len(want) == 96
    back = P.Info.unpack(want)
    assert (back.board, back.mcu, back.sensor, back.build) == ("NUCLEO-L496ZG", "STM32L496ZG", "LSM6DSO", "paper")
    assert (back.sysclk_hz, back.ram_total, back.flash_total, back.dev_id) == (8_000_000, 327_680, 1_048_576, 0x461)


def test_info_name_longer_than_16_bytes_is_refused_naming_the_field():
    exc = refusal(P.Info(build="a_build_name_of_17").pack)
    assert str(exc) == "Info.build: 'a_build_name_of_17' is longer than 16 bytes"


def test_status_payload():
    st = P.Status(P.BoardState.TRAINING, 1, 3, 2**40 + 5, 100_000, 480, 120, 70_000, 2, 9, 0)
    want = h("02 01 0300 0500000000010000 a0860100 e001 7800 70110100 02000000 09000000 00000000")
    assert st.pack() == want
    assert P.Status.unpack(want) == st
    assert P.Status.unpack(want).uptime_ticks == 2**40 + 5


def test_sim_set_activity_payload_and_back():
    assert P.SimSetActivity("jogging").pack() == b"jogging" + bytes(9)
    assert P.SimSetActivity.unpack(b"jogging" + bytes(9)).activity == "jogging"


def test_activity_payload_is_the_current_name_then_16_byte_names():
    msg = P.Activity("sitting", ("walking", "sitting"))
    want = b"sitting" + bytes(9) + b"walking" + bytes(9) + b"sitting" + bytes(9)
    assert msg.pack() == want
    back = P.Activity.unpack(want)
    assert back.current == "sitting" and back.available == ("walking", "sitting")


def test_activity_names_not_a_multiple_of_16_bytes_are_refused():
    exc = refusal(P.Activity.unpack, b"sitting" + bytes(9) + b"walking")
    assert str(exc) == "Activity.available: 7 bytes is not a whole number of 16-byte names"


def test_activity_name_longer_than_16_bytes_is_refused():
    exc = refusal(P.Activity("x", ("a_name_seventeen_", "b")).pack)
    assert str(exc) == "Activity.available: 'a_name_seventeen_' is longer than 16 bytes"


def test_model_chunk_payload_is_offset_then_data():
    assert P.ModelChunk(1020, b"\x00\xab").pack() == h("fc030000 00ab")
    back = P.ModelChunk.unpack(h("fc030000 00ab"))
    assert (back.offset, back.data) == (1020, b"\x00\xab")


def test_ping_payload_is_its_data():
    assert P.Ping(b"\x00\x01").pack() == b"\x00\x01"
    assert P.Ping.unpack(b"").data == b""


def test_log_text_is_utf8():
    assert P.Log(3, "fault ✓").pack() == h("03") + "fault ✓".encode()
    assert P.Log.unpack(h("02") + "ok ✓".encode()).text == "ok ✓"


def test_log_text_that_is_not_utf8_is_read_with_replacement_characters():
    assert P.Log.unpack(h("01 61ff62")).text == "a\ufffdb"


def test_log_text_with_a_lone_surrogate_is_sent_with_a_question_mark():
    assert P.Log(1, "a\udc80b").pack() == h("01 613f62")


def test_samples_payload_is_a_header_then_little_endian_xyz_triples():
    xyz = np.array([[1, -2, 3], [-32768, 32767, 0]], np.int16)
    msg = P.Samples(5, 1_000_000, 26_000, 2, 1, 2, xyz)
    want = h("05000000 40420f0000000000 90650000 02 01 0200 0100 feff 0300 0080 ff7f 0000")
    assert msg.pack() == want
    back = P.Samples.unpack(want)
    assert back.xyz.dtype == np.int16 and back.xyz.tolist() == [[1, -2, 3], [-32768, 32767, 0]]


def test_samples_tail_must_be_n_by_3():
    exc = refusal(P.Samples(n=2, xyz=np.zeros((2, 2), np.int16)).pack)
    assert str(exc) == "Samples.xyz: expected an (n, 3) array of int16 counts, got shape (2, 2)"
    exc = refusal(P.Samples(n=3, xyz=np.zeros(3, np.int16)).pack)
    assert str(exc) == "Samples.xyz: expected an (n, 3) array of int16 counts, got shape (3,)"


def test_samples_tail_not_a_multiple_of_6_bytes_is_refused():
    exc = refusal(P.Samples.unpack, h("05000000 40420f0000000000 90650000 02 00 0100") + bytes(7))
    assert str(exc) == "Samples.xyz: 7 bytes is not a whole number of 6-byte xyz samples"


def test_samples_whose_count_disagrees_with_the_tail_are_refused():
    exc = refusal(P.Samples.unpack, h("05000000 40420f0000000000 90650000 02 00 0200") + bytes(6))
    assert str(exc) == "Samples: header says 2 samples, payload holds 1"
    assert exc.code == P.ErrorCode.BAD_PAYLOAD


def test_eval_result_payload_and_its_matrix():
    conf = np.array([3, 1, 0, 5], np.uint16)
    msg = P.EvalResult(1, 2, 9, 0.5, 1000, conf)
    want = h("01 02 0900 0000003f e803000000000000 0300 0100 0000 0500")
    assert msg.pack() == want
    back = P.EvalResult.unpack(want)
    assert back.confusion.dtype == np.uint16 and back.matrix.tolist() == [[3, 1], [0, 5]]


def test_eval_result_with_the_wrong_number_of_cells_is_refused():
    exc = refusal(P.EvalResult.unpack, h("01 02 0900 0000003f e803000000000000 0300 0100 0000"))
    assert str(exc) == "EvalResult: 3 cells for 2 classes"


def test_eval_result_with_an_odd_tail_is_refused():
    exc = refusal(P.EvalResult.unpack, h("01 01 0900 0000003f e803000000000000 03"))
    assert str(exc) == "EvalResult.confusion: odd length 1 for u16 array"


def test_eval_result_confusion_is_sent_flattened():
    msg = P.EvalResult(1, 2, 9, 0.5, 1000, np.array([[3, 1], [0, 5]]))
    assert msg.pack()[16:] == h("0300 0100 0000 0500")


def test_error_payload():
    msg = P.Error(P.ErrorCode.BUSY, P.MsgType.TRAIN_START, 0, 3, 0, "round 3 is running")
    assert msg.pack() == h("06 40 0000 03000000 00000000") + b"round 3 is running"


# --- generic pack / unpack refusals ---------------------------------------------------------------------------
def test_fixed_size_message_of_the_wrong_length_is_refused_with_the_expected_size():
    exc = refusal(P.SensorConfig.unpack, h("00 01 02"))
    assert str(exc) == "SensorConfig payload is 3 bytes, expected 8"
    exc = refusal(P.Clock.unpack, h("00127a00 00"))
    assert str(exc) == "Clock payload is 5 bytes, expected 4"
    assert exc.code == P.ErrorCode.BAD_PAYLOAD


def test_empty_message_with_a_payload_is_refused():
    assert str(refusal(P.GetInfo.unpack, h("00"))) == "GetInfo payload is 1 bytes, expected 0"


def test_message_with_a_tail_shorter_than_its_fixed_part_is_refused():
    exc = refusal(P.ModelChunk.unpack, h("fc0300"))
    assert str(exc) == "ModelChunk payload is 3 bytes, expected at least 4"


def test_out_of_range_field_is_refused_naming_the_message_and_the_values():
    exc = refusal(P.SetMarker(1, 0, 70_000).pack)
    assert str(exc) == (
        "SetMarker: a field is out of range or of the wrong type "
        "(ushort format requires 0 <= number <= 65535); values [1, 0, 70000]"
    )
    assert exc.code == P.ErrorCode.BAD_PAYLOAD


def test_enum_fields_are_sent_as_their_values():
    exc = refusal(P.BatchReport(3, P.Phase.MAIN, 0, 70_000).pack)
    assert str(exc) == (
        "BatchReport: a field is out of range or of the wrong type "
        "(ushort format requires 0 <= number <= 65535); values [3, 1, 0, 70000, 0, 0, 0, 0.0, 0, 0, 0]"
    )


def test_payload_over_1024_bytes_is_too_large():
    assert len(P.Ping(bytes(1024)).pack()) == 1024
    exc = refusal(P.ModelChunk(0, bytes(1021)).pack)
    assert str(exc) == "ModelChunk: payload of 1025 bytes exceeds 1024"
    assert exc.code == P.ErrorCode.TOO_LARGE


def test_encode_is_the_frame_of_the_payload():
    assert P.Ack(P.MsgType.RESET).encode(0x1234) == P.encode_frame(0x80, 0x1234, b"\x04")
    assert P.Ack(P.MsgType.RESET).encode(0x1234) == h("05803412010404a3de00")


def test_messages_are_equal_when_their_type_and_bytes_are():
    assert P.Ping(b"a") == P.Ping(b"a")
    assert P.Ping(b"a") != P.Ping(b"b")
    assert P.Ping(b"a") != P.Pong(b"a")
    assert P.Ping(b"a") != b"a"
    assert hash(P.Ping(b"a")) == hash(P.Ping(b"a"))
    assert hash(P.Ping(b"a")) != hash(P.Pong(b"a"))
    assert len({P.Ping(b"a"), P.Ping(b"a"), P.Pong(b"a")}) == 2


def test_message_with_a_type_already_in_the_catalogue_is_refused():
    with pytest.raises(RuntimeError) as exc:

        @dataclasses.dataclass(frozen=True, eq=False)
        class Hello2(P.Message):
            TYPE = 0x01

    assert str(exc.value) == "duplicate message type 0x01"
    assert P.message_types()[0x01] is P.Hello


def test_message_type_zero_is_registered_like_any_other():
    try:

        @dataclasses.dataclass(frozen=True, eq=False)
        class Zero(P.Message):
            TYPE = 0x00
            LAYOUT = "B H 4s"
            flag: int = 0
            value: int = 0
            name: str = ""

        assert P.message_types()[0x00] is Zero
        assert Zero(7, 0x0102, "ab").pack() == h("07 0201 61620000")
        assert P.decode_message(P.Frame(0x00, 1, h("07 0201 61620000"))) == Zero(7, 0x0102, "ab")
    finally:
        P._REGISTRY.pop(0x00, None)


def test_message_types_is_the_catalogue():
    types = P.message_types()
    assert {t: c.__name__ for t, c in types.items()} == {
        0x01: "Hello", 0x02: "Ping", 0x03: "GetInfo", 0x04: "Reset", 0x05: "SetClock", 0x06: "GetStatus",
        0x07: "SetMarker", 0x10: "SensorConfig", 0x11: "StreamStart", 0x12: "StreamStop", 0x13: "GetSensor",
        0x20: "ModelBegin", 0x21: "ModelChunk", 0x22: "ModelEnd", 0x30: "DataClear", 0x31: "DataBegin",
        0x32: "DataChunk", 0x33: "DataEnd", 0x40: "TrainStart", 0x41: "TrainAbort", 0x50: "Evaluate",
        0x60: "WeightsInfo", 0x61: "WeightsRead", 0x68: "SimSetActivity", 0x69: "SimGetActivity",
        0x80: "Ack", 0x81: "HelloRsp", 0x82: "Pong", 0x83: "Info", 0x85: "Clock", 0x86: "Status",
        0x90: "SensorState", 0xA0: "XferAck", 0xA2: "ModelInfo", 0xB0: "DataState", 0xC0: "RoundInfo",
        0xE0: "WeightsMeta", 0xE1: "WeightsData", 0xE8: "Activity", 0xF0: "Samples", 0xF1: "BatchReport",
        0xF2: "RoundDone", 0xF3: "Log", 0xF4: "Boot", 0xF5: "EvalResult", 0xF6: "ValReport", 0xFF: "Error",
    }  # fmt: skip
    types.pop(0x01)
    assert 0x01 in P.message_types()  # a copy: the catalogue itself is not changed


def test_decode_message_decodes_by_type():
    msg = P.decode_message(P.Frame(0x85, 7, h("00127a00")))
    assert type(msg) is P.Clock and msg.sysclk_hz == 8_000_000


def test_unknown_message_type_is_refused_naming_it():
    exc = refusal(P.decode_message, P.Frame(0x7A, 1, b""))
    assert str(exc) == "unknown message type 0x7A"
    assert exc.code == P.ErrorCode.UNKNOWN_TYPE


# --- TRAIN_START: 28 bytes (v1) or 44 (v2 extension) ---------------------------------------------------------
V1 = h("01 01 0200 2000 0200 0ad7233c 0000803f 2a000000 0500000000000000")


def test_train_start_without_robust_options_is_the_28_byte_v1_request():
    msg = P.TrainStart(P.TrainMode.TL, 1, 2, 32, 2, 0.01, 1.0, 42, 5)
    assert msg.pack() == V1 and len(V1) == 28
    back = P.TrainStart.unpack(V1)
    assert (back.mode, back.epochs, back.batch, back.seed, back.layer_mask) == (1, 2, 32, 42, 5)
    assert (back.n_val, back.patience, back.val_flags, back.feature_lr_scale, back.clip_norm, back.l2sp) == (
        0, 0, 0, 1.0, 0.0, 0.0,
    )  # fmt: skip


@pytest.mark.parametrize(
    "option, ext",
    [
        ({"n_val": 57}, "3900 00 00 0000803f 00000000 00000000"),
        ({"patience": 5}, "0000 05 00 0000803f 00000000 00000000"),
        ({"val_flags": 3}, "0000 00 03 0000803f 00000000 00000000"),
        ({"feature_lr_scale": 0.5}, "0000 00 00 0000003f 00000000 00000000"),
        ({"clip_norm": 5.0}, "0000 00 00 0000803f 0000a040 00000000"),
        ({"l2sp": 0.5}, "0000 00 00 0000803f 00000000 0000003f"),
    ],
)
def test_any_robust_option_makes_the_44_byte_v2_request(option, ext):
    msg = P.TrainStart(P.TrainMode.TL, 1, 2, 32, 2, 0.01, 1.0, 42, 5, **option)
    assert msg.pack() == V1 + h(ext)
    assert P.TrainStart.unpack(V1 + h(ext)) == msg


def test_train_start_v2_fields_are_read_back():
    back = P.TrainStart.unpack(V1 + h("3900 05 03 0000003f 0000a040 0000803e"))
    assert (back.n_val, back.patience, back.val_flags, back.feature_lr_scale, back.clip_norm, back.l2sp) == (
        57, 5, 3, 0.5, 5.0, 0.25,
    )  # fmt: skip
    assert (back.mode, back.lr, back.warmup_lr, back.layer_mask) == (1, pytest.approx(0.01), 1.0, 5)


def test_train_start_of_another_length_is_refused():
    exc = refusal(P.TrainStart.unpack, V1 + h("3900"))
    assert str(exc) == "TrainStart payload is 30 bytes, expected 28 or 44"
    assert exc.code == P.ErrorCode.BAD_PAYLOAD


def test_train_start_extension_out_of_range_is_refused():
    exc = refusal(P.TrainStart(n_val=70_000).pack)
    assert str(exc) == (
        "TrainStart: an extension field is out of range or of the wrong type "
        "(ushort format requires 0 <= number <= 65535)"
    )
    assert exc.code == P.ErrorCode.BAD_PAYLOAD


def test_train_start_base_field_out_of_range_is_refused_with_the_base_values():
    exc = refusal(P.TrainStart(P.TrainMode.FULL, 1, 70_000).pack)
    assert str(exc) == (
        "TrainStart: a field is out of range or of the wrong type "
        "(ushort format requires 0 <= number <= 65535); values [0, 1, 70000, 32, 0, 0.01, 0.01, 0, 0]"
    )


# --- ERROR ---------------------------------------------------------------------------------------------------
def test_error_describe_names_the_code_and_the_request():
    msg = P.Error(P.ErrorCode.OUT_OF_RAM, P.MsgType.MODEL_BEGIN, 0, 1, 2, "model needs 400000 B")
    assert msg.describe() == "OUT_OF_RAM on MODEL_BEGIN: model needs 400000 B"


def test_error_describe_of_unknown_code_and_request_gives_the_numbers():
    assert P.Error(99, 0x7A, 0, 0, 0, "what").describe() == "code 99 on 0x7A: what"
    assert P.Error(99, 0x0A, 0, 0, 0, "").describe() == "code 99 on 0x0A: "


def test_error_message_builds_the_error_answer():
    msg = P.error_message(P.ErrorCode.BAD_OFFSET, 0x121, "chunk at 8, expected 4", 4, -8)
    assert (msg.code, msg.request, msg.reserved, msg.arg0, msg.arg1) == (12, 0x21, 0, 4, 0xFFFFFFF8)
    assert msg.message == "chunk at 8, expected 4"
    assert msg.pack() == h("0c 21 0000 04000000 f8ffffff") + b"chunk at 8, expected 4"


def test_error_message_defaults_its_arguments_to_zero():
    msg = P.error_message(P.ErrorCode.NO_MODEL, P.MsgType.TRAIN_START, "no model")
    assert (msg.arg0, msg.arg1) == (0, 0)


def test_error_message_text_is_cut_at_200_bytes_on_a_character_boundary():
    assert P.error_message(P.ErrorCode.INTERNAL, 1, "x" * 201).message == "x" * 200
    assert P.error_message(P.ErrorCode.INTERNAL, 1, "x" * 200).message == "x" * 200
    # "é" is 2 bytes: 199 + 2 = 201 > 200, so the cut character is dropped whole
    assert P.error_message(P.ErrorCode.INTERNAL, 1, "x" * 199 + "é").message == "x" * 199
    assert P.error_message(P.ErrorCode.INTERNAL, 1, "x" * 198 + "é").message == "x" * 198 + "é"


# --- ODR / full scale ----------------------------------------------------------------------------------------
def test_odr_in_millihertz():
    assert [P.odr_to_mhz(hz) for hz in (12.5, 26.0, 1667.0, 0.0005, 0.0015)] == [12500, 26000, 1667000, 0, 2]


def test_every_ladder_rate_is_accepted():
    assert [P.check_odr_mhz(m) for m in (12500, 26000, 52000, 104000, 6667000)] == [12.5, 26.0, 52.0, 104.0, 6667.0]


def test_rate_off_the_ladder_is_refused_listing_the_allowed_rates():
    exc = refusal(P.check_odr_mhz, 20000)
    assert str(exc) == (
        "odr_mhz 20000 is not an LSM6DSO rate (allowed mHz: 12500, 26000, 52000, 104000, 208000, 417000, 833000, "
        "1667000, 3333000, 6667000)"
    )
    assert (exc.code, exc.arg0, exc.arg1) == (P.ErrorCode.BAD_PARAM, 20000, 0)


def test_full_scales_are_2_4_8_16_g():
    assert [P.check_fs_g(g) for g in (2, 4, 8, 16)] == [2, 4, 8, 16]
    exc = refusal(P.check_fs_g, 3)
    assert str(exc) == "fs_g 3 is not an LSM6DSO full scale (allowed: 2, 4, 8, 16)"
    assert (exc.code, exc.arg0, exc.arg1) == (P.ErrorCode.BAD_PARAM, 3, 0)


# --- model descriptor --------------------------------------------------------------------------------------------
def small_arch(**kw) -> Arch:
    layers = (
        Layer("conv1d", "c", filters=2, kernel=3),
        Layer("dropout", "drop", rate=0.5),
        Layer("batchnorm", "bn", epsilon=0.25),
        Layer("maxpool1d", "p", pool=2, stride=1, use_bias=False),
        Layer("flatten", "f"),
        Layer("dense", "d", units=2),
        Layer("softmax", "sm"),
    )
    return Arch((4, 3), layers, **kw)


def rec(kind: str, flags: str, filters: str, kernel: str, units: str, pool: str, stride: str, param: str, name: str):
    raw = name.encode()
    return h(kind + flags + filters + kernel + units + pool + stride + param) + raw + bytes(16 - len(raw))


SMALL_DESC = (
    h("4f444c41 01 07 02 00 0400 0300 0000 0000")
    + rec("01", "01", "0200", "0300", "0000", "0000", "0000", "00000000", "c")
    + rec("10", "01", "0000", "0000", "0000", "0000", "0000", "0000003f", "drop")
    + rec("0f", "01", "0000", "0000", "0000", "0000", "0000", "0000803e", "bn")
    + rec("07", "00", "0000", "0000", "0000", "0200", "0100", "00000000", "p")
    + rec("0e", "01", "0000", "0000", "0000", "0000", "0000", "00000000", "f")
    + rec("03", "01", "0000", "0000", "0200", "0000", "0000", "00000000", "d")
    + rec("05", "01", "0000", "0000", "0000", "0000", "0000", "00000000", "sm")
)


def test_descriptor_is_a_16_byte_header_then_32_bytes_per_layer():
    assert P.encode_arch(small_arch()) == SMALL_DESC
    assert len(SMALL_DESC) == 16 + 7 * 32


def test_descriptor_of_a_rank_3_input_with_preprocessing():
    arch = Arch(
        (24, 3, 1), (Layer("conv2d", "k", filters=1, kernel=24, use_bias=False),), preprocessing="gravity_rot_sup"
    )
    assert P.encode_arch(arch) == h("4f444c41 01 01 03 01 1800 0300 0100 0000") + rec(
        "02", "00", "0100", "1800", "0000", "0000", "0000", "00000000", "k"
    )


def test_descriptor_reads_back_the_architecture():
    arch = P.decode_arch(SMALL_DESC, ("a", "b"))
    assert arch == small_arch(classes=("a", "b"))
    assert arch.input_shape == (4, 3) and arch.preprocessing == "none"
    assert arch.layers[1].rate == 0.5 and arch.layers[2].epsilon == 0.25
    assert arch.layers[3].use_bias is False and arch.layers[0].use_bias is True


def test_descriptor_names_are_cut_to_16_bytes():
    arch = Arch((3,), (Layer("dense", "a_dense_layer_named_long", units=2),))
    desc = P.encode_arch(arch)
    assert desc[16 + 16 :] == b"a_dense_layer_na"
    assert P.decode_arch(desc).layers[0].name == "a_dense_layer_na"


def test_descriptor_names_that_are_empty_or_repeated_are_made_unique():
    desc = (
        h("4f444c41 01 03 01 00 0300 0000 0000 0000")
        + rec("03", "01", "0000", "0000", "0200", "0000", "0000", "00000000", "")
        + rec("04", "01", "0000", "0000", "0000", "0000", "0000", "00000000", "r")
        + rec("04", "01", "0000", "0000", "0000", "0000", "0000", "00000000", "r")
    )
    assert [la.name for la in P.decode_arch(desc).layers] == ["layer0", "r", "r#2"]


def test_descriptor_name_that_is_not_utf8_is_read_with_a_replacement_character():
    desc = (
        h("4f444c41 01 01 01 00 0300 0000 0000 0000")
        + rec("04", "01", "0000", "0000", "0000", "0000", "0000", "00000000", "")[:16]
        + b"r\xff"
        + bytes(14)
    )
    assert P.decode_arch(desc).layers[0].name == "r\ufffd"


def test_descriptor_header_shorter_than_16_bytes_is_refused():
    exc = refusal(P.decode_arch, SMALL_DESC[:15])
    assert str(exc) == "descriptor of 15 bytes is shorter than its 16-byte header"
    assert exc.code == P.ErrorCode.BAD_PAYLOAD


def test_descriptor_with_another_magic_is_refused():
    exc = refusal(P.decode_arch, b"ODLB" + SMALL_DESC[4:])
    assert str(exc) == "descriptor magic b'ODLB' is not b'ODLA'"


def test_descriptor_of_another_version_is_refused_naming_version_1():
    exc = refusal(P.decode_arch, SMALL_DESC[:4] + b"\x02" + SMALL_DESC[5:])
    assert str(exc) == "descriptor version 2 is not supported (1)"
    assert (exc.code, exc.arg0, exc.arg1) == (P.ErrorCode.BAD_VERSION, 1, 0)


def test_descriptor_whose_size_disagrees_with_its_layer_count_is_refused():
    exc = refusal(P.decode_arch, SMALL_DESC + bytes(1))
    assert str(exc) == "descriptor is 241 bytes, 7 layers need 240"
    exc = refusal(P.decode_arch, SMALL_DESC[:-1])
    assert str(exc) == "descriptor is 239 bytes, 7 layers need 240"


@pytest.mark.parametrize("rank", [0, 4])
def test_descriptor_input_rank_outside_1_to_3_is_refused(rank):
    exc = refusal(P.decode_arch, SMALL_DESC[:6] + bytes([rank]) + SMALL_DESC[7:])
    assert str(exc) == f"descriptor input rank {rank} is not 1..3"


def test_descriptor_input_ranks_1_and_3_are_read():
    one = h("4f444c41 01 01 01 00 0300 0500 0700 0000") + rec(
        "03", "01", "0000", "0000", "0200", "0000", "0000", "00000000", "d"
    )
    assert P.decode_arch(one).input_shape == (3,)
    three = h("4f444c41 01 01 03 01 0300 0500 0700 0000") + rec(
        "0e", "01", "0000", "0000", "0000", "0000", "0000", "00000000", "f"
    )
    arch = P.decode_arch(three)
    assert arch.input_shape == (3, 5, 7) and arch.preprocessing == "gravity_rot_sup"


def test_descriptor_preprocessing_code_unknown_is_refused():
    exc = refusal(P.decode_arch, SMALL_DESC[:7] + b"\x02" + SMALL_DESC[8:])
    assert str(exc) == "descriptor preprocessing code 2 is unknown"


def test_descriptor_unknown_layer_kind_is_refused_with_its_index_and_code():
    desc = bytearray(SMALL_DESC)
    desc[16 + 32 * 2] = 0
    with pytest.raises(P.UnknownLayerError) as exc:
        P.decode_arch(bytes(desc))
    assert str(exc.value) == "layer 2: unknown layer kind code 0"
    assert (exc.value.index, exc.value.kind_code, exc.value.code) == (2, 0, P.ErrorCode.UNKNOWN_LAYER)


def test_descriptor_of_a_network_that_cannot_run_names_the_layer():
    desc = bytearray(SMALL_DESC)
    desc[16 + 32 * 5 + 6] = 0  # dense units 0
    exc = refusal(P.decode_arch, bytes(desc))
    assert str(exc) == "descriptor describes an invalid network: layer 'd': units must be >= 1"
    assert (exc.code, exc.arg0) == (P.ErrorCode.BAD_PAYLOAD, 5)


def test_descriptor_of_a_network_whose_error_names_no_layer_gives_argument_0():
    desc = h("4f444c41 01 01 01 00 0000 0000 0000 0000") + rec(
        "03", "01", "0000", "0000", "0200", "0000", "0000", "00000000", "d"
    )
    exc = refusal(P.decode_arch, desc)
    assert str(exc) == (
        "descriptor describes an invalid network: input shape (0,) is not valid: sizes must be whole numbers >= 1"
    )
    assert (exc.code, exc.arg0) == (P.ErrorCode.BAD_PAYLOAD, 0)


def test_descriptor_with_a_nan_epsilon_names_the_layer():
    desc = bytearray(SMALL_DESC)
    desc[16 + 32 * 2 + 12 : 16 + 32 * 2 + 16] = h("0000c07f")
    exc = refusal(P.decode_arch, bytes(desc))
    assert str(exc) == "descriptor describes an invalid network: layer 'bn': epsilon must be a finite number, got nan"
    assert (exc.code, exc.arg0) == (P.ErrorCode.BAD_PAYLOAD, 2)


def test_named_layer_index_finds_the_quoted_layer_name():
    layers = small_arch().layers
    assert P.named_layer_index(ValueError("layer 'f': bad"), layers, 9) == 4
    assert P.named_layer_index(ValueError("layer 'zz': bad"), layers, 9) == 9  # a name not in the list
    assert P.named_layer_index(ValueError("no layer named"), layers, 7) == 7


def test_descriptor_input_rank_above_3_is_refused_on_encode():
    arch = Arch((2, 2, 2, 2), (Layer("flatten", "f"),))
    exc = refusal(P.encode_arch, arch)
    assert str(exc) == "input shape (2, 2, 2, 2) must have rank 1..3"


def test_descriptor_of_more_than_255_layers_is_refused():
    arch = Arch((3,), tuple(Layer("relu", f"r{i}") for i in range(256)))
    exc = refusal(P.encode_arch, arch)
    assert str(exc) == "256 layers exceed the descriptor's 255"
    assert len(P.encode_arch(Arch((3,), tuple(Layer("relu", f"r{i}") for i in range(255))))) == 16 + 255 * 32


def test_descriptor_of_an_unknown_preprocessing_is_refused():
    arch = dataclasses.replace(small_arch(), preprocessing="whiten")
    exc = refusal(P.encode_arch, arch)
    assert str(exc) == "preprocessing 'whiten' has no protocol code (known: none, gravity_rot_sup)"


def test_descriptor_hyper_parameter_too_large_is_refused_naming_the_layer():
    arch = Arch((3,), (Layer("dense", "wide", units=70_000),))
    exc = refusal(P.encode_arch, arch)
    assert str(exc) == (
        "layer 'wide': a hyper-parameter does not fit the descriptor (ushort format requires 0 <= number <= 65535)"
    )


# --- weights blob ----------------------------------------------------------------------------------------------
def dense_arch() -> Arch:
    return Arch((3,), (Layer("dense", "d", units=2), Layer("relu", "r"), Layer("dense", "o", units=1, use_bias=False)))


def dense_weights() -> dict[str, list[np.ndarray]]:
    return {
        "d": [np.array([[1.0, 2.0], [-1.0, 0.5], [0.0, 4.0]]), np.array([0.25, -2.0])],
        "o": [np.array([[3.0], [-0.5]])],
    }


DENSE_BLOB = h(
    "0000803f 00000040 000080bf 0000003f 00000000 00008040"  # d kernel (3, 2), C order
    " 0000803e 000000c0"  # d bias
    " 00004040 000000bf"  # o kernel (2, 1)
)


def test_weight_tensors_in_blob_order():
    assert P.weight_tensors(dense_arch()) == [("d", (3, 2)), ("d", (2,)), ("o", (2, 1))]


def test_weights_blob_is_float32_little_endian_in_layer_and_tensor_order():
    assert P.encode_weights(dense_arch(), dense_weights()) == DENSE_BLOB


def test_weights_blob_reads_back_as_float32_by_layer():
    out = P.decode_weights(dense_arch(), DENSE_BLOB)
    assert list(out) == ["d", "o"]
    assert [a.dtype for a in out["d"] + out["o"]] == [np.float32] * 3
    assert out["d"][0].tolist() == [[1.0, 2.0], [-1.0, 0.5], [0.0, 4.0]]
    assert out["d"][1].tolist() == [0.25, -2.0]
    assert out["o"][0].tolist() == [[3.0], [-0.5]]


def test_weights_blob_read_back_under_other_names():
    out = P.decode_weights(dense_arch(), DENSE_BLOB, names=["dense_hidden", "dense_out"])
    assert list(out) == ["dense_hidden", "dense_out"] and out["dense_out"][0].tolist() == [[3.0], [-0.5]]


def test_weights_blob_with_the_wrong_number_of_names_is_refused():
    exc = refusal(P.decode_weights, dense_arch(), DENSE_BLOB, names=["a"])
    assert str(exc) == "1 layer names for 2 layers with weights"


def test_weights_blob_of_the_wrong_size_is_refused():
    exc = refusal(P.decode_weights, dense_arch(), DENSE_BLOB[:-4])
    assert str(exc) == "weights blob is 36 bytes, the architecture needs 40"


def test_weights_of_a_missing_layer_are_refused():
    w = dense_weights()
    del w["o"]
    assert str(refusal(P.encode_weights, dense_arch(), w)) == "weights for layer 'o' are missing"


def test_weights_with_a_missing_tensor_are_refused():
    w = dense_weights()
    w["d"] = w["d"][:1]
    assert str(refusal(P.encode_weights, dense_arch(), w)) == "layer 'd': 1 weight tensors, the architecture needs 2"


def test_weights_of_the_wrong_shape_are_refused():
    w = dense_weights()
    w["d"][1] = np.zeros(3)
    assert str(refusal(P.encode_weights, dense_arch(), w)) == "layer 'd' tensor 1: shape (3,), expected (2,)"


def test_model_blob_is_the_descriptor_then_the_weights():
    blob, desc_len = P.encode_model(dense_arch(), dense_weights())
    desc = P.encode_arch(dense_arch())
    assert desc_len == 16 + 3 * 32 and blob == desc + DENSE_BLOB
    arch, w = P.decode_model(blob, desc_len)
    assert arch == dense_arch() and w["o"][0].tolist() == [[3.0], [-0.5]] and w["d"][1].tolist() == [0.25, -2.0]


# --- dataset blob ----------------------------------------------------------------------------------------------
def test_dataset_blob_float32():
    x = np.array([[[1.0, -2.0]], [[0.5, 0.0]], [[3.0, 4.0]]])  # n 3, T 1, C 2
    blob = P.encode_dataset(x, [2, 0, 5])
    assert blob == (
        h("0300 0100 02 00 0000 0000803f")  # header: n, T, C, dtype f32, reserved, scale 1
        + h("02 00 05 00")  # labels, padded to 4
        + h("0000803f 000000c0 0000003f 00000000 00004040 00008040")
    )
    x2, y2, dt, scale = P.decode_dataset(blob)
    assert x2.dtype == np.float32 and x2.tolist() == [[[1.0, -2.0]], [[0.5, 0.0]], [[3.0, 4.0]]]
    assert y2.dtype == np.int64 and y2.tolist() == [2, 0, 5] and dt == P.DType.F32 and scale == 1.0


def test_dataset_blob_int16_counts_times_scale():
    x = np.array([[[1.0], [-0.5]], [[0.26], [0.0]]])  # n 2, T 2, C 1; scale 0.5 -> counts 2, -1, 1 (0.52), 0
    blob = P.encode_dataset(x, [1, 255], P.DType.I16, 0.5)
    assert blob == h("0200 0200 01 01 0000 0000003f") + h("01 ff 00 00") + h("0200 ffff 0100 0000")
    x2, y2, dt, scale = P.decode_dataset(blob)
    assert x2.dtype == np.float32 and x2.tolist() == [[[1.0], [-0.5]], [[0.5], [0.0]]]
    assert y2.tolist() == [1, 255] and dt == P.DType.I16 and scale == 0.5


def test_dataset_blob_int16_rounds_half_to_even():
    blob = P.encode_dataset(np.array([[[0.5], [1.5], [-2.5]]]), [0], P.DType.I16, 1.0)
    assert blob[16:] == h("0000 0200 feff")


def test_dataset_blob_of_4_labels_needs_no_padding():
    blob = P.encode_dataset(np.zeros((4, 1, 1)), [1, 2, 3, 4])
    assert blob[12:] == h("01020304") + bytes(16)
    assert P.decode_dataset(blob)[1].tolist() == [1, 2, 3, 4]


def test_dataset_windows_with_a_trailing_unit_axis_are_sent_as_n_t_c():
    blob = P.encode_dataset(np.ones((1, 2, 3, 1)), [0])
    assert blob[:12] == h("0100 0200 03 00 0000 0000803f")


def test_dataset_windows_that_are_not_n_t_c_are_refused():
    assert str(refusal(P.encode_dataset, np.zeros((2, 3)), [0, 1])) == "windows must have shape (n, T, C), got (2, 3)"
    exc = refusal(P.encode_dataset, np.zeros((1, 2, 3, 2)), [0])
    assert str(exc) == "windows must have shape (n, T, C), got (1, 2, 3, 2)"


def test_dataset_labels_must_match_the_windows():
    assert str(refusal(P.encode_dataset, np.zeros((3, 4, 3)), [0, 1])) == "2 labels for 3 windows"
    assert str(refusal(P.encode_dataset, np.zeros((3, 4, 3)), 1)) == "0 labels for 3 windows"


def test_dataset_shape_limits():
    want = "dataset shape {} is outside 1..65535 windows, T <= 65535, C <= 255"
    assert str(refusal(P.encode_dataset, np.zeros((0, 4, 3)), [])) == want.format((0, 4, 3))
    assert str(refusal(P.encode_dataset, np.zeros((1, 1, 256)), [0])) == want.format((1, 1, 256))
    assert str(refusal(P.encode_dataset, np.zeros((1, 65536, 1)), [0])) == want.format((1, 65536, 1))
    assert str(refusal(P.encode_dataset, np.zeros((65536, 1, 1)), np.zeros(65536, int))) == want.format((65536, 1, 1))
    assert len(P.encode_dataset(np.zeros((1, 1, 255)), [0])) == 12 + 4 + 255 * 4


def test_dataset_labels_outside_0_to_255_are_refused():
    assert str(refusal(P.encode_dataset, np.zeros((2, 1, 1)), [0, 256])) == "labels must be class indices 0..255"
    assert str(refusal(P.encode_dataset, np.zeros((2, 1, 1)), [-1, 3])) == "labels must be class indices 0..255"


def test_dataset_int16_refuses_non_finite_windows_and_values_that_do_not_fit():
    exc = refusal(P.encode_dataset, np.array([[[np.nan]]]), [0], P.DType.I16, 1.0)
    assert str(exc) == "windows contain non-finite values"
    exc = refusal(P.encode_dataset, np.array([[[32767.6]]]), [0], P.DType.I16, 1.0)
    assert str(exc) == "values do not fit int16 at scale 1.0"
    exc = refusal(P.encode_dataset, np.array([[[-16384.5]]]), [0], P.DType.I16, 0.5)
    assert str(exc) == "values do not fit int16 at scale 0.5"
    edges = P.encode_dataset(np.array([[[32767.0], [-32768.0]]]), [0], P.DType.I16, 1.0)
    assert edges[16:] == h("ff7f 0080")


def test_dataset_blob_shorter_than_its_header_is_refused():
    assert str(refusal(P.decode_dataset, bytes(11))) == "dataset blob of 11 bytes is shorter than its header"


def test_dataset_blob_of_an_unknown_dtype_is_refused():
    exc = refusal(P.decode_dataset, h("0100 0100 01 02 0000 0000803f 00000000 00000000"))
    assert str(exc) == "dataset dtype code 2 is unknown (0 f32, 1 i16)"


def test_dataset_blob_whose_size_disagrees_with_its_header_is_refused():
    exc = refusal(P.decode_dataset, h("0500 0200 03 01 0000 0000803f") + bytes(8 + 5 * 2 * 3 * 2 - 1))
    assert str(exc) == "dataset blob is 79 bytes, header (n=5, T=2, C=3) needs 80"
    exc = refusal(P.decode_dataset, h("0000 0200 03 00 0000 0000803f"))
    assert str(exc) == "dataset blob is 12 bytes, header (n=0, T=2, C=3) needs 12"


def test_dataset_blob_int16_of_5_windows_reads_back():
    blob = h("0500 0100 01 01 0000 0000803f") + h("0001020304 000000") + h("0100 0200 0300 0400 0500")
    x, y, dt, scale = P.decode_dataset(blob)
    assert x.tolist() == [[[1.0]], [[2.0]], [[3.0]], [[4.0]], [[5.0]]] and y.tolist() == [0, 1, 2, 3, 4]


# --- chunks ----------------------------------------------------------------------------------------------------
def test_chunks_of_1020_bytes_by_default():
    blob = bytes(range(256)) * 8  # 2048 bytes
    got = list(P.chunks(blob))
    assert [(off, len(data)) for off, data in got] == [(0, 1020), (1020, 1020), (2040, 8)]
    assert b"".join(d for _, d in got) == blob


def test_chunks_of_a_given_size():
    assert list(P.chunks(b"abcdefg", 3)) == [(0, b"abc"), (3, b"def"), (6, b"g")]
    assert list(P.chunks(b"", 3)) == []


# --- more tail and edge cases ------------------------------------------------------------------------------------
def test_samples_given_as_a_list_are_sent_as_int16():
    msg = P.Samples(0, 0, 26_000, 2, 0, 1, [[1, -1, 256]])
    assert msg.pack()[20:] == h("0100 ffff 0001")


def test_u16_tail_of_3_bytes_is_refused():
    exc = refusal(P.EvalResult.unpack, h("01 01 0900 0000003f e803000000000000 030004"))
    assert str(exc) == "EvalResult.confusion: odd length 3 for u16 array"


def test_names_tail_of_17_bytes_is_refused():
    exc = refusal(P.Activity.unpack, b"sitting" + bytes(9) + b"walking" + bytes(10))
    assert str(exc) == "Activity.available: 17 bytes is not a whole number of 16-byte names"


def test_activity_names_of_exactly_16_bytes_are_read_one_by_one():
    raw = b"x" * 16 + b"sixteen_chars_ab" + b"b" + bytes(15)
    assert P.Activity.unpack(raw).available == ("sixteen_chars_ab", "b")


def test_samples_tail_of_5_bytes_is_refused():
    exc = refusal(P.Samples.unpack, h("05000000 40420f0000000000 90650000 02 00 0100") + bytes(5))
    assert str(exc) == "Samples.xyz: 5 bytes is not a whole number of 6-byte xyz samples"


def test_an_unknown_tail_kind_is_a_programming_error():
    with pytest.raises(AssertionError) as exc:
        P._pack_tail(b"", "floats", "X.t")
    assert str(exc.value) == "floats"
    with pytest.raises(AssertionError) as exc:
        P._unpack_tail(b"", "floats", "X.t")
    assert str(exc.value) == "floats"


def test_tailed_message_of_just_its_fixed_part_has_an_empty_tail():
    back = P.ModelChunk.unpack(h("fc030000"))
    assert (back.offset, back.data) == (1020, b"")


def test_descriptor_of_no_layers_is_its_16_byte_header():
    arch = P.decode_arch(h("4f444c41 01 00 01 00 0300 0000 0000 0000"))
    assert arch.input_shape == (3,) and arch.layers == ()


def test_descriptor_name_with_a_lone_surrogate_is_sent_with_a_question_mark():
    desc = P.encode_arch(Arch((3,), (Layer("relu", "r\udc80"),)))
    assert desc[16 + 16 :] == b"r?" + bytes(14)


def test_dataset_of_65535_windows_and_of_65535_samples_per_window_are_accepted():
    blob = P.encode_dataset(np.zeros((65535, 1, 1), np.float32), np.zeros(65535, int))
    assert blob[:4] == h("ffff 0100") and len(blob) == 12 + 65536 + 65535 * 4
    blob = P.encode_dataset(np.zeros((1, 65535, 1), np.float32), [0])
    assert blob[:4] == h("0100 ffff") and len(blob) == 12 + 4 + 65535 * 4


def test_error_message_with_a_lone_surrogate_is_sent_with_a_question_mark():
    assert P.error_message(P.ErrorCode.INTERNAL, 1, "bad \udc80 name").message == "bad ? name"


def test_dataset_int16_counts_are_rounded_from_the_exact_value():
    """178.05000305 (float32) / 0.1 = 1780.5000305: the nearest count is 1781 (a float32 division would give
    1780.5 and round it to the even 1780)."""
    blob = P.encode_dataset(np.array([[[178.05]]], np.float32), [0], P.DType.I16, 0.1)
    assert blob[16:] == h("f506")


# --- the golden vectors of docs/protocol.md §7 (called inside the tests: a table built at collection time would
# not see a changed function) ------------------------------------------------------------------------------------
def doc_bytes(notation: str) -> bytes:
    """The docs' byte notation: hex, spaces for reading, ``hh×N`` = byte hh repeated N times."""
    out = b""
    for tok in notation.split():
        byte, _, count = tok.partition("×")
        out += bytes.fromhex(byte) * int(count or 1)
    return out


def test_golden_vectors_are_the_table_of_the_docs_in_its_order():
    section = DOC.split("## 7. Golden vectors", 1)[1].split("### 7.1", 1)[0]
    rows = re.findall(r"^\| (\w+) \| (\d+) \| `(\w+)`[^|]* \| `([^`]*)` \|$", section, re.M)
    assert len(rows) == 16
    want = [(name, int(seq), kind, doc_bytes(wire).hex()) for name, seq, kind, wire in rows]  # lowercase hex
    assert [(name, seq, type(msg).__name__, wire) for name, seq, msg, wire in P.golden_vectors()] == want


def test_golden_vector_messages_encode_to_their_wire_bytes_and_back():
    for name, seq, msg, wire in P.golden_vectors():
        assert msg.encode(seq) == bytes.fromhex(wire), name
        (frame,) = P.FrameDecoder().feed(bytes.fromhex(wire))
        back = P.decode_message(frame)
        assert (frame.seq, back) == (seq, msg), name
        for f in dataclasses.fields(msg):  # the vector's message is what a decoder yields, field by field
            a, b = getattr(msg, f.name), getattr(back, f.name)
            if isinstance(b, np.ndarray):
                assert (a.dtype, a.tolist()) == (b.dtype, b.tolist()), (name, f.name)
            elif isinstance(b, float):  # sent as float32
                assert float(np.float32(a)) == b, (name, f.name)
            else:
                assert a == b, (name, f.name)


def test_cobs_golden_vectors_are_the_table_of_the_docs_and_cobs_codes_them():
    section = DOC.split("### 7.1", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\w+) \| `([^`]*)` \| `([^`]*)` \|$", section, re.M)
    assert len(rows) == 12
    assert P.cobs_golden_vectors() == [(name, doc_bytes(d), doc_bytes(c)) for name, d, c in rows]
    for name, data, coded in P.cobs_golden_vectors():
        assert (cobs.encode(data), cobs.decode(coded)) == (coded, data), name
