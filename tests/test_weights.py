"""Which weights a backbone loads, and with which activation: OpenAI's weights need QuickGELU.

The stand-ins: tiny-clip's config with random weights, laid out as an ``openai`` tag in a local
Hugging Face hub cache, as a TorchScript archive (OpenAI's release format), and as a plain state dict.
"""
from __future__ import annotations

import json

import open_clip
import pytest
import torch

from lvmbench.errors import UserError
from lvmbench.models import backbone as bb
from lvmbench.models import tiny_clip

REPO = "lvmbench-test/tiny-clip.openai"


def _clip(name: str, pretrained: str):
    """The open_clip model a run loads for ``--backbone name --pretrained pretrained``."""
    return bb.load_weights(bb.resolve_weights(name, pretrained))


def _random_state(seed=0) -> dict:
    tiny_clip.register()
    torch.manual_seed(seed)
    model = open_clip.create_model("tiny-clip")
    for p in model.parameters():  # large enough weights that GELU and QuickGELU differ clearly
        p.data.normal_(0, 0.5)
    return model.state_dict()


def _image_features(model) -> torch.Tensor:
    torch.manual_seed(1)
    with torch.no_grad():
        return model.eval().encode_image(torch.randn(2, 3, 28, 28))


def _reference(state: dict, quick_gelu: bool) -> torch.Tensor:
    model = open_clip.create_model("tiny-clip", force_quick_gelu=quick_gelu)
    model.load_state_dict(state)
    return _image_features(model)


@pytest.fixture
def openai_tag(tmp_path, monkeypatch):
    """A hub cache under tmp_path holding random tiny-clip weights as the tag ``openai`` (quick_gelu=True,
    as open_clip's configs say of every OpenAI tag)."""
    import huggingface_hub.constants as hub

    cache = tmp_path / "hub"
    snapshot = cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0123abcd")
    state = _random_state()
    torch.save(state, snapshot / "open_clip_pytorch_model.bin")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, "tiny-clip",
                        {"openai": open_clip.pretrained._pcfg(hf_hub=f"{REPO}/", quick_gelu=True)})
    return state


def test_openai_tag_loads_with_quick_gelu(openai_tag):
    weights = bb.resolve_weights("tiny-clip", "openai")
    assert weights.quick_gelu and not weights.is_file
    assert "QuickGELU" in weights.describe()
    got = _image_features(_clip("tiny-clip", "openai"))
    torch.testing.assert_close(got, _reference(openai_tag, quick_gelu=True))
    assert not torch.allclose(got, _reference(openai_tag, quick_gelu=False), atol=1e-3)


def test_openai_tag_needs_nothing_but_the_local_cache(openai_tag):
    bb.ensure_weights("tiny-clip", "openai")  # found offline, in the hub layout


def test_openai_torchscript_archive_is_loaded_with_quick_gelu(tmp_path):
    state = _random_state(seed=2)
    model = open_clip.create_model("tiny-clip", force_quick_gelu=True)
    model.load_state_dict(state)
    archive = tmp_path / "ViT-tiny.pt"
    with pytest.warns(Warning):  # torch deprecates tracing; OpenAI's files were written this way
        traced = torch.jit.trace(model.eval(), (torch.zeros(1, 3, 28, 28), torch.zeros(1, 16, dtype=torch.long)),
                                 check_trace=False)
        torch.jit.save(traced, str(archive))
    weights = bb.resolve_weights("tiny-clip", str(archive))
    assert weights.is_file and weights.quick_gelu and "OpenAI" in weights.why
    got = _image_features(_clip("tiny-clip", str(archive)))
    torch.testing.assert_close(got, _reference(state, quick_gelu=True))
    assert not torch.allclose(got, _reference(state, quick_gelu=False), atol=1e-3)


def test_plain_state_dict_keeps_the_config_activation_and_quickgelu_names_are_accepted(tmp_path):
    state = _random_state(seed=3)
    path = tmp_path / "plain.pt"
    torch.save(state, path)
    plain = bb.resolve_weights("tiny-clip", str(path))
    assert not plain.quick_gelu
    torch.testing.assert_close(_image_features(_clip("tiny-clip", str(path))), _reference(state, False))

    cfg = json.loads(tiny_clip.CONFIG_FILE.read_text())
    (tmp_path / "tiny-clip-quickgelu.json").write_text(json.dumps({**cfg, "quick_gelu": True}))
    open_clip.add_model_config(tmp_path / "tiny-clip-quickgelu.json")
    named = bb.resolve_weights("tiny-clip-quickgelu", str(path))
    assert named.quick_gelu
    torch.testing.assert_close(_image_features(_clip("tiny-clip-quickgelu", str(path))),
                               _reference(state, True))


def test_unknown_tag_is_one_line():
    with pytest.raises(UserError, match="pretrained tag"):
        bb.resolve_weights("tiny-clip", "nope")


# -- identities: paths resolved before they enter a spec, checkpoint files hashed by content -------------
def _ckpt(path, payload: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


def test_relative_paths_are_resolved_and_a_checkpoint_is_hashed_by_content(tmp_path, monkeypatch):
    from lvmbench import config

    a = _ckpt(tmp_path / "one" / "ckpt" / "x.pt", b"\x80" + b"a" * 3_000_000)
    b = _ckpt(tmp_path / "two" / "ckpt" / "x.pt", b"\x80" + b"b" * 3_000_000)  # same name and size, other weights
    (tmp_path / "one" / "work").mkdir()
    (tmp_path / "two" / "work").mkdir()

    def spec_from(cwd, pretrained, **kw):
        monkeypatch.chdir(cwd)
        return config.resolve("mnist-lt", "tiny-clip", "ce", pretrained=pretrained, **kw)

    rel_one = spec_from(tmp_path / "one" / "work", "../ckpt/x.pt")
    rel_two = spec_from(tmp_path / "two" / "work", "../ckpt/x.pt")
    absolute = spec_from(tmp_path, str(a))
    assert rel_one["pretrained"] == str(a) and rel_two["pretrained"] == str(b)
    assert config.config_hash(rel_one) == config.config_hash(absolute)
    assert config.config_hash(rel_one) != config.config_hash(rel_two)
    copy = _ckpt(tmp_path / "renamed.pt", a.read_bytes())
    assert config.config_hash(spec_from(tmp_path, str(copy))) == config.config_hash(absolute)
    middle = bytearray(a.read_bytes())  # the identity reads the first and the last MiB
    middle[-1] = ord("z")
    assert config.config_hash(spec_from(tmp_path, str(_ckpt(tmp_path / "tail.pt", bytes(middle))))) \
        != config.config_hash(absolute)


def test_data_paths_are_absolute_in_the_spec(tmp_path, monkeypatch):
    from lvmbench import config

    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    spec = config.resolve("split-file", "tiny-clip", "ce", data_root="data",
                          overrides=config.parse_sets(["data.train_list=lists/train.txt", "data.val_list=none"]))
    assert spec["data_root"] == str(tmp_path / "data")
    assert spec["data.train_list"] == str(tmp_path / "data" / "lists" / "train.txt")
    assert spec["data.val_list"] == "none" and spec["data.test_list"] is None


def test_a_checkpoint_overwritten_in_place_gets_a_new_identity_in_the_same_process(tmp_path):
    """A long-lived process (the UI, a sweep) hashes a checkpoint once; a file retrained and saved over
    the old one, at the same size, must not keep the old weights' identity."""
    import os

    from lvmbench import config

    path = _ckpt(tmp_path / "x.pt", b"\x80" + b"a" * 1000)
    before = config.config_hash(config.resolve("mnist-lt", "tiny-clip", "ce", pretrained=str(path)))
    st = os.stat(path)
    path.write_bytes(b"\x80" + b"b" * 1000)  # same file, same size, other weights
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # a later save, on any file system
    after = config.config_hash(config.resolve("mnist-lt", "tiny-clip", "ce", pretrained=str(path)))
    assert after != before
    fresh = tmp_path / "y.pt"
    fresh.write_bytes(path.read_bytes())
    assert after == config.config_hash(config.resolve("mnist-lt", "tiny-clip", "ce", pretrained=str(fresh)))


def test_a_checkpoints_identity_is_its_size_and_the_sha256_of_its_first_and_last_mib(tmp_path, monkeypatch):
    """``file:<size>:<sha256 of the first and the last MiB, 20 hex digits>``, never another file's (same size,
    same modification time); a bare file name with a checkpoint suffix is a path, made absolute."""
    import hashlib
    import os

    from lvmbench import weights

    mib = 2**20
    data = bytes(range(256)) * (3 * mib // 256) + b"tail"
    path = _ckpt(tmp_path / "big.pt", data)
    assert weights.file_identity(path) == f"file:{len(data)}:{hashlib.sha256(data[:mib] + data[-mib:]).hexdigest()[:20]}"
    twin = _ckpt(tmp_path / "twin.pt", data[:-4] + b"TAIL")
    st = os.stat(path)
    os.utime(twin, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert weights.file_identity(twin) != weights.file_identity(path)
    monkeypatch.chdir(tmp_path)
    assert weights.resolve_pretrained("big.pt") == str(path)
    assert weights.resolve_pretrained("ckpt/last") == str(tmp_path / "ckpt" / "last")  # no suffix: a path all the same
