import pytest

from lvmbench import catalog, config
from lvmbench.errors import UserError


def test_parse_sets_types_and_repeat():
    out = config.parse_sets(["train.iters=200", "train.lr=0.1", "train.nesterov=false", "head.kind=cosine"])
    assert out == {"train.iters": 200, "train.lr": 0.1, "train.nesterov": False, "head.kind": "cosine"}


@pytest.mark.parametrize("pair,message", [
    ("train.iters=0", "train.iters=0: must be > 0"),
    ("train.batch_size=0", "train.batch_size=0: must be > 0"),
    ("train.lr=-0.1", "train.lr=-0.1: must be > 0"),
    ("train.iters=abc", "--set train.iters=abc: expected int"),
    ("head.kind=round", "head.kind=round: choose from linear, cosine"),
    ("train.iters", "--set train.iters: expected key=value"),
])
def test_bad_values_are_one_line(pair, message):
    with pytest.raises(UserError) as err:
        config.parse_sets([pair])
    assert str(err.value) == message


def test_unknown_key_suggests_closest():
    with pytest.raises(UserError, match=r"unknown --set key 'train.itres' \(did you mean train.iters"):
        config.parse_sets(["train.itres=3"])


def test_resolve_layers_profiles_and_overrides():
    spec = config.resolve("mnist-lt", "tiny-clip", "full_finetune", overrides={"train.lr": 1e-4})
    assert spec["train.iters"] == catalog.dataset("mnist-lt").defaults["train.iters"]
    assert spec["train.optimizer"] == "adamw" and spec["train.lr"] == 1e-4
    assert spec["pretrained"] == "embedded" and spec["loss"] == "ce"
    paper = config.resolve("imagenet-lt", "ViT-L-14", "ce")
    assert (paper["train.iters"], paper["train.batch_size"], paper["train.lr"]) == (8192, 256, 0.03)
    assert paper["pretrained"] == "openai"


def test_loss_hparams_validated_against_the_loss():
    spec = config.resolve("mnist-lt", "tiny-clip", "focal", overrides=config.parse_sets(["loss.gamma=1"]))
    assert config.loss_hparams(spec) == {"gamma": 1}
    with pytest.raises(UserError, match="loss.tau: loss 'focal' takes gamma"):
        config.resolve("mnist-lt", "tiny-clip", "focal", overrides=config.parse_sets(["loss.tau=1"]))


def test_unknown_names_suggest():
    with pytest.raises(UserError, match=r"unknown dataset 'mnist_lt' \(did you mean mnist-lt"):
        config.resolve("mnist_lt", "tiny-clip", "ce")
    with pytest.raises(UserError, match=r"unknown method 'balanced-softmax' \(did you mean balanced_softmax"):
        config.resolve("mnist-lt", "tiny-clip", "balanced-softmax")


def test_config_hash_tracks_what_changes_results():
    a = config.resolve("mnist-lt", "tiny-clip", "ce")
    assert config.config_hash(a) == config.config_hash(config.resolve("mnist-lt", "tiny-clip", "ce"))  # stable
    assert config.config_hash(a) != config.config_hash({**a, "train.lr": 0.5})
    assert config.config_hash(a) != config.config_hash({**a, "seed": 1})
    assert config.config_hash(a) == config.config_hash({**a, "train.num_workers": 4})


@pytest.mark.parametrize("method,overrides,message", [
    ("ce", {"train.lr": -1}, "train.lr=-1: must be > 0"),  # set in Python, not through --set
    ("zeroshot", {"train.batch_size": 0}, "train.batch_size=0: must be > 0"),
    ("zeroshot", {"loss.gamma": 1.0}, "method zeroshot trains no classifier; loss.* settings do not apply"),
    ("ce", {"loss": "fcal"}, "unknown loss 'fcal' (did you mean focal?); choose from: balanced_softmax, cbw, ce, "
                             "focal, grw, lade, ldam, logit_adjust"),
    ("ce", {"loss.gamma": 1.0}, "loss.gamma: loss 'ce' takes no hyper-parameters"),
    ("ldam", {"loss.margin": 1.0}, "loss.margin: loss 'ldam' takes drw_start, max_m, s"),
    ("focal", {"loss.gamma": -1}, "loss.gamma=-1: must be >= 0 (focal)"),
], ids=["lr", "batch", "loss-without-classifier", "unknown-loss", "no-hparams", "wrong-hparam", "range"])
def test_resolve_refuses_a_spec_it_cannot_train_with_one_line(method, overrides, message):
    with pytest.raises(UserError) as err:
        config.resolve("mnist-lt", "tiny-clip", method, overrides=overrides)
    assert str(err.value) == message


def test_seeds_up_to_numpys_limit_are_accepted():
    assert config.resolve("mnist-lt", "tiny-clip", "ce", seed=config.MAX_SEED)["seed"] == 2 ** 32 - 1
    with pytest.raises(UserError, match=f"--seed {2 ** 32}: must be between 0 and {2 ** 32 - 1}"):
        config.resolve("mnist-lt", "tiny-clip", "ce", seed=2 ** 32)


def test_data_files_are_absolute_under_the_resolved_data_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = config.resolve("mnist-lt", "tiny-clip", "ce", data_root="data",
                          overrides={"data.train_list": "lists/train.txt", "data.val_list": "none",
                                     "data.test_list": str(tmp_path / "elsewhere" / "test.txt")})
    assert spec["data_root"] == str(tmp_path / "data")
    assert spec["data.train_list"] == str(tmp_path / "data" / "lists" / "train.txt")
    assert spec["data.val_list"] == "none"
    assert spec["data.test_list"] == str(tmp_path / "elsewhere" / "test.txt")
    assert config.resolve("mnist-lt", "tiny-clip", "ce", overrides={"data.train_list": "x.txt"})[
        "data.train_list"] == "x.txt"  # the embedded dataset has no data root: nothing to resolve against
