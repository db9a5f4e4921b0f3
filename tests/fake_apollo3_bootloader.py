"""A simulated Apollo3 secure bootloader on a pseudo-terminal, for flasher tests.

The host opens `fake.port` (the pty's slave side) like a real serial port; a thread reads the
master side. It has to be a thread: the host's 8 KiB DATA writes block until somebody drains the
pty, so a responder in the same thread as the host would deadlock.

The fake checks every frame (length, CRC-32, type, message order, DATA offsets), gathers each
block announced by UPDATE, checks the block CRC when the last byte arrives, and keeps the accepted
blocks. `faults` make it misbehave on chosen messages. Everything it saw is in `log`, everything
it disliked in `errors` (a clean run leaves `errors` empty).
"""

from __future__ import annotations

import os
import pty
import select
import struct
import threading
import time
import tty
from dataclasses import dataclass, field

from vwwtorch.firmware.boards.sparkfun_edge import apollo3_uart as uart
from vwwtorch.firmware.boards.sparkfun_edge.apollo3_image import WIRE_HEADER_SIZE, WireHeader, crc32
from vwwtorch.firmware.boards.sparkfun_edge.apollo3_uart import AckStatus, MsgType

# What real SparkFun Edge boards report to HELLO (console logs of uart_wired_update.py runs).
EDGE_STATUS = dict(version=3, max_image_size=0x4FFA0, status_=2, state=7,
                   am_info=(0x1, 0xFF2DA3FF, 0x55FFF, 0x1, 0x49F40003))


@dataclass
class Fault:
    """Misbehave on host messages of type `on`, from its `nth` occurrence (0-based, resends count)
    for `times` messages (None: forever).

    action: "reply"      process the message and answer normally (use with bad_crc);
            "drop"       process the message but send no reply (lost reply / timeout);
            "nack"       reject it with `status` and do not take its data;
            "wrong_type" process it, answer with a `reply_type` message (STATUS instead of ACK...);
            "seq_error"  pretend bytes were lost: NACK with SEQ and a different expected offset;
            "wrong_seq"  take the data but acknowledge an offset 4 bytes short;
            "delay"      process it, answer after `delay` seconds.
    bad_crc: whatever is sent back carries a wrong CRC word.
    """
    on: MsgType
    action: str = "reply"
    nth: int = 0
    times: int | None = 1
    status: int = AckStatus.CRC
    reply_type: MsgType = MsgType.ACK
    delay: float = 0.0
    bad_crc: bool = False

    def applies(self, occurrence: int) -> bool:
        return occurrence >= self.nth and (self.times is None or occurrence < self.nth + self.times)


@dataclass
class Received:
    """One host message as the fake saw it."""
    msg_type: int
    length: int
    words: tuple[int, ...]        # payload words (DATA: only the sequence word)
    data: bytes = b""             # DATA payload after the sequence word
    raw: bytes = b""


@dataclass
class _Block:
    total: int
    crc: int
    buffer: bytearray = field(default_factory=bytearray)


class FakeBootloader:
    def __init__(self, faults: list[Fault] | None = None, status: dict | None = None):
        self.faults = list(faults or [])
        self.status_fields = dict(EDGE_STATUS if status is None else status)
        self.log: list[Received] = []
        self.errors: list[str] = []
        self.blocks: list[bytes] = []          # committed blocks, in arrival order
        self.reset_mode: int | None = None
        self._counts: dict[int, int] = {}
        self._block: _Block | None = None
        self._said_hello = False
        self._master, self._slave = pty.openpty()
        # Raw at once: nothing may be echoed or translated before the host configures the port.
        tty.setraw(self._master)
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fake-apollo3-sbl", daemon=True)

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> "FakeBootloader":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            if self._thread.is_alive():
                self._thread.join(timeout=5)
            os.close(self._master)
            os.close(self._slave)       # kept open until now so a host close does not EIO us

    # -- views for tests ----------------------------------------------------------------------

    def wire_image(self) -> bytes:
        """The committed blocks put back in file order (by flash address): the wired blob."""
        return b"".join(sorted(self.blocks, key=lambda b: WireHeader.parse(b).address))

    def types(self) -> list[str]:
        return [uart.type_name(m.msg_type) for m in self.log]

    def send_text(self, text: str) -> None:
        """Write text to the host, as the application's log would."""
        os.write(self._master, text.encode())

    # -- serving ------------------------------------------------------------------------------

    def _serve(self) -> None:
        buf = bytearray()
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.02)
            if not ready:
                continue
            try:
                buf += os.read(self._master, 65536)
            except OSError:
                continue
            while len(buf) >= uart.HEADER_SIZE:
                _, length, msg_type = uart.split_header(buf)
                if length < uart.HEADER_SIZE or length > uart.MAX_MESSAGE_SIZE:
                    self.errors.append(f"bad length field {length}; dropping {len(buf)} bytes")
                    buf.clear()
                    self._reply(uart.ack(msg_type, AckStatus.MSG_TOO_BIG), None)
                    break
                if len(buf) < length:
                    break
                raw, buf = bytes(buf[:length]), buf[length:]
                self._handle(raw)

    def _handle(self, raw: bytes) -> None:
        msg = uart.decode(raw)
        words = tuple(struct.unpack_from(f"<{len(msg.payload) // 4}I", msg.payload))
        if msg.msg_type == MsgType.DATA:
            record = Received(msg.msg_type, msg.length, words[:1], msg.payload[4:], raw)
        else:
            record = Received(msg.msg_type, msg.length, words, b"", raw)
        self.log.append(record)
        occurrence = self._counts.get(msg.msg_type, 0)
        self._counts[msg.msg_type] = occurrence + 1
        fault = next((f for f in self.faults if f.on == msg.msg_type and f.applies(occurrence)), None)

        if not msg.crc_ok:
            self.errors.append(f"{uart.type_name(msg.msg_type)}: bad message CRC")
            return self._reply(uart.ack(msg.msg_type, AckStatus.CRC), fault)
        if fault is not None and fault.action == "nack":
            return self._reply(uart.ack(msg.msg_type, fault.status, self._received()), fault)
        if fault is not None and fault.action == "seq_error":
            return self._reply(uart.ack(msg.msg_type, AckStatus.SEQ, self._received() + 4), fault)
        handler = {
            MsgType.HELLO: self._hello, MsgType.OTADESC: self._otadesc,
            MsgType.UPDATE: self._update, MsgType.DATA: self._data, MsgType.RESET: self._reset,
        }.get(msg.msg_type)
        if handler is None:
            self.errors.append(f"unexpected message type {msg.msg_type}")
            return self._reply(uart.ack(msg.msg_type, AckStatus.UNKNOWN_MSGTYPE), fault)
        if msg.msg_type != MsgType.HELLO and not self._said_hello:
            self.errors.append(f"{uart.type_name(msg.msg_type)} before HELLO")
        self._reply(handler(msg), fault)

    def _reply(self, frame: bytes, fault: Fault | None) -> None:
        if fault is not None:
            if fault.action == "drop":
                return
            if fault.action == "wrong_type":
                frame = (uart.status(**self.status_fields) if fault.reply_type == MsgType.STATUS
                         else uart.ack(0, AckStatus.SUCCESS) if fault.reply_type == MsgType.ACK
                         else uart.encode(fault.reply_type, b"\0" * 12))
            elif fault.action == "wrong_seq":
                src, status, seq = struct.unpack_from("<III", frame, 8)
                frame = uart.ack(src, status, seq - 4)
            elif fault.action == "delay":
                time.sleep(fault.delay)
            if fault.bad_crc:
                frame = struct.pack("<I", struct.unpack_from("<I", frame)[0] ^ 0xDEADBEEF) + frame[4:]
        try:
            os.write(self._master, frame)
        except OSError as exc:
            self.errors.append(f"reply not written: {exc}")

    def _received(self) -> int:
        return 0 if self._block is None else len(self._block.buffer)

    # -- message handlers: each returns its reply frame ---------------------------------------

    def _hello(self, msg: uart.Message) -> bytes:
        self._said_hello = True
        if msg.length != 8:
            self.errors.append(f"HELLO of length {msg.length}")
        return uart.status(**self.status_fields)

    def _otadesc(self, msg: uart.Message) -> bytes:
        if msg.length != 12 or msg.word(0) % 0x2000:
            self.errors.append(f"bad OTADESC length {msg.length} / address")
            return uart.ack(MsgType.OTADESC, AckStatus.INVALID_PARAM)
        return uart.ack(MsgType.OTADESC)

    def _update(self, msg: uart.Message) -> bytes:
        if msg.length != 20:
            self.errors.append(f"UPDATE of length {msg.length}")
            return uart.ack(MsgType.UPDATE, AckStatus.INVALID_PARAM)
        total, crc, valid = msg.word(0), msg.word(1), msg.word(2)
        if valid != 0 or not WIRE_HEADER_SIZE < total <= self.status_fields["max_image_size"]:
            self.errors.append(f"UPDATE total {total} valid {valid}")
            return uart.ack(MsgType.UPDATE, AckStatus.INVALID_PARAM)
        if self._block is not None and len(self._block.buffer) < self._block.total:
            self.errors.append("UPDATE before the previous block was complete")
        self._block = _Block(total, crc)
        return uart.ack(MsgType.UPDATE)

    def _data(self, msg: uart.Message) -> bytes:
        block = self._block
        if block is None:
            self.errors.append("DATA without UPDATE")
            return uart.ack(MsgType.DATA, AckStatus.INVALID_OPERATION)
        seq, chunk = msg.word(0), msg.payload[4:]
        if seq != len(block.buffer):
            self.errors.append(f"DATA seq {seq}, expected {len(block.buffer)}")
            return uart.ack(MsgType.DATA, AckStatus.SEQ, len(block.buffer))
        if not chunk or len(block.buffer) + len(chunk) > block.total:
            self.errors.append(f"DATA of {len(chunk)} bytes overruns the block")
            return uart.ack(MsgType.DATA, AckStatus.TOO_MUCH_DATA, len(block.buffer))
        block.buffer += chunk
        if len(block.buffer) == block.total:
            if crc32(bytes(block.buffer)) != block.crc:
                self.errors.append("block CRC mismatch")
                self._block = None
                return uart.ack(MsgType.DATA, AckStatus.CRC, 0)
            self.blocks.append(bytes(block.buffer))
        return uart.ack(MsgType.DATA, AckStatus.SUCCESS, len(block.buffer))

    def _reset(self, msg: uart.Message) -> bytes:
        if msg.length != 12 or msg.word(0) not in (1, 2):
            self.errors.append(f"bad RESET {msg.word(0) if msg.length >= 12 else ''}")
            return uart.ack(MsgType.RESET, AckStatus.INVALID_PARAM)
        if self._block is not None and len(self._block.buffer) < self._block.total:
            self.errors.append("RESET with a block still incomplete")
        self.reset_mode = msg.word(0)
        return uart.ack(MsgType.RESET)
