"""`vwwtorch firmware flash` against a simulated Apollo3 bootloader on a pty, with injected faults.

Every case must end either in a verified success (the fake's reassembled blob equals ours byte for
byte and the frame sequence is the one uart_wired_update.py sends) or in a non-zero exit with
one clear line, never in a reported success with a wrong image.
"""

from __future__ import annotations

import random
import struct
import sys
import threading
from pathlib import Path

import pytest
import serial

sys.path.insert(0, str(Path(__file__).parent))

from cli_asserts import assert_one_line_error
from fake_apollo3_bootloader import FakeBootloader, Fault  # noqa: E402
from vwwtorch.firmware.boards.sparkfun_edge import apollo3_image as img  # noqa: E402
from vwwtorch.firmware.boards.sparkfun_edge import apollo3_uart as uart  # noqa: E402
from vwwtorch.firmware.boards.sparkfun_edge.apollo3_uart import AckStatus, MsgType  # noqa: E402
from vwwtorch.firmware.boards.sparkfun_edge.serial_port import open_port  # noqa: E402
from vwwtorch.firmware.boards.sparkfun_edge.monitor import monitor  # noqa: E402

import vwwtorch.cli  # noqa: E402
from vwwtorch.contract.detection_log import Detection, format_detection, parse_detection  # noqa: E402

# Short but not tight: the fake answers in milliseconds, the machine may be busy.
FAST = ("--timeout", "1", "--hello-timeout", "1", "--no-prompt")
DATA_CHUNK = 8180


def fake_app(size: int, seed: int = 0) -> bytes:
    """A stand-in firmware: a valid vector table (SP in SRAM, Thumb reset handler inside the
    image at 0xC000) followed by deterministic pseudo-random bytes."""
    return struct.pack("<II", 0x10010000, 0xC000 + 0x201) + random.Random(seed).randbytes(size - 8)


@pytest.fixture(scope="module")
def app_bin(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fw") / "firmware.bin"
    path.write_bytes(fake_app(300_003))          # two wired blocks
    return path


@pytest.fixture
def cli(monkeypatch, capsys):
    monkeypatch.setattr(vwwtorch.cli, "COMMAND_MODULES", ("vwwtorch.firmware.cli",))

    def run(*argv):
        code = vwwtorch.cli.main(["firmware", *map(str, argv)])
        out, err = capsys.readouterr()
        return code, out, err
    return run


def expected_wire(path: Path) -> bytes:
    return img.make_wire_blob(img.make_ota_image(path.read_bytes()))


def flash(cli, fake: FakeBootloader, app: Path, *extra):
    with fake:
        code, out, err = cli("flash", "--port", fake.port, "--bin", app, *FAST, *extra)
    if code != 0:   # a failure is one clear line, never a traceback (after any retry warnings)
        errors = "\n".join(line for line in err.splitlines() if not line.startswith("warning:"))
        assert_one_line_error(code, errors, exit_code=code)
    return code, out, err


def expected_sequence(wire: bytes) -> list[tuple]:
    """The host's messages as the spec lists them: (type, length, payload words)."""
    blocks = img.split_wire_blob(wire)
    seq = [(MsgType.HELLO, 8, ()), (MsgType.OTADESC, 12, (0xFE000,))]
    for block in reversed(blocks):                      # last block first
        seq.append((MsgType.UPDATE, 20, (len(block), img.crc32(block), 0)))
        for offset in range(0, len(block), DATA_CHUNK):
            chunk = len(block[offset:offset + DATA_CHUNK])
            seq.append((MsgType.DATA, 12 + chunk, (offset,)))
    seq.append((MsgType.RESET, 12, (1,)))
    return seq


def observed_sequence(fake: FakeBootloader) -> list[tuple]:
    return [(m.msg_type, m.length, m.words) for m in fake.log]


def assert_nothing_installed_wrong(fake: FakeBootloader, wire: bytes) -> None:
    """After a failure: whatever the fake committed is a correct block of our blob, and no RESET
    asked for an install."""
    assert fake.reset_mode is None
    blocks = img.split_wire_blob(wire)
    assert all(b in blocks for b in fake.blocks)


# -- framing ------------------------------------------------------------------------------------

def test_golden_frames():
    # Frames from the spec, computed independently with zlib and confirmed against the SDK script.
    assert uart.hello() == bytes.fromhex("14559de900000800")
    assert uart.ota_descriptor(0xFE000) == bytes.fromhex("00d4bf7e02000c0000e00f00")
    assert uart.reset(1) == bytes.fromhex("f071336c06000c0001000000")
    assert uart.reset(2) == bytes.fromhex("1ede867e06000c0002000000")
    assert uart.ack(2, 0, 0) == bytes.fromhex("c89e6782070014000200000000000000" "00000000")
    assert img.crc32(b"123456789") == 0xCBF43926


def test_decode_checks_crc_and_length():
    frame = uart.data(16360, b"\x01\x02\x03\x04")
    msg = uart.decode(frame)
    assert (msg.msg_type, msg.length, msg.word(0), msg.payload[4:]) == (MsgType.DATA, 16, 16360, b"\1\2\3\4")
    assert msg.intact
    assert not uart.decode(frame[:4] + frame[4:-1] + b"\x05").crc_ok
    assert not uart.decode(frame + b"\0\0\0\0").length_ok
    status = uart.Status.from_message(uart.decode(uart.status(3, 0x4FFA0, 2, 7, (1,))))
    assert (status.version, status.max_image_size, status.am_info[:2]) == (3, 0x4FFA0, (1, 0xFFFFFFFF))
    with pytest.raises(ValueError, match="8192"):
        uart.data(0, bytes(DATA_CHUNK + 1))


# -- the good path ------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [300_003, 294_785, 294_784, 5_000])
def test_flash_delivers_the_blob_byte_for_byte(cli, tmp_path, size):
    app = tmp_path / "fw.bin"
    app.write_bytes(fake_app(size, seed=size))
    wire = expected_wire(app)
    fake = FakeBootloader()
    code, out, err = flash(cli, fake, app)
    assert code == 0, err
    assert fake.errors == []
    assert fake.wire_image() == wire
    assert observed_sequence(fake) == expected_sequence(wire)
    assert all(img.crc32(m.raw[4:]) == struct.unpack_from("<I", m.raw)[0] for m in fake.log)
    # What the bootloader would install: the OTA image, intact, for 0xC000.
    blocks = img.split_wire_blob(wire)
    for k, block in enumerate(fake.blocks[::-1]):          # they arrived last block first
        header = img.WireHeader.parse(block)
        assert (block[80], block[81]) == (6, 1 if k == 0 else 0)
        assert header.address == 0x20000 + k * 0x48000
        assert block == blocks[k]
    ota = b"".join(b[96:] for b in fake.blocks[::-1])
    header = img.OtaHeader.parse(ota)
    assert header.crc_ok and header.load_address == 0xC000
    assert ota[128:128 + size] == app.read_bytes()
    assert fake.reset_mode == 1
    assert "done:" in out and "press and hold button 14" in out


def test_reset_mode_por_and_none(cli, app_bin):
    fake = FakeBootloader()
    code, _, err = flash(cli, fake, app_bin, "--reset", "por")
    assert code == 0, err
    assert fake.reset_mode == 2
    fake = FakeBootloader()
    code, _, err = flash(cli, fake, app_bin, "--reset", "none")
    assert code == 0, err
    assert fake.reset_mode is None and fake.types()[-1] == "DATA"
    assert fake.wire_image() == expected_wire(app_bin)


# -- faults -------------------------------------------------------------------------------------

def test_no_status_reply(cli, app_bin):
    fake = FakeBootloader([Fault(MsgType.HELLO, "drop")])
    code, _, err = flash(cli, fake, app_bin)
    assert code == 1
    assert "no reply to HELLO within 1 s: is the board in bootloader mode (hold 14" in err
    assert len(err.strip().splitlines()) == 1
    assert fake.types() == ["HELLO"]


@pytest.mark.parametrize("fault, message", [
    (Fault(MsgType.HELLO, "wrong_type", reply_type=MsgType.ACK),
     "unexpected reply to HELLO: message type ACK instead of STATUS"),
    (Fault(MsgType.DATA, "wrong_type", nth=0, reply_type=MsgType.STATUS),
     "unexpected reply to DATA of block 2/2 at offset 0: message type STATUS instead of ACK"),
])
def test_wrong_reply_type(cli, app_bin, fault, message):
    fake = FakeBootloader([fault])
    code, _, err = flash(cli, fake, app_bin)
    assert code == 1 and message in err
    assert_nothing_installed_wrong(fake, expected_wire(app_bin))


def test_ack_for_another_message_type(cli, app_bin):
    fake = FakeBootloader([Fault(MsgType.UPDATE, "wrong_type", reply_type=MsgType.ACK)])  # ACK src 0
    code, _, err = flash(cli, fake, app_bin)
    assert code == 1 and "acknowledged a HELLO message in reply to UPDATE" in err
    assert_nothing_installed_wrong(fake, expected_wire(app_bin))


def test_nack_once_is_recovered_by_resending(cli, app_bin):
    fake = FakeBootloader([Fault(MsgType.DATA, "nack", nth=5, status=AckStatus.CRC)])
    code, out, err = flash(cli, fake, app_bin)
    assert code == 0, err
    assert fake.wire_image() == expected_wire(app_bin)
    data = [m.raw for m in fake.log if m.msg_type == MsgType.DATA]
    assert data[5] == data[6]                              # the NACKed frame, sent again as is
    assert "sending it again (attempt 2 of 4)" in err and "1 resent" in out
    expected = expected_sequence(expected_wire(app_bin))
    sixth_data = [i for i, m in enumerate(expected) if m[0] == MsgType.DATA][5]
    expected.insert(sixth_data, expected[sixth_data])
    assert observed_sequence(fake) == expected


def test_success_on_the_last_attempt_counts(cli, app_bin):
    # The SDK script reported a success on its 4th try as "numTries exceeded"; here it counts.
    fake = FakeBootloader([Fault(MsgType.UPDATE, "nack", nth=1, times=3, status=AckStatus.FAILURE)])
    code, _, err = flash(cli, fake, app_bin)
    assert code == 0, err
    assert fake.wire_image() == expected_wire(app_bin)
    assert fake.types().count("UPDATE") == 2 + 3


@pytest.mark.parametrize("attempts", [4, 2])
def test_nack_forever_gives_up_after_n_attempts(cli, app_bin, attempts):
    fake = FakeBootloader([Fault(MsgType.DATA, "nack", nth=3, times=None, status=AckStatus.CRC)])
    code, _, err = flash(cli, fake, app_bin, "--attempts", attempts)
    assert code == 1
    assert f"rejected DATA of block 1/2 at offset {2 * DATA_CHUNK} {attempts} times (last: CRC)" in err
    data = [m.raw for m in fake.log if m.msg_type == MsgType.DATA]
    assert len(data) == 3 + attempts and len(set(data[3:])) == 1
    assert fake.types()[-1] == "DATA"                      # stopped: no RESET
    assert_nothing_installed_wrong(fake, expected_wire(app_bin))


def test_fatal_nack_is_not_resent(cli, app_bin):
    fake = FakeBootloader([Fault(MsgType.OTADESC, "nack", status=AckStatus.INVALID_ADDR)])
    code, _, err = flash(cli, fake, app_bin)
    assert code == 1 and "rejected OTA descriptor: INVALID_ADDR" in err
    assert fake.types() == ["HELLO", "OTADESC"]


def test_corrupted_reply_crc_strict_stops(cli, app_bin):
    fake = FakeBootloader([Fault(MsgType.DATA, bad_crc=True, nth=3)])
    code, _, err = flash(cli, fake, app_bin, "--reply-crc", "strict")
    assert code == 1
    assert "ACK reply to DATA of block 1/2 at offset 16360 failed its CRC check" in err
    assert_nothing_installed_wrong(fake, expected_wire(app_bin))


def test_corrupted_reply_crc_warn_accepts_an_exact_success(cli, app_bin):
    fake = FakeBootloader([Fault(MsgType.DATA, bad_crc=True, nth=3), Fault(MsgType.HELLO, bad_crc=True)])
    code, _, err = flash(cli, fake, app_bin)
    assert code == 0, err
    assert fake.errors == [] and fake.wire_image() == expected_wire(app_bin)
    assert "failed its CRC check" in err and "2 bootloader replies failed" in err


def test_corrupted_reply_crc_never_turns_a_failure_into_success(cli, app_bin):
    # A damaged reply that does not say exactly "success, next offset" is not trusted in warn mode.
    fake = FakeBootloader([Fault(MsgType.DATA, "wrong_seq", bad_crc=True, nth=3)])
    code, _, err = flash(cli, fake, app_bin)
    assert code == 1 and "does not report a success" in err
    fake = FakeBootloader([Fault(MsgType.DATA, "nack", bad_crc=True, nth=3)])
    code, _, err = flash(cli, fake, app_bin)
    assert code == 1 and "does not report a success" in err


def test_dropped_ack_times_out(cli, app_bin):
    fake = FakeBootloader([Fault(MsgType.DATA, "drop", nth=2)])
    code, _, err = flash(cli, fake, app_bin)
    assert code == 1
    assert "no reply to DATA of block 1/2 at offset 8180 within 1 s" in err
    assert fake.types().count("DATA") == 3                 # no blind resend after a lost ACK
    assert_nothing_installed_wrong(fake, expected_wire(app_bin))


def test_slow_ack_within_timeout_is_fine(cli, app_bin):
    fake = FakeBootloader([Fault(MsgType.DATA, "delay", nth=1, delay=0.3)])
    code, _, err = flash(cli, fake, app_bin)
    assert code == 0, err
    assert fake.wire_image() == expected_wire(app_bin)


def test_missing_reset_ack_is_only_a_warning(cli, app_bin):
    fake = FakeBootloader([Fault(MsgType.RESET, "drop")])
    code, out, err = flash(cli, fake, app_bin)
    assert code == 0, err
    assert "no ACK to RESET" in err and "done:" in out
    assert fake.wire_image() == expected_wire(app_bin) and fake.reset_mode == 1


def test_bootloader_sequence_error(cli, app_bin):
    fake = FakeBootloader([Fault(MsgType.DATA, "seq_error", nth=4)])
    code, _, err = flash(cli, fake, app_bin)
    assert code == 1
    assert "sequence error for DATA of block 1/2 at offset 24540 (it expects offset 24544)" in err
    assert fake.types().count("DATA") == 5                 # not resent: resending cannot fix it
    assert_nothing_installed_wrong(fake, expected_wire(app_bin))


def test_ack_with_the_wrong_offset_stops(cli, app_bin):
    fake = FakeBootloader([Fault(MsgType.DATA, "wrong_seq", nth=0)])
    code, _, err = flash(cli, fake, app_bin)
    assert code == 1 and "up to offset 5312, expected 5316" in err


def test_block_larger_than_the_bootloader_buffer(cli, app_bin):
    fake = FakeBootloader(status=dict(version=3, max_image_size=0x40000, status_=2, state=7))
    code, _, err = flash(cli, fake, app_bin)
    assert code == 1 and "does not fit the bootloader's 262,144-byte buffer" in err
    assert fake.types() == ["HELLO"]


def test_port_that_does_not_exist(cli, app_bin, tmp_path):
    code, _, err = cli("flash", "--port", tmp_path / "ttyUSB9", "--bin", app_bin, *FAST)
    assert code == 2
    assert "does not exist" in err and "serial.tools.list_ports" in err and "Traceback" not in err


def test_port_busy(cli, app_bin):
    fake = FakeBootloader()
    with fake, serial.Serial(fake.port, exclusive=True):   # another program holds the port
        code, _, err = cli("flash", "--port", fake.port, "--bin", app_bin, *FAST)
    assert code == 2 and "is busy" in err
    assert fake.log == []


# -- monitor ------------------------------------------------------------------------------------

@pytest.mark.parametrize("line, expected", [
    ("image 3: scores: -113 113 -> person (61234 us)", Detection((-113, 113), "person", 3, 61234)),
    ("image 0: scores: 90 -90 -> no_person (no timer)\r", Detection((90, -90), "no_person", 0, None)),
    ("image 7: scores: 1 2 3 -> a label with spaces (5 us)", Detection((1, 2, 3), "a label with spaces", 7, 5)),
    ("Person score: 87 No person score: -87", Detection((-87, 87))),
    ("Person score: -20, No person score: 20 -> no person", Detection((20, -20))),
    ("image 1: scores: 4 5", None),        # cut short: not a detection line
    ("Apollo3 person detection starting", None),
    ("camera init failed", None),
    ("", None),
])
def test_parse_detection(line, expected):
    assert parse_detection(line) == expected


def test_the_parser_reads_the_lines_the_format_writes():
    for d in (Detection((-3, 3), "person", 12, 99), Detection((1, 2, 3), "x", 0, None)):
        assert parse_detection(format_detection(d)) == d


def test_detection_decision():
    assert Detection((-5, 5)).is_person and not Detection((5, -5)).is_person
    assert not Detection((-5, 5), "no_person").is_person    # the board's threshold wins


def test_monitor_prints_scores_from_the_port():
    printed = []
    with FakeBootloader() as fake, open_port(fake.port, 115200, timeout=0.1) as port:
        fake.send_text("booting\r\nimage 0: scores: -100 100 -> person (57000 us)\r\n"
                       "camera error\r\nimage 1: scores: 100 -100 -> no_person (57000 us)\r\n"
                       "image 2: scores: 1 2 -> person (1 us)\r\n")
        seen = monitor(port, count=2, duration=5, out=printed.append)
    assert seen == (2, 1)
    assert printed[0] == "booting" and printed[2] == "camera error"
    assert printed[1].startswith("PERSON") and "scores -100  100" in printed[1] and "57.0 ms" in printed[1]
    assert printed[3].startswith("no person")


def test_monitor_joins_a_line_split_across_read_timeouts():
    printed = []
    with FakeBootloader() as fake, open_port(fake.port, 115200, timeout=0.05) as port:
        fake.send_text("image 0: scores: -100 1")
        timer = threading.Timer(0.3, fake.send_text, ["00 -> person (57000 us)\r\n"])
        timer.start()
        seen = monitor(port, count=1, duration=5, out=printed.append)
        timer.join()
    assert seen == (1, 1) and "scores -100  100" in printed[0] and len(printed) == 1


def test_monitor_cli_needs_a_real_port(cli, tmp_path):
    code, _, err = cli("monitor", "--port", tmp_path / "nope", "--count", "1")
    assert code == 2 and "does not exist" in err
