"""Broken and hostile inputs, generated here: every one is refused whole with one line (exit 2), or loads
exactly what a correct file holds. The fuzz loops are bounded in count and time."""

import io
import json
import os
import pickle
import random
import struct
import tarfile
import time

import numpy as np
import pytest
import torch

import robprune as rp
from robprune.cli import main
from robprune.data import load_cifar10, load_imagefolder

from conftest import write_cifar_batches, write_imagefolder

FUZZ_SECONDS = 10  # per loop, at most (the suite must stay well under CI's 10 minutes)


def _one_line_exit_2(argv, capsys):
    capsys.readouterr()  # only what this command prints
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, (argv, err)
    assert err.startswith("robprune: error:") and len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def _tar_of(folder, path, gz):
    with tarfile.open(path, "w:gz" if gz else "w") as tar:
        tar.add(folder, arcname="tree")
    return path


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("tree")
    folder = write_imagefolder(root / "if", size=8, per_class=6)
    return root, folder


@pytest.mark.parametrize("gz", [False, True])
def test_damaged_archives_are_refused_whole_never_partial(tree, tmp_path, gz):
    root, folder = tree
    good = _tar_of(folder, tmp_path / ("good.tar.gz" if gz else "good.tar"), gz)
    reference = load_imagefolder(good, cache_dir=tmp_path / "c0")
    raw = good.read_bytes()
    rng = random.Random(0)
    t0, cases = time.time(), 0
    while time.time() - t0 < FUZZ_SECONDS and cases < 40:
        cases += 1
        data = bytearray(raw)
        kind = rng.choice(["flip", "cut", "cut-block"])
        if kind == "flip":
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        elif kind == "cut":
            data = data[: rng.randrange(1, len(data))]
        else:  # a cut on a 512-byte block boundary, the case tarfile reads as a shorter archive
            data = data[: 512 * rng.randrange(1, len(data) // 512)]
        bad = tmp_path / f"bad{cases}{'.tar.gz' if gz else '.tar'}"
        bad.write_bytes(bytes(data))
        try:
            loaded = load_imagefolder(bad, cache_dir=tmp_path / f"c{cases}")
        except ValueError:
            assert not any((tmp_path / f"c{cases}").glob("*.npz")), "a refused archive must not be cached"
            continue
        # accepted: then it is the whole data set, image for image (a flip in padding or an ignored field)
        assert len(loaded.x_train) == len(reference.x_train) and len(loaded.x_test) == len(reference.x_test)
        assert loaded.classes == reference.classes
        assert torch.equal(loaded.y_train, reference.y_train)


def test_a_member_header_flip_in_the_middle_is_refused(tree, tmp_path):
    """The reported example: one flipped bit in a later member's header loaded as a shorter data set."""
    _, folder = tree
    good = _tar_of(folder, tmp_path / "g.tar", gz=False)
    raw = bytearray(good.read_bytes())
    with tarfile.open(good) as tar:
        members = tar.getmembers()
    middle = members[len(members) // 2]
    raw[middle.offset + 100] ^= 0x10  # inside the mode field of that member's header
    bad = tmp_path / "b.tar"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="damaged|cannot read"):
        load_imagefolder(bad, cache_dir=tmp_path / "c")


def test_cache_key_follows_the_content_and_a_corrupt_cache_is_rebuilt(tree, tmp_path, caplog):
    _, folder = tree
    arch = _tar_of(folder, tmp_path / "a.tar", gz=False)
    cache = tmp_path / "cache"
    first = load_imagefolder(arch, cache_dir=cache)
    (npz,) = cache.glob("*.npz")
    npz.write_bytes(npz.read_bytes()[:100])  # a damaged cache must not break every later run
    again = load_imagefolder(arch, cache_dir=cache)
    assert torch.equal(first.x_train, again.x_train) and "damaged" in caplog.text
    stat = arch.stat()
    other = bytearray(arch.read_bytes())
    with tarfile.open(arch) as tar:
        first_member = next(m for m in tar.getmembers() if m.isfile())
    other[first_member.offset_data + 40] ^= 0xFF  # same size, same mtime below, other content
    arch.write_bytes(bytes(other))
    os.utime(arch, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    try:
        changed = load_imagefolder(arch, cache_dir=cache)
        assert not torch.equal(changed.x_train, first.x_train)
    except ValueError:
        pass  # a PNG whose data no longer checks out: refused, also fine; never the stale cache
    assert len(list(cache.glob("*.npz"))) <= 2


def test_unwritable_cache_falls_back_to_no_cache(tree, tmp_path, caplog):
    _, folder = tree
    arch = _tar_of(folder, tmp_path / "a.tar", gz=False)
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("x")
    data = load_imagefolder(arch, cache_dir=blocked / "sub")
    assert len(data.x_train) > 0 and "without a cache" in caplog.text


def test_oversized_member_and_pixel_bomb_are_refused_before_reading(tmp_path):
    from PIL import Image

    folder = write_imagefolder(tmp_path / "t", size=4, per_class=1)
    big = tmp_path / "big.tar"
    with tarfile.open(big, "w") as tar:
        tar.add(folder, arcname="tree")
        info = tarfile.TarInfo("tree/train/cat/huge.png")
        info.size = 65 * 1024 * 1024
        tar.addfile(info, io.BytesIO(b"\0" * info.size))
    with pytest.raises(ValueError, match="claims .* bytes"):
        load_imagefolder(big, cache_dir=tmp_path / "c")
    bomb = write_imagefolder(tmp_path / "bomb", size=4, per_class=1)
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    png = bytearray(buf.getvalue())
    png[16:24] = struct.pack(">II", 100_000, 100_000)  # IHDR claims 10^10 pixels
    (bomb / "train" / "cat" / "000.png").write_bytes(bytes(png))
    with pytest.raises(ValueError, match="cannot decode image"):
        load_imagefolder(bomb)


def test_tree_layout_errors_are_said_not_skipped(tmp_path, capsys):
    deep = write_imagefolder(tmp_path / "deep", size=4, per_class=1)
    (deep / "train" / "cat" / "sub").mkdir()
    (deep / "train" / "cat" / "000.png").rename(deep / "train" / "cat" / "sub" / "000.png")
    _one_line_exit_2(["stats", "nothing.safetensors", "--out", str(tmp_path / "x")], capsys)
    with pytest.raises(ValueError, match="exactly one class folder"):
        load_imagefolder(deep)
    nested = write_imagefolder(tmp_path / "nested", size=4, per_class=1)
    (nested / "train" / "x" / "test" / "zz").mkdir(parents=True)
    (nested / "test" / "cat" / "000.png").rename(nested / "train" / "x" / "test" / "zz" / "000.png")
    with pytest.raises(ValueError, match="exactly one class folder"):
        load_imagefolder(nested)
    loop = write_imagefolder(tmp_path / "loop", size=4, per_class=1)
    os.symlink(loop / "train", loop / "train" / "cat" / "again")
    try:
        load_imagefolder(loop)
    except ValueError as err:
        assert "loop" in str(err) or "symlink" in str(err) or "class folder" in str(err) or "cannot" in str(err)


def _batch(path, data, labels, protocol=2):
    with open(path, "wb") as f:
        pickle.dump({b"data": data, b"labels": labels}, f, protocol=protocol)


@pytest.mark.parametrize("case", ["float data", "wide ints", "float labels", "string labels", "huge label",
                                  "label matrix", "nested shared lists", "labels out of range", "empty test",
                                  "not a dict", "bytes bomb"])
def test_malformed_cifar_batches_are_refused_fast(case, tmp_path, capsys):
    root = write_cifar_batches(tmp_path / "cifar", n=4)
    target = root / "data_batch_2"
    ok_data = np.zeros((4, 3072), np.uint8)
    if case == "float data":
        _batch(target, np.full((4, 3072), 0.5, np.float32), [0, 1, 2, 3])
    elif case == "wide ints":
        _batch(target, np.full((4, 3072), 300, np.int64), [0, 1, 2, 3])
    elif case == "float labels":
        _batch(target, ok_data, [0.0, 1.0, 2.0, 3.0])
    elif case == "string labels":
        _batch(target, ok_data, ["a", "b", "c", "d"])
    elif case == "huge label":
        _batch(target, ok_data, [0, 1, 2, 2 ** 70])
    elif case == "label matrix":
        _batch(target, ok_data, np.zeros((4, 2), np.int64))
    elif case == "nested shared lists":
        x = [0]
        for _ in range(60):
            x = [x, x]  # 10 KB on disk, 2^60 leaves if expanded
        _batch(target, ok_data, x)
    elif case == "labels out of range":
        _batch(target, ok_data, [0, 1, 2, 10])
    elif case == "empty test":
        _batch(root / "test_batch", np.zeros((0, 3072), np.uint8), [])
    elif case == "not a dict":
        with open(target, "wb") as f:
            pickle.dump([1, 2, 3], f, protocol=2)
    elif case == "bytes bomb":
        payload = (b"\x80\x02c__builtin__\nbytes\nJ\x00\xca\x9a\x3b\x85R.")  # bytes(10**9)
        target.write_bytes(payload)
    t0 = time.time()
    err = _one_line_exit_2(["train", "--data", f"cifar10:{root}", "--arch", "resnet20", "--epochs", "1",
                            "--out", str(tmp_path / "o")], capsys)
    assert time.time() - t0 < 10
    assert "cifar" in err.lower() or "batch" in err or "data_batch" in err or "test" in err


def test_an_empty_array_pickled_with_protocol_2_loads(tmp_path):
    root = write_cifar_batches(tmp_path / "c", n=3)
    _batch(root / "data_batch_5", np.zeros((0, 3072), np.uint8), [])
    data = load_cifar10(root)
    assert len(data.x_train) == 12


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    return rp.save_checkpoint(tmp_path_factory.mktemp("ck") / "m.safetensors", rp.create_model("small_cnn"))


def _rewrite_meta(src, dst, transform):
    with open(src, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        body = f.read()
    header = transform(header)
    text = json.dumps(header).encode()
    dst.write_bytes(struct.pack("<Q", len(text)) + text + body)
    return dst


@pytest.mark.parametrize("case", ["num_classes 1e9", "in_channels -1", "deep json", "F32 to I32", "nan weights",
                                  "std zero", "metadata list", "kwargs not dict", "unknown dtype"])
def test_hostile_checkpoints_give_one_line(case, ckpt, tmp_path, capsys):
    def meta(change):
        def t(h):
            m = json.loads(h["__metadata__"]["robprune"])
            change(m)
            h["__metadata__"]["robprune"] = json.dumps(m)
            return h
        return t

    bad = tmp_path / "bad.safetensors"
    if case == "num_classes 1e9":
        _rewrite_meta(ckpt, bad, meta(lambda m: m.update(num_classes=10 ** 9)))
    elif case == "in_channels -1":
        _rewrite_meta(ckpt, bad, meta(lambda m: m.update(in_channels=-1)))
    elif case == "deep json":
        def deep(h):
            h["__metadata__"]["robprune"] = "[" * 100000 + "]" * 100000
            return h
        _rewrite_meta(ckpt, bad, deep)
    elif case == "F32 to I32":
        def to_i32(h):
            h["model.conv1.weight"]["dtype"] = "I32"
            return h
        _rewrite_meta(ckpt, bad, to_i32)
    elif case in ("nan weights", "std zero"):
        model, masks, _ = rp.load_checkpoint(ckpt)
        with torch.no_grad():
            if case == "nan weights":
                model.conv1.weight[0, 0, 0, 0] = float("nan")
            else:
                model.normalize.std.zero_()
        rp.save_checkpoint(bad, model, masks)
    elif case == "metadata list":
        _rewrite_meta(ckpt, bad, lambda h: {**h, "__metadata__": {"robprune": "[1, 2]"}})
    elif case == "kwargs not dict":
        _rewrite_meta(ckpt, bad, meta(lambda m: m.update(kwargs=[1])))
    elif case == "unknown dtype":
        def weird(h):
            h["model.conv1.weight"]["dtype"] = "Q99"
            return h
        _rewrite_meta(ckpt, bad, weird)
    err = _one_line_exit_2(["eval", str(bad), "--data", "digits", "--n-images", "10", "--out",
                            str(tmp_path / "o")], capsys)
    assert str(bad) in err or "num_classes" in err or "in_channels" in err


def test_fuzzed_checkpoints_never_crash(ckpt, tmp_path, capsys):
    raw = ckpt.read_bytes()
    reference = rp.load_checkpoint(ckpt)[0].state_dict()
    rng = random.Random(1)
    t0, cases = time.time(), 0
    while time.time() - t0 < FUZZ_SECONDS and cases < 80:
        cases += 1
        data = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(min(len(data), 8 + struct.unpack("<Q", raw[:8])[0] + 64))  # mostly the header
            data[i] = rng.randrange(256)
        bad = tmp_path / f"f{cases}.safetensors"
        bad.write_bytes(bytes(data))
        code = main(["stats", str(bad), "--out", str(tmp_path / f"o{cases}")])
        err = capsys.readouterr().err.strip()
        assert code in (0, 2)
        if code == 2:
            assert err.startswith("robprune: error:") and len(err.splitlines()) == 1, err
        else:
            model = rp.load_checkpoint(bad)[0]
            assert model.state_dict().keys() == reference.keys()


def test_resume_checks_init_arch_and_data(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", "digits", "--arch", "small_cnn", "--epochs", "1", "--out", str(out)]) == 0
    base = out / "model.safetensors"
    dense = tmp_path / "dense"
    assert main(["train", "--data", "digits", "--arch", "small_cnn", "--epochs", "2", "--out", str(dense)]) == 0
    pruned = tmp_path / "p"
    assert main(["prune", str(base), "--method", "cp", "--amount", "0.5", "--out", str(pruned)]) == 0
    err = _one_line_exit_2(["train", "--data", "digits", "--init", str(pruned / "model.safetensors"), "--epochs", "2",
                            "--lr", "0.1", "--resume", "--out", str(dense)], capsys)
    assert "different run" in err and "init" in err
    err = _one_line_exit_2(["train", "--data", "digits", "--arch", "small_cnn", "--epochs", "3", "--resume",
                            "--out", str(dense)], capsys)
    assert "--init" in err and "cannot be extended" in err


def test_one_rule_for_output_folders(tmp_path, capsys, ckpt):
    out = tmp_path / "o"
    assert main(["prune", str(ckpt), "--method", "rp", "--amount", "0.1", "--out", str(out)]) == 0
    err = _one_line_exit_2(["prune", str(ckpt), "--method", "cp", "--amount", "0.5", "--out", str(out)], capsys)
    assert "--overwrite" in err
    assert main(["prune", str(ckpt), "--method", "cp", "--amount", "0.5", "--out", str(out), "--overwrite"]) == 0
    err = _one_line_exit_2(["stats", str(ckpt), "--out", str(out)], capsys)
    assert "'prune' run" in err
    _one_line_exit_2(["stats", str(ckpt), "--out", ""], capsys)
    (out / ".model.safetensors.abc.tmp").write_bytes(b"partial")  # a kill during an atomic write
    assert main(["prune", str(ckpt), "--method", "cp", "--amount", "0.5", "--out", str(out), "--overwrite"]) == 0
    assert not list(out.glob(".*.tmp"))


def test_report_only_on_an_empty_results_file(tmp_path, capsys):
    (tmp_path / "results.json").write_text("{}")
    err = _one_line_exit_2(["reproduce", "--data", "x", "--report-only", "--out", str(tmp_path)], capsys)
    assert "results.json" in err


def test_torch_files_are_recognised(tmp_path, capsys):
    torch.save({"state_dict": rp.create_model("resnet20").state_dict()}, tmp_path / "c.th")
    err = _one_line_exit_2(["eval", str(tmp_path / "c.th"), "--data", "digits", "--out", str(tmp_path / "o")], capsys)
    assert "robprune import" in err and "header claims" not in err


def test_empty_test_split_is_refused(tmp_path, capsys):
    folder = write_imagefolder(tmp_path / "if", size=8, per_class=2)
    for f in (folder / "test").rglob("*.png"):
        f.unlink()
    _one_line_exit_2(["train", "--data", f"imagefolder:{folder}", "--arch", "resnet20", "--epochs", "1",
                      "--out", str(tmp_path / "o")], capsys)
