"""`vwwtorch firmware flash`: the host side of the Apollo3 bootloader's UART wired update.

Sequence (as Ambiq's uart_wired_update.py and the Apollo3 Secure Update Flow document, AmbiqSuite
SDK 2.4.2, describe it): HELLO -> STATUS; OTADESC -> ACK; then for each wired
block, last block first: UPDATE(size, CRC-32) -> ACK and DATA messages of up to 8180 bytes, each
-> ACK carrying the next expected offset; finally RESET -> ACK, on which the bootloader installs the
staged OTA image at 0xC000.

Reply policy (a design choice; the bootloader's own source is not public):
* a NACK is answered by resending the same message, at most `max_attempts` sends in all (the SDK
  script meant 4 but reported a success on the 4th try as a failure; here the 4th try counts);
* NACKs that resending cannot fix (sequence error, bad address or parameter...) stop at once;
* a missing or short reply stops with a timeout error: resending after a lost ACK would only
  produce a sequence error, since the bootloader may already have taken the message;
* an ACK whose offset is not the one just sent up to stops the transfer (no silent resync);
* reply CRCs are checked: `strict` stops on a bad one; `warn` (default, since no public host ever
  checked them against a real board) accepts a damaged reply only if it says exactly what a
  success would say, so a damaged reply can never turn a failure into a reported success;
* a missing ACK to the final RESET is only a warning: every block was already acknowledged.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from vwwtorch.plumbing.errors import UserError
from vwwtorch.firmware.boards.sparkfun_edge import apollo3_image as image
from vwwtorch.firmware.boards.sparkfun_edge import apollo3_uart as uart
from vwwtorch.firmware.boards.sparkfun_edge.apollo3_uart import AckStatus, MsgType

DEFAULT_BAUD = 921600          # the Edge v1 factory bootloader speed
BOOTLOADER_STEPS = (
    "Put the SparkFun Edge into bootloader mode:\n"
    "  1. press and hold button 14;\n"
    "  2. press and release RST while still holding 14;\n"
    "  3. keep holding 14 until the progress bar moves (opening the port resets the board)."
)

# NACKs where sending the same bytes again cannot succeed.
_FATAL_NACKS = {AckStatus.INVALID_INFO0, AckStatus.SEC, AckStatus.MSG_TOO_BIG,
                AckStatus.UNKNOWN_MSGTYPE, AckStatus.INVALID_ADDR, AckStatus.INVALID_OPERATION,
                AckStatus.INVALID_PARAM, AckStatus.SEQ, AckStatus.TOO_MUCH_DATA}


class FlashError(UserError):
    """The transfer failed (board, cable or bootloader); exit code 1, one clear line."""

    exit_code = 1


class ReplyTimeout(FlashError):
    """The bootloader did not answer in time."""


@dataclass
class FlashOptions:
    timeout: float = 12.0          # per ACK: the bootloader may program ~128 pages before answering
    hello_timeout: float = 3.0     # the bootloader answers HELLO at once, if it is listening
    settle: float = 0.25           # after opening the port, let the board come out of reset
    max_attempts: int = 4          # sends per message when it is NACKed
    reply_crc: str = "warn"        # "warn" or "strict"
    reset_mode: int = uart.ResetMode.POI   # 0: do not send RESET
    ota_descriptor: int | None = uart.OTA_DESCRIPTOR_ADDRESS
    split: int = image.DEFAULT_SPLIT
    progress: bool | None = None   # None: a bar only on a terminal


@dataclass
class FlashReport:
    status: uart.Status
    blocks: int
    bytes_sent: int
    messages: int
    resends: int
    bad_reply_crcs: int
    reset_acknowledged: bool


class WiredUpdate:
    """Drive one wired update over an open pyserial port (or anything with read/write/timeout)."""

    def __init__(self, port, options: FlashOptions | None = None, log=print):
        self.port = port
        self.options = options or FlashOptions()
        if self.options.reply_crc not in ("warn", "strict"):
            raise ValueError(f"reply_crc must be 'warn' or 'strict', not {self.options.reply_crc!r}")
        if self.options.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.log = log
        self.messages = self.resends = self.bad_reply_crcs = 0

    # -- public ---------------------------------------------------------------------------

    def run(self, wire_blob: bytes) -> FlashReport:
        opts = self.options
        blocks = image.split_wire_blob(wire_blob, opts.split)
        time.sleep(opts.settle)
        self._serial_call(self.port.reset_input_buffer)      # drop reset noise before HELLO
        status = self.hello()
        self.log(f"bootloader answered: version {status.version}, "
                 f"blocks up to {status.max_image_size:,} bytes")
        largest = max(len(b) for b in blocks)
        if status.max_image_size and largest > status.max_image_size:
            raise FlashError(f"a {largest:,}-byte block does not fit the bootloader's "
                             f"{status.max_image_size:,}-byte buffer; flash with a smaller --split")
        if opts.ota_descriptor is not None:
            self._exchange(uart.ota_descriptor(opts.ota_descriptor), MsgType.OTADESC,
                           "OTA descriptor")
        self._send_blocks(blocks)
        reset_ok = self._reset() if opts.reset_mode else False
        if self.bad_reply_crcs:
            self.log(f"warning: {self.bad_reply_crcs} bootloader replies failed their CRC check "
                     f"but said exactly what was expected; accepted (--reply-crc strict refuses them)")
        return FlashReport(status=status, blocks=len(blocks), bytes_sent=len(wire_blob),
                           messages=self.messages, resends=self.resends,
                           bad_reply_crcs=self.bad_reply_crcs, reset_acknowledged=reset_ok)

    def hello(self) -> uart.Status:
        self._write(uart.hello())
        msg = self._read_reply(MsgType.STATUS, "HELLO", self.options.hello_timeout,
                               hint=": is the board in bootloader mode (hold 14, tap RST, keep "
                                    "holding 14), on this port, at this baud rate?")
        if not msg.intact:
            self._damaged_reply(msg, "HELLO", acceptable=True)
        return uart.Status.from_message(msg)

    # -- transfer -------------------------------------------------------------------------

    def _send_blocks(self, blocks: list[bytes]) -> None:
        from vwwtorch.plumbing.progress import progress_bar

        total = sum(len(b) for b in blocks)
        with progress_bar(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="flashing",
                  disable=None if self.options.progress is None else not self.options.progress,
                  file=sys.stderr) as bar:
            # Last block first, as Ambiq's script does: the first block carries the OTA flag, so
            # the install is requested only after everything else is staged.
            for index in reversed(range(len(blocks))):
                block = blocks[index]
                name = f"block {index + 1}/{len(blocks)}"
                self._exchange(uart.update(len(block), image.crc32(block)), MsgType.UPDATE,
                               f"UPDATE of {name}")
                for seq in range(0, len(block), uart.MAX_DATA_CHUNK):
                    chunk = block[seq:seq + uart.MAX_DATA_CHUNK]
                    self._exchange(uart.data(seq, chunk), MsgType.DATA,
                                   f"DATA of {name} at offset {seq}", next_seq=seq + len(chunk))
                    bar.update(len(chunk))

    def _reset(self) -> bool:
        try:
            self._exchange(uart.reset(self.options.reset_mode), MsgType.RESET, "RESET")
            return True
        except ReplyTimeout:
            # Every block is acknowledged by now; boards have been seen to reboot without an ACK.
            self.log("warning: no ACK to RESET; the image was delivered and acknowledged. "
                     "Press RST (without 14) to start it.")
            return False

    def _exchange(self, frame: bytes, sent: MsgType, what: str, next_seq: int | None = None) -> uart.Ack:
        """Send `frame` and wait for its ACK, resending on NACK up to max_attempts times."""
        attempts = self.options.max_attempts
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                self.resends += 1
            self._write(frame)
            msg = self._read_reply(MsgType.ACK, what, self.options.timeout,
                                   hint="; the board may have left bootloader mode, start again "
                                        "from the button sequence")
            ack = uart.Ack.from_message(msg)
            if not msg.intact:
                expected = (ack.src == sent and ack.status == AckStatus.SUCCESS
                            and (next_seq is None or ack.seq == next_seq))
                self._damaged_reply(msg, what, acceptable=expected)
            if ack.src != sent:
                raise FlashError(f"bootloader acknowledged a {uart.type_name(ack.src)} message "
                                 f"in reply to {what}; the transfer is out of step")
            if ack.status == AckStatus.SUCCESS:
                if next_seq is not None and ack.seq != next_seq:
                    raise FlashError(f"bootloader acknowledged {what} up to offset {ack.seq}, "
                                     f"expected {next_seq}; stopping rather than guessing")
                return ack
            reason = uart.status_name(ack.status)
            if ack.status == AckStatus.SEQ:
                raise FlashError(f"bootloader reported a sequence error for {what} (it expects "
                                 f"offset {ack.seq}); put the board back in bootloader mode and flash again")
            if ack.status in _FATAL_NACKS:
                raise FlashError(f"bootloader rejected {what}: {reason}")
            if attempt < attempts:
                self.log(f"warning: bootloader rejected {what} ({reason}); "
                         f"sending it again (attempt {attempt + 1} of {attempts})")
        raise FlashError(f"bootloader rejected {what} {attempts} times (last: {reason}); giving up")

    # -- I/O ------------------------------------------------------------------------------

    def _write(self, frame: bytes) -> None:
        self.messages += 1
        self._serial_call(self.port.write, frame)

    def _read_reply(self, expected: MsgType, what: str, timeout: float, hint: str = "") -> uart.Message:
        length = uart.STATUS_LENGTH if expected == MsgType.STATUS else uart.ACK_LENGTH
        self.port.timeout = timeout
        head = self._serial_call(self.port.read, uart.HEADER_SIZE)
        if len(head) < uart.HEADER_SIZE:
            raise ReplyTimeout(f"no reply to {what} within {timeout:g} s{hint}")
        _, _, msg_type = uart.split_header(head)
        if msg_type != expected:
            raise FlashError(f"unexpected reply to {what}: message type {uart.type_name(msg_type)} "
                             f"instead of {expected.name} (wrong baud rate, or not the Apollo3 bootloader?)")
        rest = self._serial_call(self.port.read, length - uart.HEADER_SIZE)
        if len(rest) < length - uart.HEADER_SIZE:
            raise ReplyTimeout(f"incomplete {expected.name} reply to {what}: "
                               f"{uart.HEADER_SIZE + len(rest)} of {length} bytes within {timeout:g} s")
        return uart.decode(head + rest)

    def _damaged_reply(self, msg: uart.Message, what: str, acceptable: bool) -> None:
        problem = "CRC" if not msg.crc_ok else f"length field ({msg.length}, expected {len(msg.payload) + 8})"
        if self.options.reply_crc == "strict":
            raise FlashError(f"the {uart.type_name(msg.msg_type)} reply to {what} failed its {problem} "
                             f"check (noisy link? --reply-crc warn accepts replies that say exactly "
                             f"what was expected)")
        if not acceptable:
            raise FlashError(f"the {uart.type_name(msg.msg_type)} reply to {what} failed its {problem} "
                             f"check and does not report a success; cannot trust the transfer")
        if not self.bad_reply_crcs:
            self.log(f"warning: the {uart.type_name(msg.msg_type)} reply to {what} failed its {problem} "
                     f"check; accepted because it says what was expected")
        self.bad_reply_crcs += 1

    def _serial_call(self, fn, *args):
        import serial

        try:
            return fn(*args)
        except serial.SerialTimeoutException:
            raise ReplyTimeout(f"writing to the serial port timed out after "
                               f"{self.options.timeout:g} s") from None
        except (serial.SerialException, OSError) as exc:
            raise FlashError(f"serial port failed during the transfer: {exc}") from None
