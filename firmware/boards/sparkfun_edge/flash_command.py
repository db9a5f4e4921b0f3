"""`vwwtorch firmware flash`: the command: its arguments, the blobs made from the app, then the
wired update (flasher.py) over the serial port (serial_port.py)."""

from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path

from vwwtorch.plumbing.errors import UserError
from vwwtorch.plumbing.outputs import check_file, check_folder, reading_inputs, write_file, written_as_user_error
from vwwtorch.firmware.boards.sparkfun_edge import apollo3_image as image
from vwwtorch.firmware.boards.sparkfun_edge.apollo3_uart import ResetMode
from vwwtorch.firmware.boards.sparkfun_edge.flasher import BOOTLOADER_STEPS, DEFAULT_BAUD, FlashOptions, WiredUpdate
from vwwtorch.firmware.boards.sparkfun_edge.serial_port import describe_open_error, open_port


# --reset's choices: the bootloader's reset modes by name ("none", 0, sends no RESET).
RESETS = {mode.name.lower(): mode for mode in ResetMode}


def find_app_bin(build_dir: Path) -> Path:
    """The application .bin of a `vwwtorch firmware build` output folder."""
    if not build_dir.is_dir():
        raise UserError(f"build folder {build_dir} does not exist; run `vwwtorch firmware build "
                        f"--board {_flashed_board_names()}` first")
    candidates = sorted(p for p in build_dir.glob("*.bin") if p.name not in ("ota.bin", "wire.bin"))
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise UserError(f"no .bin file in {build_dir}; run `vwwtorch firmware build --board "
                        f"{_flashed_board_names()}` first, or pass the file with --bin")
    names = ", ".join(p.name for p in candidates)
    raise UserError(f"several .bin files in {build_dir} ({names}); pick one with --bin")


def _flashed_board_names() -> str:
    from vwwtorch.firmware.boards import board_choices, flashed_boards

    return board_choices(flashed_boards())


def build_blobs(app: bytes, split: int = image.DEFAULT_SPLIT) -> tuple[bytes, bytes]:
    """(OTA image, wired blob) for a raw app, as the Ambiq scripts make them for the Edge."""
    ota = image.make_ota_image(app)
    return ota, image.make_wire_blob(ota, split=split)


def _int(text: str) -> int:
    return int(text, 0)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "flash", help="flash a firmware .bin to a SparkFun Edge over the Apollo3 UART bootloader",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Wrap the application .bin as Ambiq's scripts do (an OTA image with magic 0xCB\n"
                    "for 0xC000, inside a wired-update blob staged at 0x20000) and send it to the\n"
                    "Apollo3 secure bootloader over UART: HELLO, OTA descriptor, UPDATE and DATA\n"
                    "blocks with CRC-32 and an ACK per message, then RESET, which installs it.\n\n"
                    + BOOTLOADER_STEPS)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--bin", type=Path, metavar="FILE",
                        help="raw application binary (objcopy -O binary), linked at 0xC000")
    source.add_argument("--build", type=Path, metavar="DIR",
                        help=f"output folder of `vwwtorch firmware build --board {_flashed_board_names()}`")
    p.add_argument("--port", help="serial port of the board (e.g. /dev/ttyUSB0, COM3)")
    p.add_argument("--baud", type=int, default=DEFAULT_BAUD, metavar="RATE",
                   help="bootloader baud rate (default %(default)s, the Edge v1; Artemis boards: 115200)")
    p.add_argument("--dry-run", action="store_true",
                   help="only write OUT/ota.bin and OUT/wire.bin; no port needed")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="folder for ota.bin and wire.bin (required with --dry-run)")
    p.add_argument("--timeout", type=float, metavar="SEC", default=FlashOptions.timeout,
                   help="seconds to wait for each ACK (default %(default)s; the bootloader may "
                        "write flash before it answers)")
    p.add_argument("--hello-timeout", type=float, metavar="SEC", default=FlashOptions.hello_timeout,
                   help="seconds to wait for the bootloader's answer to HELLO (default %(default)s)")
    p.add_argument("--attempts", type=int, metavar="N", default=FlashOptions.max_attempts,
                   help="sends per message when the bootloader NACKs it (default %(default)s)")
    p.add_argument("--reply-crc", choices=("warn", "strict"), default=FlashOptions.reply_crc,
                   help="a reply with a bad CRC: 'warn' accepts it if it reports exactly the "
                        "expected success, 'strict' stops (default %(default)s)")
    p.add_argument("--reset", choices=(*RESETS, "none"), default="poi",
                   help="reset sent after the transfer, which starts the install (default %(default)s)")
    p.add_argument("--split", type=_int, metavar="BYTES", default=image.DEFAULT_SPLIT,
                   help="bytes per wired block, a multiple of 0x2000 (default 0x48000)")
    p.add_argument("--force", action="store_true",
                   help="flash even if the file does not look like an app linked at 0xC000")
    p.add_argument("--no-prompt", action="store_true",
                   help="do not wait for Enter before opening the port")
    p.set_defaults(func=run_flash, own_inputs=("build",))


def run_flash(args) -> int:
    _check_arguments(args)
    path = args.bin if args.bin is not None else find_app_bin(args.build)
    if not path.is_file():
        raise UserError(f"firmware file {path} does not exist")
    app = path.read_bytes()
    problem = image.describe_app_problem(app)
    if problem and not args.force:
        raise UserError(f"{path}: {problem} (use --force to flash it anyway)")
    try:
        ota, wire = build_blobs(app, args.split)
    except ValueError as exc:
        raise UserError(f"{path}: {exc}") from None
    targets = []
    if args.out:
        # The blobs are added to --out, which is never emptied, so it may be the build folder; only
        # the app itself is an input they must not replace.
        with reading_inputs([(path, f"--build {args.build}" if args.bin is None else f"--bin {path}")]):
            targets = [check_file(Path(args.out) / name) for name in ("ota.bin", "wire.bin")]
    blocks = len(image.split_wire_blob(wire, args.split))
    print(f"{path}: {len(app):,} bytes -> OTA image {len(ota):,} bytes for 0x{image.APP_LOAD_ADDRESS:X}, "
          f"wired blob {len(wire):,} bytes in {blocks} block(s) at 0x{image.WIRE_LOAD_ADDRESS:X}")
    if args.out:
        with written_as_user_error(args.out):
            args.out.mkdir(parents=True, exist_ok=True)
        for target, blob in zip(targets, (ota, wire)):
            write_file(target, blob, checked=True)
        print(f"wrote {targets[0]} and {targets[1]}")
    if args.dry_run:
        return 0
    _send(args, wire)
    return 0


def _check_arguments(args) -> None:
    """Every argument problem, before a file is read or a port opened."""
    if not args.dry_run and not args.port:
        raise UserError("--port is required (or use --dry-run --out DIR to only write the blobs)")
    if args.dry_run and not args.out:
        raise UserError("--dry-run needs --out DIR for ota.bin and wire.bin")
    if args.out:
        args.out = check_folder(args.out, overwrite=True)   # never emptied: the blobs are added to it
    if args.attempts < 1:
        raise UserError("--attempts must be at least 1")
    if min(args.timeout, args.hello_timeout) <= 0:
        raise UserError("--timeout and --hello-timeout must be positive")
    try:
        image.check_split(args.split)
    except ValueError as exc:
        raise UserError(f"--split: {exc}") from None


def _send(args, wire: bytes) -> None:
    """The wired update over the port, with the button steps first and what happens next after."""
    options = FlashOptions(timeout=args.timeout, hello_timeout=args.hello_timeout,
                           max_attempts=args.attempts, reply_crc=args.reply_crc,
                           reset_mode=RESETS.get(args.reset, 0), split=args.split)
    from tqdm import tqdm

    if os.name == "posix" and not os.path.exists(args.port):     # say so before the button dance
        raise UserError(describe_open_error(args.port, FileNotFoundError(errno.ENOENT, args.port)))
    print(BOOTLOADER_STEPS)
    if not args.no_prompt and _interactive():
        input("Press Enter while still holding 14... ")
    with open_port(args.port, args.baud, args.timeout) as port:
        print(f"sending HELLO on {args.port} at {args.baud} baud")
        # Warnings on stderr, progress on stdout; tqdm.write keeps either from tearing the bar.
        report = WiredUpdate(port, options, log=lambda text: tqdm.write(
            text, file=sys.stderr if text.startswith("warning:") else sys.stdout)).run(wire)
    resent = f", {report.resends} resent after NACK" if report.resends else ""
    print(f"done: {report.bytes_sent:,} bytes in {report.blocks} block(s) acknowledged by the "
          f"bootloader ({report.messages} messages{resent}).")
    if report.reset_acknowledged:
        print("The bootloader is installing the image at 0xC000. Release 14; if the LEDs stay dark, "
              f"press RST. Watch the scores with `vwwtorch firmware monitor --port {args.port}`.")
    elif args.reset == "none":
        print("No RESET sent (--reset none): the image is staged and is installed at the next reset.")


def _interactive() -> bool:
    try:
        return sys.stdin.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False
