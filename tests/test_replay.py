"""``--config FILE`` on train, prune and eval: the recorded command line is replayed, the new one overrides it."""

import json

import pytest

from robprune.cli import main


def _args(folder):
    return json.loads((folder / "config.json").read_text())["args"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    out = tmp_path_factory.mktemp("replay") / "base"
    assert main(["train", "--data", "digits", "--arch", "small_cnn", "--epochs", "1", "--batch-size", "64",
                 "--n-train", "300", "--method", "cp", "--amount", "0.3", "--keep-ends", "--adv-eps", "16",
                 "--out", str(out)]) == 0
    return out


def test_train_replays_every_recorded_option_and_the_command_line_overrides(base, tmp_path):
    out = tmp_path / "seed1"
    assert main(["train", "--config", str(base / "config.json"), "--seed", "1", "--out", str(out)]) == 0
    before, after = _args(base), _args(out)
    differ = {k for k in before if before[k] != after.get(k)}
    assert differ == {"seed", "out", "out_dir", "config"}, differ
    assert after["keep_ends"] is True and after["adv_eps"] == pytest.approx(16 / 255)  # units kept
    # a replay of a replay follows the chain, and the newest command line wins
    again = tmp_path / "again"
    assert main(["train", f"--config={out / 'config.json'}", "--epochs", "2", "--out", str(again)]) == 0
    last = _args(again)
    assert last["seed"] == 1 and last["epochs"] == 2 and last["amount"] == 0.3 and last["n_train"] == 300


def test_overwrite_and_resume_are_never_replayed(base, tmp_path):
    out = tmp_path / "o"
    assert main(["train", "--config", str(base / "config.json"), "--out", str(out), "--overwrite"]) == 0
    assert main(["train", "--config", str(out / "config.json"), "--out", str(tmp_path / "p")]) == 0
    assert _args(tmp_path / "p")["overwrite"] is False
    # the recorded --out holds results: replaying it as is is refused, nothing lost
    assert main(["train", "--config", str(out / "config.json")]) == 2
    assert (out / "model.safetensors").is_file()


def test_prune_and_eval_replay_and_new_checkpoints_replace_the_recorded_ones(base, tmp_path):
    model = base / "model.safetensors"
    assert main(["prune", str(model), "--method", "rp", "--amount", "0.4", "--out", str(tmp_path / "rp")]) == 0
    assert main(["prune", "--config", str(tmp_path / "rp" / "config.json"), "--method", "cp",
                 "--out", str(tmp_path / "cp")]) == 0
    args = _args(tmp_path / "cp")
    assert args["checkpoint"] == str(model) and args["amount"] == 0.4 and args["method"] == "cp"
    assert main(["eval", str(model), "--data", "digits", "--eps", "0,8", "--steps", "2", "--n-images", "50",
                 "--no-checks", "--label", "first", "--out", str(tmp_path / "ev")]) == 0
    other = tmp_path / "cp" / "model.safetensors"
    assert main(["eval", str(other), "--config", str(tmp_path / "ev" / "eval.json"), "--out",
                 str(tmp_path / "ev2")]) == 0
    ev = json.loads((tmp_path / "ev2" / "eval.json").read_text())
    assert ev["config"]["args"]["checkpoints"] == [str(other)] and ev["config"]["args"]["steps"] == 2
    assert ev["n"] == 50 and ev["config"]["args"]["label"] == ["first"]


@pytest.mark.parametrize("content,message", [
    (None, "does not exist"),
    ("not json", "is not JSON"),
    ('{"argv": 3}', "records no command line"),
    ('{"command": "eval", "argv": ["eval", "x"]}', "cannot configure 'robprune train'"),
    ('{"command": "train", "argv": ["train", "--data", "digits", "--no-such-flag"]}', "unrecognized arguments"),
    ('{"command": "train", "argv": ["train", "--data", "digits", "--epochs", "-3"]}', "must be >= 1"),
    (" " * (2 << 20), "a few kilobytes"),
])
def test_a_bad_config_is_one_line_and_nothing_is_written(content, message, tmp_path, capsys):
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("robprune: error:") and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_a_chain_of_configs_that_loops_is_refused(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"command": "train", "argv": ["train", "--config", str(b)]}))
    b.write_text(json.dumps({"command": "train", "argv": ["train", "--config", str(a)]}))
    assert main(["train", "--config", str(a), "--out", str(tmp_path / "o")]) == 2
    assert "replays of replays" in capsys.readouterr().err
