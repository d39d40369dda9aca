"""A generated corpus of awkward files: each is decoded correctly or dropped with its reason."""
import io
import os
import struct
import zlib

import numpy as np
import pandas as pd
from PIL import Image

from conftest import make_image
from fashionclf.data.clean import clean
from fashionclf.data.imaging import decode, letterbox, to_rgb
from fashionclf.core.store import load_imageset


def png_header_only(path, width, height):
    """A PNG whose header declares width x height pixels, with a tiny (invalid) body."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))


def build_corpus(raw):
    bags = raw / "bags"
    bags.mkdir(parents=True)
    good = make_image(bags / "good.jpg", 0, 1, size=(60, 40))
    data = good.read_bytes()
    (bags / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (bags / "zero.jpg").write_bytes(b"")
    (bags / "text.jpg").write_text("this is not a JPEG\n")
    # palette PNG with a transparent background: the background must become white
    pal = Image.new("P", (32, 32), 0)
    pal.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    pal.paste(1, (8, 8, 24, 24))
    pal.info["transparency"] = 0
    pal.save(bags / "palette_transparent.png", transparency=0)
    # 16-bit grayscale PNG
    Image.fromarray((np.linspace(0, 65535, 32 * 32).reshape(32, 32)).astype(np.uint16)).save(bags / "deep16.png")
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(bags / "cmyk.jpg")  # pure red in CMYK
    # EXIF orientation 6 (rotate 90 degrees clockwise to view): stored 40 wide x 20 high
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = 255  # left half white when stored
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(bags / "exif_rotated.jpg", exif=exif.tobytes(), quality=95)
    frames = [Image.new("RGB", (32, 32), c) for c in ((0, 0, 255), (0, 255, 0))]
    frames[0].save(bags / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    Image.new("RGB", (1, 1), (9, 9, 9)).save(bags / "one_pixel.png")
    png_header_only(bags / "bomb.png", 100_000, 100_000)
    make_image(bags / "sac à main été 👜.png", 2, 7)
    os.symlink("loop_b", bags / "loop_a")
    os.symlink("loop_a", bags / "loop_b")
    Image.open(good).save(bags / "zz_copy_of_good.png")
    # an iPhone's HEIC, stored mirrored from exif_rotated.jpg (its orientation applied on open), and one
    # whose pixel data is cut short; AVIF, Pillow's own
    Image.fromarray(stored[:, ::-1]).save(bags / "phone.heic", exif=exif.tobytes(), quality=95)
    heic = (bags / "phone.heic").read_bytes()
    (bags / "truncated.heic").write_bytes(heic[:-40])
    Image.new("RGB", (32, 32), (0, 200, 0)).save(bags / "green.avif")
    (raw / "shoes").mkdir()  # an empty category folder
    return raw


EXPECTED = {
    "bags/good.jpg": "kept", "bags/truncated.jpg": "unreadable_or_truncated", "bags/zero.jpg": "zero_bytes",
    "bags/text.jpg": "not_an_image", "bags/palette_transparent.png": "kept", "bags/deep16.png": "kept",
    "bags/cmyk.jpg": "kept", "bags/exif_rotated.jpg": "kept", "bags/animated.gif": "kept",
    "bags/one_pixel.png": "too_small", "bags/bomb.png": "decompression_bomb", "bags/sac à main été 👜.png": "kept",
    "bags/loop_a": "not_a_regular_file", "bags/loop_b": "not_a_regular_file", "bags/zz_copy_of_good.png": "duplicate",
    "bags/phone.heic": "kept", "bags/truncated.heic": "unreadable_or_truncated", "bags/green.avif": "kept",
}


def test_every_bad_file_is_kept_or_dropped_with_its_reason(tmp_path):
    raw = build_corpus(tmp_path / "raw")
    report = clean(raw, 32, 4, 89_478_485, tmp_path / "clean", tmp_path / "dropped.csv")
    assert report["raw"] == len(EXPECTED)
    assert report["raw"] == report["kept"] + sum(report["dropped"].values())
    dropped = pd.read_csv(tmp_path / "dropped.csv").set_index("path")["reason"].to_dict()
    _, kept = load_imageset(tmp_path / "clean")
    outcome = {p: "kept" for p in kept["path"]} | dropped
    assert outcome == EXPECTED


def test_through_fetch_archive_every_outcome_is_the_same(tmp_path):
    from fashionclf.data.fetch import fetch
    report = fetch(str(build_corpus(tmp_path / "raw")), 0, tmp_path / "raw.zip")
    assert report["skipped"] == {"symlink loop or broken link": 2}  # fetch counts the links, clean the rest
    clean(tmp_path / "raw.zip", 32, 4, 89_478_485, tmp_path / "clean", tmp_path / "dropped.csv")
    dropped = pd.read_csv(tmp_path / "dropped.csv").set_index("path")["reason"].to_dict()
    _, kept = load_imageset(tmp_path / "clean")
    assert {p: "kept" for p in kept["path"]} | dropped == {
        p: r for p, r in EXPECTED.items() if r != "not_a_regular_file"}


def test_awkward_formats_decode_correctly(tmp_path):
    raw = build_corpus(tmp_path / "raw")
    bags = raw / "bags"
    pal = decode(bags / "palette_transparent.png", 32)
    assert tuple(pal[0, 0]) == (255, 255, 255) and tuple(pal[16, 16]) == (200, 30, 30)
    deep = decode(bags / "deep16.png", 32)
    assert deep.dtype == np.uint8 and deep[0, 0, 0] < 10 and deep[-1, -1, 0] > 245
    red = decode(bags / "cmyk.jpg", 32)[16, 16]
    assert red[0] > 200 and red[1] < 60 and red[2] < 60
    gif = decode(bags / "animated.gif", 32)[16, 16]
    assert gif[2] > 200 and gif[1] < 60  # first frame (blue), not the second (green)
    for rotated, white in (("exif_rotated.jpg", 5), ("phone.heic", 35)):
        upright = decode(bags / rotated, 40)
        # after rotating 90 degrees clockwise the stored left half is on top: 20 wide x 40 high, padded
        assert upright.shape == (40, 40, 3)
        assert upright[white, 20].mean() > 200 and upright[40 - white, 20].mean() < 50, rotated
    green = decode(bags / "green.avif", 32)[16, 16]
    assert green[1] > 170 and green[0] < 40 and green[2] < 40


def test_a_heic_decodes_from_its_thumbnail_where_that_is_large_enough(tmp_path):
    """As a JPEG decodes at a reduced scale (PIL's draft), a HEIC decodes from its embedded thumbnail
    where that is a scaled copy of the photo at least the canvas's size: an iPhone's 12 MP photo
    carries one of 320x240 (docs/bad-input.md: 7 ms against 870 for a 224 px canvas). A larger canvas
    decodes the photo itself."""
    import pillow_heif
    make_image(tmp_path / "photo.png", 2, 5, size=(400, 300))
    Image.open(tmp_path / "photo.png").save(tmp_path / "phone.heic", thumbnails=[160])
    heif = pillow_heif.open_heif(tmp_path / "phone.heic")[0]
    thumbnail, whole = heif.get_thumbnail(0).to_pillow(), heif.to_pillow()
    assert thumbnail.size == (160, 120)
    assert np.array_equal(decode(tmp_path / "phone.heic", 96), letterbox(to_rgb(thumbnail), 96))
    assert np.array_equal(decode(tmp_path / "phone.heic", 200), letterbox(to_rgb(whole), 200))


def test_clean_on_several_threads_writes_the_same_bytes_and_holds_its_own_pixel_limit(tmp_path):
    """Decoding runs on every core; each image is still judged alone, in order. The pixel limit is
    each call's, not a process-wide setting that one thread could swap under another's open: below
    PIL's own limit, every image over it is a bomb; above it, an image between the two is decoded
    (here: a header with no pixels, so unreadable), never called a bomb; on any thread count."""
    raw = build_corpus(tmp_path / "raw")
    for i in range(16):  # enough files that the threads are decoding at once
        make_image(raw / "bags" / f"big_{i:02d}.png", i % 3, i, size=(64 + i, 48))
        make_image(raw / "bags" / f"small_{i:02d}.png", i % 3, 100 + i, size=(40, 40))
        jpeg_header_only(raw / "bags" / f"huge_{i:02d}.jpg", 10_000, 9_000 + i)  # over PIL's 89.5M
    outs = {}
    for limit, huge in ((40 * 40, "decompression_bomb"), (10 ** 9, "unreadable_or_truncated")):
        for threads in (1, 2, 4):
            out = tmp_path / f"{limit}-{threads}"
            report = clean(raw, 32, 4, limit, out / "clean", out / "dropped.csv", threads=threads)
            dropped = pd.read_csv(out / "dropped.csv").set_index("path")["reason"].to_dict()
            assert {dropped[f"bags/huge_{i:02d}.jpg"] for i in range(16)} == {huge}
            big = {dropped.get(f"bags/big_{i:02d}.png", "kept") for i in range(16)}
            assert big == ({"decompression_bomb"} if limit < 64 * 48 else {"kept"})
            assert not any(p.startswith("bags/small_") for p in dropped)
            outs[limit, threads] = report, (out / "dropped.csv").read_bytes(), load_imageset(out / "clean")
        for threads in (2, 4):
            assert outs[limit, threads][:2] == outs[limit, 1][:2]
            assert np.array_equal(outs[limit, threads][2][0], outs[limit, 1][2][0])
            assert outs[limit, threads][2][1].equals(outs[limit, 1][2][1])


def jpeg_header_only(path, width, height):
    """A JPEG whose frame header declares width x height pixels, cut off where its pixels would start
    (decoded at a reduced draft scale, so a test allocates little for it)."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    struct.pack_into(">HH", data, data.index(b"\xff\xc0") + 5, height, width)
    path.write_bytes(bytes(data[: data.index(b"\xff\xda") + 14]))
