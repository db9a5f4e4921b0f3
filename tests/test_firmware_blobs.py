"""Apollo3 OTA image and wired-update blob: byte-exact against Ambiq's scripts.

The digests below were produced by the SDK's create_cust_image_blob.py and
create_cust_wireupdate_blob.py (AmbiqSuite 2.4.2; 2.2.0 gives the same bytes) for the synthetic app
byte i = (i*7 + 3) & 0xFF, with load 0xC000, magic 0xCB, version 0, type 6, options 1, split 0x48000.
"""

from __future__ import annotations

import hashlib
import struct

import pytest

import vwwtorch.cli
from vwwtorch.firmware.boards.sparkfun_edge import apollo3_image as img

GOLDEN = [
    # n, OTA length, OTA sha256, wire length, wire sha256
    (0, 128, "a5beaa723e0b6b259225e05b5c599d3126bdd5ecfee8ca18978eff04962d42d2",
     224, "1268acc81367f20390ee9fc91700dab7a48ceb639fe96d178135f82b2f34c379"),
    (1, 132, "d8d7a93615133d5739b1d9eee6c7234bcd92498a9f32737c215cedbd445f8766",
     228, "2188525792ffef320e50a15fb22a7470cce2f950f9962f97d8751fc77fbf10d3"),
    (3, 132, "8b864ebac371958ee6354bd2ec552da1e4b79b45fbf75c90a606c091eb6f21a0",
     228, "37f961bf51718d44b863e1e0925e33e64f044dd9b670c4294bebb1aae734cd9a"),
    (4, 132, "52cdd16dbd9c340b6f475461db42dadad0cb7dda2384518283ad049281a3e464",
     228, "7376f99a18aa3a9f8ba49111a9aea6516a65ab011921ad83d32e3015883dccac"),
    (12345, 12476, "864eb127de38f54f4c7dc2fb7ec9e07d0f98650944b21006c468bc89336d5395",
     12572, "09b410656ec243c871a7b8a6212b35bcce09843379a952a67ac4fdcf4cdfd4f5"),
    (294784, 294912, "a36b7b9ba0d2c0194ef1666c9c09ccbca13c1fb0dc55e0979f9b6f61bc31b9dc",
     295008, "a2b88ad2ef6ec9c8b722ad5f4e3b803a675937810845016a731050fc85eb47e3"),
    (294785, 294916, "2707e3f15a60da1975ce2d2dc5c7fb288e8c71acf2c00ca71c661cdbcf0a199f",
     295108, "f5e088f3e2e5d2babe40c62c78f3a8c4a199f8080ba850196ef49e4e35be6e4b"),
    (300003, 300132, "0252df320e3db44f3c7ec104951bd6520c8c15a1cd133e4af37080858950c64a",
     300324, "01e2fbf434e662cceba695c8645cedd638a4634058119d11fb6b4da5e7c80e3d"),
]


def synthetic_app(n: int) -> bytes:
    return bytes((i * 7 + 3) & 0xFF for i in range(n))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("n, ota_len, ota_sha, wire_len, wire_sha", GOLDEN, ids=[str(g[0]) for g in GOLDEN])
def test_blobs_match_ambiq_scripts(n, ota_len, ota_sha, wire_len, wire_sha):
    ota = img.make_ota_image(synthetic_app(n))
    wire = img.make_wire_blob(ota)
    assert (len(ota), sha(ota)) == (ota_len, ota_sha)
    assert (len(wire), sha(wire)) == (wire_len, wire_sha)


def test_ota_header_fields():
    app = synthetic_app(300003)
    ota = img.make_ota_image(app)
    w0, w1, w2, w3 = struct.unpack_from("<4I", ota, 0)
    assert w0 == 0xCB049464 == (0xCB << 24) | len(ota)
    assert w1 == 0x23970519 == img.crc32(ota[8:])
    assert w2 == 0x10008080 and w3 == 0
    assert ota[16:112] == bytes(96)                 # HMACs, IV and wrapped key: security is off
    assert ota[112:128] == bytes.fromhex("00c00000" "00000000" "ffffffff" "ffffffff")
    assert ota[128:128 + len(app)] == app
    header = img.OtaHeader.parse(ota)
    assert (header.magic, header.size, header.load_address, header.version) == (0xCB, len(ota), 0xC000, 0)
    assert header.crc_ok
    damaged = bytearray(ota)
    damaged[5000] ^= 1
    assert not img.OtaHeader.parse(bytes(damaged)).crc_ok


@pytest.mark.parametrize("n, tail", [(1, b"\x03\x03\x03"), (2, b"\x02\x02"), (3, b"\x01"), (4, b""),
                                     (12345, b"\x03\x03\x03")])
def test_padding_bytes_hold_the_pad_count(n, tail):
    app = synthetic_app(n)
    ota = img.make_ota_image(app)
    assert len(ota) == 128 + n + len(tail)
    assert ota[128:] == app + tail
    assert img.pad_to_4(app) == app + tail


def test_version_and_load_address_fields():
    ota = img.make_ota_image(b"\0" * 8, load_address=0x10000, version=0x8005)
    assert struct.unpack_from("<II", ota, 112) == (0x10000, 0x0005)
    with pytest.raises(ValueError, match="aligned"):
        img.make_ota_image(b"\0" * 8, load_address=0xC002)
    with pytest.raises(ValueError, match="20-bit"):
        img.make_ota_image(bytes(0x100000))


def wire_headers(wire: bytes) -> list[img.WireHeader]:
    return [img.WireHeader.parse(b) for b in img.split_wire_blob(wire)]


def test_split_boundary_294784_is_one_block():
    ota = img.make_ota_image(synthetic_app(294784))
    assert len(ota) == 0x48000
    wire = img.make_wire_blob(ota)
    (header,) = wire_headers(wire)
    assert (header.word0, header.image_type, header.options) == (0x08000800, 6, 1)
    assert (header.key, header.address, header.size) == (0x12344321, 0x20000, 0x48000)
    assert wire[96:] == ota


def test_split_boundary_294785_is_two_blocks():
    ota = img.make_ota_image(synthetic_app(294785))
    wire = img.make_wire_blob(ota)
    blocks = img.split_wire_blob(wire)
    assert [len(b) for b in blocks] == [96 + 0x48000, 96 + 4]
    first, second = (img.WireHeader.parse(b) for b in blocks)
    assert (first.options, first.address, first.size) == (1, 0x20000, 0x48000)
    assert (second.options, second.address, second.size) == (0, 0x68000, 4)
    # Apart from options, address and size the headers are identical.
    assert blocks[0][:81] == blocks[1][:81] and blocks[0][82:88] == blocks[1][82:88]
    assert blocks[0][96:] + blocks[1][96:] == ota


def test_three_blocks_with_a_smaller_split():
    ota = img.make_ota_image(synthetic_app(50_000))
    wire = img.make_wire_blob(ota, split=0x4000)
    headers = [img.WireHeader.parse(b) for b in img.split_wire_blob(wire, 0x4000)]
    assert [h.address for h in headers] == [0x20000 + k * 0x4000 for k in range(4)]
    assert [h.options for h in headers] == [1, 0, 0, 0]
    assert sum(h.size for h in headers) == len(ota)


def test_split_must_be_whole_flash_pages():
    ota = img.make_ota_image(synthetic_app(100))
    for bad in (0, 0x1000, 0x48001):
        with pytest.raises(ValueError, match="8 KiB"):
            img.make_wire_blob(ota, split=bad)
    with pytest.raises(ValueError, match="empty"):
        img.make_wire_blob(b"")


def test_split_wire_blob_refuses_a_blob_made_with_another_split():
    wire = img.make_wire_blob(img.make_ota_image(synthetic_app(300003)))
    with pytest.raises(ValueError, match="does not fit"):
        img.split_wire_blob(wire, split=0x40000)
    with pytest.raises(ValueError, match="does not fit"):
        img.split_wire_blob(wire[:-1])


def test_info0_noota_blob_uses_info_key_and_word_address():
    wire = img.make_wire_blob(b"\xAA" * 8, image_type=32, load_address=0x40, options=0)
    header = img.WireHeader.parse(wire)
    assert (header.image_type, header.key, header.address) == (32, 0xD894E09E, 0x10)


def vector_app(sp=0x10010000, reset=0xC201, size=4096) -> bytes:
    return struct.pack("<II", sp, reset) + bytes(size - 8)


@pytest.mark.parametrize("data, expected", [
    (vector_app(), None),
    (b"\x7fELF" + bytes(100), "ELF"),
    (img.make_ota_image(vector_app()), "already an OTA image"),
    (img.make_wire_blob(img.make_ota_image(vector_app())), "already a wired-update blob"),
    (vector_app(sp=0x20001000), "stack pointer"),
    (vector_app(reset=0x201), "linked for another address"),
    (vector_app(reset=0xC200), "linked for another address"),       # not a Thumb address
    (b"\0" * 4, "too small"),
    (vector_app(size=909_184), None),                                # the largest installable app
    (vector_app(size=909_188), "more than the 909,184 the bootloader can install"),
])
def test_app_sanity_check(data, expected):
    problem = img.describe_app_problem(data)
    if expected is None:
        assert problem is None
    else:
        assert expected in problem


# -- `vwwtorch firmware flash --dry-run` --------------------------------------------------------

@pytest.fixture
def cli(monkeypatch, capsys):
    monkeypatch.setattr(vwwtorch.cli, "COMMAND_MODULES", ("vwwtorch.firmware.cli",))

    def run(*argv):
        code = vwwtorch.cli.main(["firmware", *map(str, argv)])
        out, err = capsys.readouterr()
        return code, out, err
    return run


def test_dry_run_writes_golden_blobs(cli, tmp_path):
    n, _, ota_sha, _, wire_sha = GOLDEN[-1]
    app = tmp_path / "app.bin"
    app.write_bytes(synthetic_app(n))
    out = tmp_path / "blobs"
    code, stdout, err = cli("flash", "--bin", app, "--dry-run", "--out", out, "--force")
    assert code == 0, err
    assert sha((out / "ota.bin").read_bytes()) == ota_sha
    assert sha((out / "wire.bin").read_bytes()) == wire_sha
    assert sorted(p.name for p in out.iterdir()) == ["ota.bin", "wire.bin"]   # no temp files left
    assert "2 block(s)" in stdout


def test_dry_run_refuses_a_file_that_is_not_an_app(cli, tmp_path):
    app = tmp_path / "app.bin"
    app.write_bytes(synthetic_app(1000))
    code, _, err = cli("flash", "--bin", app, "--dry-run", "--out", tmp_path / "o")
    assert code == 2
    assert "stack pointer" in err and "--force" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_build_dir_picks_the_one_app_bin(cli, tmp_path):
    build = tmp_path / "build"
    build.mkdir()
    (build / "person_detection.bin").write_bytes(vector_app())
    code, _, err = cli("flash", "--build", build, "--dry-run", "--out", build)
    assert code == 0, err
    # The blobs it wrote are not mistaken for the app on the next run.
    code, _, err = cli("flash", "--build", build, "--dry-run", "--out", build)
    assert code == 0, err
    assert img.make_ota_image(vector_app()) == (build / "ota.bin").read_bytes()


@pytest.mark.parametrize("files, message", [((), "no .bin file"), (("a.bin", "b.bin"), "several .bin files")])
def test_build_dir_without_a_single_bin(cli, tmp_path, files, message):
    for name in files:
        (tmp_path / name).write_bytes(vector_app())
    code, _, err = cli("flash", "--build", tmp_path, "--dry-run", "--out", tmp_path / "o")
    assert code == 2 and message in err


@pytest.mark.parametrize("argv, message", [
    (("--dry-run",), "--dry-run needs --out"),
    ((), "--port is required"),
    (("--dry-run", "--out", "OUT", "--split", "0x1000"), "--split"),
])
def test_flash_usage_errors(cli, tmp_path, argv, message):
    app = tmp_path / "app.bin"
    app.write_bytes(vector_app())
    code, _, err = cli("flash", "--bin", app, *(tmp_path / "o" if a == "OUT" else a for a in argv))
    assert code == 2 and message in err
    assert not (tmp_path / "o").exists()
    missing = tmp_path / "missing.bin"
    code, _, err = cli("flash", "--bin", missing, "--dry-run", "--out", tmp_path)
    assert code == 2 and "does not exist" in err
