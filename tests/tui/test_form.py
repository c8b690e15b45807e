"""The Launch form: defaults shown, every bad value rejected with its message before anything starts."""
from __future__ import annotations

import pytest

from lvmbench import catalog, config
from lvmbench.tui import form
from lvmbench.tui.jobs import LaunchRequest

VALID = {"dataset": "mnist-lt", "method": "ce", "backbone": "tiny-clip", "pretrained": "", "data_root": "",
         "seed": "", "train.iters": "", "train.batch_size": "", "train.lr": "", "decoder.depth": "", "sets": ""}


def test_defaults_layer_study_dataset_and_method_profiles():
    assert form.default_for("train.iters", "mnist-lt", "ce") == 300  # the embedded dataset's profile
    assert form.default_for("train.iters", "imagenet-lt", "ce") == 8192  # the study's recipe
    assert form.default_for("train.lr", "mnist-lt", "full_finetune") == 3e-4  # the pair's profile wins
    assert form.default_for("decoder.depth", "places-lt", "lade") == 3
    assert form.default_pretrained("tiny-clip") == "embedded" and form.default_pretrained("ViT-B-16") == "openai"


@pytest.mark.parametrize("dataset", sorted(catalog.DATASETS))
def test_the_forms_defaults_are_what_a_run_gets_for_every_method(dataset):
    for method in catalog.METHODS:
        spec = config.resolve(dataset, "tiny-clip", method)
        shown = {key: form.default_for(key, dataset, method) for key in form.HPARAMS}
        assert shown == {key: spec[key] for key in form.HPARAMS}, method


@pytest.mark.parametrize("field,text,message", [
    ("seed", "-1", "an integer between 0 and 4294967295"),
    ("seed", "x", "an integer between 0 and 4294967295"),
    ("seed", "99999999999999999999", "99999999999999999999: must be between 0 and 4294967295"),
    ("train.iters", "99999999999999999999", "train.iters=99999999999999999999: out of range for the results store "
                                            "(a 64-bit integer, -9223372036854775808 to 9223372036854775807)"),
    ("sets", "train.lr=0.1 train.lr=0.2", "train.lr is given twice (train.lr=0.1 and train.lr=0.2); give each key once"),
    ("backbone", "  ", "required"),
    ("train.iters", "abc", "train.iters=abc: expected int"),
    ("train.iters", "0", "train.iters=0: must be > 0"),
    ("train.lr", "-0.1", "train.lr=-0.1: must be > 0"),
    ("decoder.depth", "1.5", "decoder.depth=1.5: expected int"),
    ("pretrained", "/no/such/weights.pt", "checkpoint file not found: /no/such/weights.pt"),
    ("data_root", "/no/such/folder", "folder not found: /no/such/folder"),
    ("sets", "train.batch_size=0", "train.batch_size=0: must be > 0"),
    ("sets", "train.iters", "train.iters: expected key=value"),
])
def test_bad_values_have_one_line_messages(field, text, message):
    assert form.check(field, text) == message


def test_unknown_setting_suggests_the_closest_key():
    assert form.check("sets", "train.iter=5").startswith("unknown --set key 'train.iter' (did you mean train.iters")


@pytest.mark.parametrize("field,text", [("seed", "3"), ("pretrained", "openai"), ("pretrained", ""),
                                        ("train.lr", "0.01"), ("sets", "loss.tau=1.5 train.threads=1")])
def test_good_values_pass(field, text):
    assert form.check(field, text) is None


def test_request_from_the_form(tmp_path):
    ckpt = tmp_path / "w.pt"
    ckpt.write_bytes(b"")
    values = {**VALID, "method": "lade", "seed": "2", "pretrained": str(ckpt), "data_root": str(tmp_path),
              "train.iters": "20", "train.lr": "0.1", "sets": "train.threads=1 train.eval_every=10"}
    request, errors = form.build_request(values)
    assert errors == {}
    assert request == LaunchRequest(dataset="mnist-lt", backbone="tiny-clip", method="lade", seed=2,
                                    pretrained=str(ckpt), data_root=str(tmp_path),
                                    sets=("train.iters=20", "train.lr=0.1", "train.threads=1", "train.eval_every=10"))


def test_no_request_while_any_field_is_bad():
    request, errors = form.build_request({**VALID, "seed": "-1", "train.iters": "0"})
    assert request is None and set(errors) == {"seed", "train.iters"}


def test_empty_form_is_the_embedded_default():
    request, _ = form.build_request(VALID)
    assert request == LaunchRequest()


def test_a_setting_in_its_field_and_in_more_settings_is_refused():
    request, errors = form.build_request({**VALID, "train.iters": "20", "sets": "train.threads=1 train.iters=30"})
    assert request is None
    assert errors == {"sets": "train.iters is given twice (in its field and here); give each key once"}
