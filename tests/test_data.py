import os
import tarfile

import numpy as np
import pytest
import torch

from robprune import load_dataset
from robprune.data import augment_batch, iterate_batches

from conftest import write_cifar_batches, write_imagefolder


def test_digits_fixed_split():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert a.x_train.dtype == torch.uint8 and a.x_train.shape[1:] == (1, 8, 8)
    assert len(a.x_train) + len(a.x_test) == 1797 and len(a.x_test) == 359
    assert torch.equal(a.y_test, b.y_test) and torch.equal(a.x_test, b.x_test)
    assert int(a.x_train.max()) == 255 and len(a.classes) == 10


def test_cifar10_batches(tmp_path):
    root = write_cifar_batches(tmp_path / "cifar-10-batches-py", n=6)
    data = load_dataset(f"cifar10:{root}")
    assert data.x_train.shape == (30, 3, 32, 32) and data.x_test.shape == (6, 3, 32, 32)
    assert data.classes[0] == "airplane" and data.y_train.dtype == torch.int64


def test_cifar10_wrong_shape_and_unsafe_pickle(tmp_path):
    import pickle

    root = write_cifar_batches(tmp_path / "c", n=4)
    with open(root / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((4, 100), dtype=np.uint8), b"labels": [0, 1, 2, 3]}, f)
    with pytest.raises(ValueError, match="expected \\(N, 3072\\)"):
        load_dataset(f"cifar10:{root}")

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    with open(root / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil()}, f)
    with pytest.raises(ValueError, match="refusing"):
        load_dataset(f"cifar10:{root}")
    assert not (tmp_path / "pwned").exists()


def test_imagefolder_dir_and_archive_agree(tmp_path):
    root = write_imagefolder(tmp_path / "tree")
    from_dir = load_dataset(f"imagefolder:{root}", cache_dir=tmp_path / "cache")
    assert from_dir.classes == ("ant", "cat", "dog")
    assert from_dir.x_train.shape == (12, 3, 8, 8)
    archive = tmp_path / "tree.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="data")
    from_tar = load_dataset(f"imagefolder:{archive}", cache_dir=tmp_path / "cache")
    assert torch.equal(from_dir.x_train, from_tar.x_train) and torch.equal(from_dir.y_test, from_tar.y_test)
    assert list((tmp_path / "cache").glob("*.npz"))  # decoded once, cached outside the tree
    again = load_dataset(f"imagefolder:{archive}", cache_dir=tmp_path / "cache")
    assert torch.equal(again.x_test, from_tar.x_test)
    # class index = sorted class name: the 'ant' images (generated darkest as class 2) get label 0
    assert int(from_dir.y_train[0]) == 0


def test_imagefolder_errors(tmp_path):
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    with pytest.raises(ValueError, match="no images"):
        load_dataset(f"imagefolder:{empty}")
    root = write_imagefolder(tmp_path / "bad")
    (root / "train" / "cat" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot decode image"):
        load_dataset(f"imagefolder:{root}")
    root = write_imagefolder(tmp_path / "mixed")
    write_imagefolder(tmp_path / "big", size=16)
    os.replace(tmp_path / "big" / "train" / "cat" / "000.png", root / "train" / "cat" / "zzz.png")
    with pytest.raises(ValueError, match="one size"):
        load_dataset(f"imagefolder:{root}")


def test_archive_with_escaping_members_is_refused(tmp_path):
    import io

    for name, kind in (("../x.png", tarfile.REGTYPE), ("/abs/train/a/x.png", tarfile.REGTYPE),
                       ("train/a/link.png", tarfile.SYMTYPE)):
        archive = tmp_path / "evil.tar"
        with tarfile.open(archive, "w") as tar:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.SYMTYPE:
                info.linkname = "/etc/passwd"
                tar.addfile(info)
            else:
                info.size = 3
                tar.addfile(info, io.BytesIO(b"abc"))
        with pytest.raises(ValueError, match="refusing"):
            load_dataset(f"imagefolder:{archive}", cache_dir=tmp_path / "cache")


def test_symlink_out_of_tree_is_refused(tmp_path):
    root = write_imagefolder(tmp_path / "tree")
    (root / "train" / "cat" / "evil.png").symlink_to(tmp_path)
    with pytest.raises(ValueError, match="symlink"):
        load_dataset(f"imagefolder:{root}")


@pytest.mark.parametrize("spec", ["mnist", "cifar10", "imagefolder:/does/not/exist", "cifar10:/nope"])
def test_bad_specs(spec):
    with pytest.raises((ValueError, FileNotFoundError)):
        load_dataset(spec)


def test_augmentation_is_batched_deterministic_and_exact():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.uint8).view(2, 3, 4, 4)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    a, b = augment_batch(x, "crop-flip", 1, g1), augment_batch(x, "crop-flip", 1, g2)
    assert torch.equal(a, b) and a.shape == x.shape and a.dtype == torch.uint8
    assert torch.equal(augment_batch(x, "crop", 0, g1), x)  # no padding: the crop is the image
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    crops = {(dy, dx): padded[..., dy:dy + 4, dx:dx + 4] for dy in range(3) for dx in range(3)}
    out = augment_batch(x, "crop", 1, torch.Generator().manual_seed(5))
    for i in range(2):  # every output image is one of the 9 possible crops of its input
        assert any(torch.equal(out[i], c[i]) for c in crops.values())


def test_iterate_batches_covers_data_once():
    x = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 2, 2).contiguous()
    y = torch.arange(10)
    seen = torch.cat([yb for _, yb in iterate_batches(x, y, 3, torch.Generator().manual_seed(0))])
    assert len(seen) == 9 and len(set(seen.tolist())) == 9  # last partial batch dropped when shuffling
    xs = [xb for xb, _ in iterate_batches(x, y, 4, torch.Generator(), shuffle=False)]
    assert sum(len(b) for b in xs) == 10 and xs[0].dtype == torch.float32 and xs[0].max() <= 1
