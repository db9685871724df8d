import json
import pickle
import struct

import pytest
import torch

from robprune import apply_masks, compute_masks, create_model, import_checkpoint, load_checkpoint, save_checkpoint
from robprune.evaluation import predict

from conftest import shared_file


def test_round_trip_is_bit_exact(tmp_path, tiny_resnet):
    masks = compute_masks(tiny_resnet, "cp", 0.5)
    apply_masks(tiny_resnet, masks)
    path = save_checkpoint(tmp_path / "m.safetensors", tiny_resnet, masks, {"note": "hello"})
    model, masks2, meta = load_checkpoint(path)
    assert meta["arch"] == "resnet20" and meta["note"] == "hello" and meta["num_classes"] == 10
    for (k, a), (k2, b) in zip(tiny_resnet.state_dict().items(), model.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    assert masks2.keys() == masks.keys() and all(torch.equal(masks[k], masks2[k]) for k in masks)
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(tiny_resnet(x), model.eval()(x))


def test_no_temporary_files_left(tmp_path, small_cnn):
    save_checkpoint(tmp_path / "m.safetensors", small_cnn)
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_missing_empty_truncated_tampered(tmp_path, small_cnn):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nope.safetensors")
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="not a safetensors"):
        load_checkpoint(empty)
    good = save_checkpoint(tmp_path / "good.safetensors", small_cnn).read_bytes()
    truncated = tmp_path / "trunc.safetensors"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="corrupt"):
        load_checkpoint(truncated)
    tampered = tmp_path / "tampered.safetensors"
    tampered.write_bytes(struct.pack("<Q", 2**40) + good[8:])
    with pytest.raises(ValueError, match="header claims"):
        load_checkpoint(tampered)


def test_foreign_safetensors_and_wrong_architecture(tmp_path, small_cnn):
    import safetensors.torch

    foreign = tmp_path / "foreign.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(2)}, foreign)
    with pytest.raises(ValueError, match="not a robprune checkpoint"):
        load_checkpoint(foreign)
    path = save_checkpoint(tmp_path / "cnn.safetensors", small_cnn)
    with pytest.raises(ValueError, match="holds a small_cnn model, not resnet20"):
        load_checkpoint(path, expect_arch="resnet20")
    # Same file, metadata claiming another class count: strict loading refuses it.
    tensors = safetensors.torch.load_file(path)
    meta = {"arch": "small_cnn", "num_classes": 5, "in_channels": 1}
    bad = tmp_path / "bad.safetensors"
    safetensors.torch.save_file(tensors, bad, metadata={"robprune": json.dumps(meta)})
    with pytest.raises(ValueError, match="does not match a small_cnn with 5 classes"):
        load_checkpoint(bad)


def test_mask_with_wrong_shape_is_refused(tmp_path, small_cnn):
    import safetensors.torch

    path = save_checkpoint(tmp_path / "m.safetensors", small_cnn)
    with safetensors.safe_open(str(path), "pt") as f:
        meta = f.metadata()
    tensors = safetensors.torch.load_file(path)
    tensors["mask.conv1.weight"] = torch.ones(3, dtype=torch.bool)
    safetensors.torch.save_file(tensors, path, metadata=meta)
    with pytest.raises(ValueError, match="shape"):
        load_checkpoint(path)


def _community_checkpoint(path, model):
    sd = {f"module.{k}": v for k, v in model.state_dict().items()
          if not k.startswith("normalize.") and not k.endswith("num_batches_tracked")}
    torch.save({"state_dict": sd, "best_prec1": 91.0}, path)


def test_import_community_format(tmp_path):
    torch.manual_seed(1)
    source = create_model("resnet20")
    _community_checkpoint(tmp_path / "c.th", source)
    model = import_checkpoint(tmp_path / "c.th", "resnet20")
    for k, v in source.state_dict().items():
        if not k.startswith("normalize.") and not k.endswith("num_batches_tracked"):
            assert torch.equal(v, model.state_dict()[k])
    assert torch.allclose(model.normalize.std.flatten(), torch.tensor([0.229, 0.224, 0.225]))
    with pytest.raises(ValueError, match="does not fit resnet32"):
        import_checkpoint(tmp_path / "c.th", "resnet32")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_import_never_executes_pickled_code(tmp_path):
    marker = tmp_path / "pwned"
    with open(tmp_path / "evil.th", "wb") as f:
        pickle.dump({"state_dict": _Payload(str(marker))}, f)
    with pytest.raises(ValueError, match="weights-only"):
        import_checkpoint(tmp_path / "evil.th", "resnet20")
    assert not marker.exists()


@pytest.mark.slow
def test_shared_resnet56_scores_83_2_on_jpeg_test_split():
    archive = shared_file("data/cifar10-jpeg.tar.gz")
    weights = shared_file("pretrained/resnet56-4bfd9763.th")
    import tarfile
    from pathlib import PurePosixPath

    import numpy as np
    from PIL import Image

    # only the test split, decoded here with PIL (robprune's loader decodes both splits: 60,000 images)
    images, labels = [], []
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and PurePosixPath(m.name).parts[-3:-2] == ("test",)]
        classes = sorted({PurePosixPath(m.name).parts[-2] for m in members})
        for m in members:
            with Image.open(tar.extractfile(m)) as img:
                images.append(np.asarray(img.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1))
            labels.append(classes.index(PurePosixPath(m.name).parts[-2]))
    assert len(images) == 10_000 and len(classes) == 10
    x, y = torch.from_numpy(np.stack(images)), torch.tensor(labels)
    model = import_checkpoint(weights, "resnet56")
    accuracy = (predict(model, x) == y).float().mean().item()
    assert accuracy == pytest.approx(0.832, abs=0.003)
