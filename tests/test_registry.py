"""Adding a method is one registration: the CLI, the Launch form, sweeps, the config profiles, the
training child's builder lookup and the tables all read the method registry; the registry is a leaf."""
from __future__ import annotations

import pytest
from textual.widgets import Select

from lvmbench import cli, config
from lvmbench.methods import METHODS, register_method
from lvmbench.methods.decoder import decoder_task
from lvmbench.store import open_writer
from lvmbench.store.ingest import ingest_dir
from lvmbench.train.loop import train_run

from .conftest import make_run


@pytest.fixture
def toy():
    """A toy decoder method with its own loss, sampler and defaults, registered for one test."""
    info = register_method("toy", "decoder", "Toy decoder with a one-block decoder", builder=decoder_task,
                           loss="focal", sampler="balanced", defaults={"decoder.depth": 1},
                           dataset_defaults={"mnist-lt": {"train.lr": 0.05}}, reference="Nobody et al. 2026")
    yield info
    del METHODS["toy"]


def test_a_method_is_registered_once_with_a_known_kind():
    with pytest.raises(ValueError, match="registered twice"):
        register_method("ce", "decoder", "again", builder=decoder_task)
    with pytest.raises(ValueError, match="kind 'nope'"):
        register_method("toy2", "nope", "a kind nobody trains", builder=decoder_task)
    assert "toy2" not in METHODS


def test_its_defaults_reach_the_spec(toy):
    spec = config.resolve("mnist-lt", "tiny-clip", "toy")
    assert (spec["loss"], spec["decoder.depth"], spec["train.lr"]) == ("focal", 1, 0.05)
    assert config.resolve("imagenet-lt", "tiny-clip", "toy")["train.lr"] == 0.03  # the dataset's own only


def test_list_methods_and_sweep_presets_take_it(toy, store, capsys):
    assert cli.main(["list", "methods"]) == 0
    listed = capsys.readouterr().out
    assert any(line.split()[:1] == ["toy"] for line in listed.splitlines()) and "Nobody" in listed
    assert cli.main(["sweep", "--preset", "embedded", "--method", "toy,ce", "--seed", "0,1", "--dry-run"]) == 0
    assert capsys.readouterr().out.count(" toy ") == 2


async def test_the_launch_form_offers_it(toy, toy_dataset, tmp_path):
    from lvmbench.tui.app import LvmbenchApp

    app = LvmbenchApp(results=tmp_path / "results.duckdb", runs_dir=tmp_path / "runs", poll_s=60)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f1")
        await pilot.pause()
        app.screen.query_one("#method", Select).value = "toy"  # refused if the form does not offer it
        app.screen.query_one("#dataset", Select).value = "toy-lt"
        await pilot.pause()
        assert "(Nobody et al. 2026)" in str(app.screen.query_one("#method-info").render())
        assert app.screen.query_one("#decoder-depth").placeholder == "1"
        assert app.screen.query_one("#train-iters").placeholder == "7"  # the toy dataset's default


def test_it_trains_through_its_builder_and_shows_in_the_table(toy, store, random_tiny_clip, capsys):
    results, runs = store
    run = make_run(runs, "toy", random_tiny_clip)
    assert train_run(run)["status"] == "finished"
    with open_writer(results) as con:
        ingest_dir(con, runs)
    assert cli.main(["table", "main", "--format", "csv"]) == 0
    rows = [line.split(",") for line in capsys.readouterr().out.splitlines()]
    assert any("toy" in row for row in rows)


@pytest.fixture
def toy_dataset():
    """A dataset registered for one test: mnist-lt's images through a loader of its own."""
    from lvmbench import catalog
    from lvmbench.data import mnist_lt

    loaded = []
    info = catalog.register_dataset("toy-lt", "Toy digits", loader=lambda **kw: loaded.append(kw) or mnist_lt.load(**kw),
                                    defaults={"train.iters": 7})
    yield info, loaded
    del catalog.DATASETS["toy-lt"]


def test_a_dataset_is_one_registration(toy_dataset, store, capsys):
    from lvmbench.data import build_dataset

    info, loaded = toy_dataset
    spec = config.resolve("toy-lt", "tiny-clip", "ce")
    assert spec["train.iters"] == 7
    assert build_dataset(spec).num_classes == 10 and loaded[0]["name"] == "toy-lt"
    assert cli.main(["list", "datasets"]) == 0
    assert "toy-lt" in capsys.readouterr().out
    with pytest.raises(ValueError, match="registered twice"):
        from lvmbench import catalog

        catalog.register_dataset("toy-lt", "again", loader=info.loader)
