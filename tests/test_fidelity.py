"""The two recipes against their sources.

``paper`` is what the study's released code ran (Imbalance-VLM/Imbalance-VLM); ``reference`` is each
method as its authors' code defines it. The formulas below are re-implemented here from those sources
(never by calling lvmbench), and lvmbench's code is checked against them.
"""
import math
import subprocess
import sys

import pytest
import torch

from lvmbench import catalog, config
from lvmbench.errors import UserError


# --------------------------------------------------------------------------- recipe key


def test_unknown_recipe_is_one_line_naming_both():
    with pytest.raises(UserError) as err:
        config.parse_sets(["recipe=papper"])
    message = str(err.value)
    assert "\n" not in message and "paper" in message and "reference" in message
    with pytest.raises(UserError, match="unknown recipe 'x'"):
        config.resolve("mnist-lt", "tiny-clip", "ce", overrides={"recipe": "x"})


def test_unknown_recipe_on_the_command_line_stores_nothing(tmp_path):
    env = {"LVMBENCH_RESULTS": str(tmp_path / "r.duckdb"), "LVMBENCH_RUNS": str(tmp_path / "runs"),
           "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "lvmbench", "run", "--headless", "--set", "recipe=nope"],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "paper" in lines[0] and "reference" in lines[0]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "r.duckdb").exists()


def test_every_key_a_recipe_sets_is_a_spec_key_in_the_hash():
    keys = set()
    for name in config.RECIPES:
        chosen = config.recipe_settings(name)
        for profile in [chosen["settings"], *chosen["methods"].values(), *chosen["datasets"].values()]:
            keys |= set(profile)
    assert keys - {k for k in keys if k.startswith("loss.")} <= set(config.SCHEMA)
    paper = config.resolve("mnist-lt", "tiny-clip", "crt")
    reference = config.resolve("mnist-lt", "tiny-clip", "crt", overrides={"recipe": "reference"})
    assert paper["recipe"] == "paper" and reference["recipe"] == "reference"
    assert config.config_hash(paper) != config.config_hash(reference)
    differ = {k for k in paper if paper[k] != reference[k]}
    assert differ == {"recipe", "sampler.balanced", "crt.reinit", "disalign.confidence_init", "train.decay_params",
                      "marc.eval_norm", "data.decode"}


def test_recipe_profiles_resolve_per_method_and_dataset():
    ldam = config.resolve("mnist-lt", "tiny-clip", "ldam")
    assert (ldam["head.kind"], ldam["loss.s"], ldam["loss.drw_start"]) == ("linear", 1.0, None)
    ldam = config.resolve("mnist-lt", "tiny-clip", "ldam", overrides={"recipe": "reference"})
    assert (ldam["head.kind"], ldam["head.scale"], ldam["loss.s"], ldam["loss.drw_start"]) == ("cosine", 1.0, 30.0, 0.8)
    # The user's --set wins over the recipe.
    ldam = config.resolve("mnist-lt", "tiny-clip", "ldam", overrides={"recipe": "reference", "loss.drw_start": None})
    assert ldam["loss.drw_start"] is None
    assert config.resolve("inat18", "ViT-B-16", "ce")["train.select"] == "test"
    assert config.resolve("inat18", "ViT-B-16", "ce", overrides={"recipe": "reference"})["train.select"] == "val"
    assert config.resolve("places-lt", "ViT-B-16", "ce")["train.select"] == "val"


# --------------------------------------------------------------------------- schedule


def usb_cosine_factor(current_step, num_training_steps, num_warmup_steps, num_cycles=7.0 / 16.0):
    """USB's get_cosine_schedule_with_warmup (imblearn/core/utils/build.py), written from the source."""
    if current_step < num_warmup_steps:
        return float(current_step) / float(max(1, num_warmup_steps))
    progress = float(current_step - num_warmup_steps) / float(max(1, num_training_steps - num_warmup_steps))
    return max(0.0, math.cos(math.pi * num_cycles * progress))


@pytest.mark.parametrize("recipe", config.RECIPES)
def test_lr_factor_at_every_step_is_the_studys(recipe):
    from lvmbench.train.loop import lr_factor

    spec = config.resolve("imagenet-lt", "ViT-L-14", "ce", overrides={"recipe": recipe})
    iters, warmup, cycles = spec["train.iters"], spec["train.warmup_iters"], spec["train.cosine_cycles"]
    assert (iters, warmup) == (8192, 512)
    for step in range(iters):
        assert lr_factor(step, warmup, iters, cycles) == pytest.approx(usb_cosine_factor(step, iters, warmup), abs=1e-12)
    assert lr_factor(iters - 1, warmup, iters, cycles) == pytest.approx(0.1953, abs=1e-3)


def test_scheduler_in_the_loop_follows_the_factor():
    """The loop's LambdaLR gives step s (0-based) the factor of s, as USB's scheduler does."""
    from lvmbench.train.loop import lr_factor

    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.03)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, 8, 40))
    for step in range(40):
        assert opt.param_groups[0]["lr"] == pytest.approx(0.03 * usb_cosine_factor(step, 40, 8))
        opt.step()
        sched.step()


# --------------------------------------------------------------------------- decoder


def test_decoder_is_timm_blocks_without_a_final_norm():
    from timm.models.vision_transformer import Block

    from lvmbench.models.decoder import Decoder

    torch.manual_seed(0)
    decoder = Decoder(64, depth=3, heads=4, mlp_ratio=0.5)
    blocks = torch.nn.Sequential(*[Block(64, 4, mlp_ratio=0.5, qkv_bias=True) for _ in range(3)])
    blocks.load_state_dict(decoder.blocks.state_dict())
    tokens = torch.randn(2, 17, 64)
    decoder.eval(), blocks.eval()
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in decoder.modules() if m not in decoder.blocks.modules())
    torch.testing.assert_close(decoder(tokens), blocks(tokens)[:, 0], rtol=0, atol=0)
    normed = Decoder(64, depth=3, heads=4, mlp_ratio=0.5, final_norm=True)
    assert isinstance(normed.norm, torch.nn.LayerNorm)


# --------------------------------------------------------------------------- losses
# Re-implemented in float64 from the sources: the study's imblearn/algorithms/supervised/utils.py
# (freq = counts / N, cls_num = counts) for paper; for reference: kaidic/LDAM-DRW losses.py,
# hyperconnect/LADE loss/{PriorCELoss,LADELoss}.py, jiawei-ren/BalancedMetaSoftmax-Classification
# loss/BalancedSoftmaxLoss.py, DisAlign's GRW cross-entropy, Lin et al.'s focal loss, Menon et al.'s
# logit adjustment. The study's plain-CE, CBW, focal, balanced-softmax and GRW rows are those formulas too.

F = torch.nn.functional
COUNTS = torch.tensor([400.0, 90.0, 30.0, 7.0, 2.0, 1.0])


def remine_regulariser(u, y, prior, lam=0.1):
    """-sum_c pi_c (first_c - second_c - lam second_c^2), as both sources write it (pred_spread on u)."""
    c = u.shape[1]
    member = (y == torch.arange(c).view(-1, 1))                          # C x N
    x_p = u.T * member
    x_q = (u - torch.log(prior + 1e-9) + torch.log(torch.tensor(1.0 / c, dtype=u.dtype) + 1e-9)).T
    first = x_p.sum(-1) / (member.sum(-1).to(u.dtype) + 1e-8)
    second = torch.logsumexp(x_q, -1) - math.log(x_p.shape[-1])
    return -torch.sum((first - second - lam * second ** 2) * prior)


def study_lade(z, y, freq, alpha=0.1):
    z = z + freq.log()  # the study overwrites the logits with the prior-adjusted ones, for both terms
    return F.cross_entropy(z, y) + alpha * remine_regulariser(z, y, freq)


def authors_lade(z, y, counts, alpha=0.1):
    prior = counts / counts.sum()
    ce = F.cross_entropy(z + torch.log(prior + 1e-9), y)                # PriorCELoss on the raw logits
    return ce + alpha * remine_regulariser(z, y, prior)


def ldam(z, y, counts, s, weight=None, max_m=0.5):
    m_list = 1.0 / torch.sqrt(torch.sqrt(counts))
    m_list = m_list * (max_m / torch.max(m_list))
    index = F.one_hot(y, z.shape[1]).bool()
    output = torch.where(index, z - m_list[y].view(-1, 1), z)
    return F.cross_entropy(s * output, y, weight=weight)


def drw_weights(counts, beta=0.9999):
    w = (1.0 - beta) / (1.0 - torch.pow(beta, counts))
    return w / w.sum() * len(counts)


def focal(z, y, gamma=2.0):
    pred = F.softmax(z, dim=-1)
    return torch.sum(-F.one_hot(y, z.shape[1]) * (1 - pred) ** gamma * torch.log(pred), dim=-1).mean()


def cbw(z, y, counts):
    freq = counts / counts.sum()
    return F.cross_entropy(z, y, weight=freq.sum() / (freq.shape[0] * freq))


def grw(z, y, counts, rho=1.2):
    freq = counts / counts.sum()
    w = 1 / freq ** rho
    return F.cross_entropy(z, y, weight=w / w.sum() * z.shape[1])


SOURCES = {
    ("ce", "paper"): lambda z, y, n: F.cross_entropy(z, y),
    ("ce", "reference"): lambda z, y, n: F.cross_entropy(z, y),
    ("cbw", "paper"): cbw, ("cbw", "reference"): cbw,
    ("focal", "paper"): lambda z, y, n: focal(z, y), ("focal", "reference"): lambda z, y, n: focal(z, y),
    ("balanced_softmax", "paper"): lambda z, y, n: F.cross_entropy(z + (n / n.sum()).log(), y),
    ("balanced_softmax", "reference"): lambda z, y, n: F.cross_entropy(z + n.log(), y),
    ("grw", "paper"): grw, ("grw", "reference"): grw,
    ("logit_adjust", "paper"): lambda z, y, n: F.cross_entropy(z + (n / n.sum()).log(), y),
    ("logit_adjust", "reference"): lambda z, y, n: F.cross_entropy(z + (n / n.sum()).log(), y),
    ("lade", "paper"): lambda z, y, n: study_lade(z, y, n / n.sum()),
    ("lade", "reference"): authors_lade,
    ("ldam", "paper"): lambda z, y, n: ldam(z, y, n, s=1.0),           # the study ignores s, has no DRW
    ("ldam", "reference"): lambda z, y, n: ldam(z, y, n, s=30.0),       # before DRW starts
}


def _batch(seed, n=24, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, len(COUNTS), generator=g, dtype=torch.float64) * scale
    targets = torch.randint(0, len(COUNTS), (n,), generator=g)
    targets[:3] = torch.tensor([0, 1, 2])  # classes 3-5 may be missing: LADE's empty-class terms
    return logits, targets


def _compare(ours, source, logits, targets):
    z32 = logits.float().clone().requires_grad_()
    got = ours(z32, targets)
    got.backward()
    z64 = logits.clone().requires_grad_()
    want = source(z64, targets)
    want.backward()
    assert got.item() == pytest.approx(want.item(), abs=1e-5, rel=1e-5)
    torch.testing.assert_close(z32.grad.double(), z64.grad, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name,recipe", sorted(SOURCES))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_and_gradient_match_the_source(name, recipe, seed):
    from lvmbench.methods.losses import build_loss

    logits, targets = _batch(seed, scale=0.1 if (name, recipe) == ("ldam", "reference") else 3.0)
    source = SOURCES[(name, recipe)]
    _compare(build_loss(name, COUNTS.tolist(), recipe=recipe), lambda z, y: source(z, y, COUNTS.double()),
             logits, targets)


def test_ldam_reference_reweights_after_drw_start():
    from lvmbench.methods.losses import build_loss

    loss = build_loss("ldam", COUNTS.tolist(), recipe="reference")
    assert (loss.s, loss.drw_start) == (30.0, 0.8)
    logits, targets = _batch(5, scale=0.1)
    loss.set_progress(0.79)
    _compare(loss, lambda z, y: ldam(z, y, COUNTS.double(), 30.0), logits, targets)
    loss.set_progress(0.8)
    _compare(loss, lambda z, y: ldam(z, y, COUNTS.double(), 30.0, drw_weights(COUNTS.double())), logits, targets)
    paper = build_loss("ldam", COUNTS.tolist())
    paper.set_progress(1.0)
    _compare(paper, lambda z, y: ldam(z, y, COUNTS.double(), 1.0), logits, targets)


def test_recipes_differ_where_the_sources_do():
    from lvmbench.methods.losses import build_loss

    logits, targets = _batch(7)
    for name in ("lade", "ldam"):
        a = build_loss(name, COUNTS.tolist(), recipe="paper")(logits.float(), targets)
        b = build_loss(name, COUNTS.tolist(), recipe="reference")(logits.float(), targets)
        assert abs(a.item() - b.item()) > 1e-3, name
    with pytest.raises(ValueError, match="paper, reference"):
        build_loss("ce", COUNTS.tolist(), recipe="papers")


# --------------------------------------------------------------------------- cRT, stage 2, sampler


@pytest.mark.parametrize("recipe,is_vit,reinit", [("paper", True, False), ("paper", False, True),
                                                   ("reference", True, True), ("reference", False, True)])
def test_crt_head_per_recipe_and_backbone(recipe, is_vit, reinit):
    """The study's Crt_Net re-initialises the classifier only when the net's name says ResNet; the
    authors' cRT (classifier-balancing, stage1_weights: false) always trains a fresh nn.Linear."""
    from lvmbench.methods.stage2 import crt_reinit
    from lvmbench.models.classifier import DecoderClassifier, Stage2Classifier

    spec = config.resolve("mnist-lt", "tiny-clip", "crt", overrides={"recipe": recipe})
    assert crt_reinit(spec, is_vit) is reinit
    torch.manual_seed(0)
    stage1 = DecoderClassifier(32, 7, depth=1, heads=4)
    before = stage1.head.weight.detach().clone()
    model = Stage2Classifier(stage1, reinit_head=crt_reinit(spec, is_vit))
    head = model.stage1.head
    assert head.weight.requires_grad and head.bias.requires_grad
    assert not any(p.requires_grad for p in model.stage1.decoder.parameters())
    assert torch.equal(head.weight, before) is not reinit
    if reinit:  # a new nn.Linear: U(-1/sqrt(D), 1/sqrt(D)) weights and bias
        bound = 1 / math.sqrt(32)
        assert head.weight.abs().max() <= bound and head.bias.abs().max() <= bound
        assert head.weight.std() > 0.5 * bound / math.sqrt(3)


def test_disalign_confidence_init_per_recipe():
    from lvmbench.methods.stage2 import DisAlign

    torch.manual_seed(0)
    paper = DisAlign(5, 16, config.resolve("mnist-lt", "tiny-clip", "disalign")["disalign.confidence_init"])
    reference = DisAlign(5, 16, config.resolve("mnist-lt", "tiny-clip", "disalign",
                                               overrides={"recipe": "reference"})["disalign.confidence_init"])
    assert torch.all(reference.confidence.weight == 0.1)
    assert paper.confidence.weight.abs().max() <= 1 / 4 and len(set(paper.confidence.weight.flatten().tolist())) > 1
    assert paper.scale.shape == (1, 5) and paper.bias.shape == (1, 5)


@pytest.mark.parametrize("recipe", config.RECIPES)
@pytest.mark.parametrize("method", ["lws", "disalign", "marc"])
def test_stage2_weight_decay_per_recipe(recipe, method):
    """paper: the study's optimizer decays tensors of 2+ dimensions (DisAlign's and MARC's [1, C] scale
    and bias; not LWS's [C] scales); reference: the authors' optimizers decay every parameter."""
    from lvmbench.methods import stage2
    from lvmbench.train.loop import build_optimizer

    spec = config.resolve("mnist-lt", "tiny-clip", method, overrides={"recipe": recipe})
    adjuster = {"lws": lambda: stage2.LWS(5), "disalign": lambda: stage2.DisAlign(5, 16),
                "marc": lambda: stage2.MARC(torch.randn(5, 16))}[method]()
    opt = build_optimizer(spec, list(adjuster.parameters()), torch.device("cpu"))
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    names = {n for n, p in adjuster.named_parameters() if id(p) in decayed}
    expected = {"paper": {"lws": set(), "disalign": {"scale", "bias", "confidence.weight"}, "marc": {"a", "b"}},
                "reference": {"lws": {"scale"}, "disalign": {"scale", "bias", "confidence.weight", "confidence.bias"},
                              "marc": {"a", "b"}}}[recipe][method]
    assert names == expected


def test_stage1_of_a_reference_stage2_run_is_the_plain_ce_run():
    from lvmbench.runs import plan

    crt = config.resolve("mnist-lt", "tiny-clip", "crt", overrides={"recipe": "reference"})
    ce = config.resolve("mnist-lt", "tiny-clip", "ce", overrides={"recipe": "reference"})
    assert config.config_hash(plan.stage1_spec(crt)) == config.config_hash(ce)


def _shares(labels, drawn):
    import numpy as np

    counts = np.bincount(labels)
    group = np.where(counts > 100, 0, np.where(counts < 20, 2, 1))
    return np.bincount(group[labels[drawn]], minlength=3) / len(drawn)


def _study_sampler_epoch(labels, total, g):
    """The study's WeightedDistributedSampler.__iter__ (replacement=False), written from the source."""
    import numpy as np

    counts = np.bincount(labels)
    weights = torch.tensor(1.0 / counts[labels])
    n = len(labels)
    parts = [torch.multinomial(weights, n, generator=g, replacement=False) for _ in range(total // n)]
    parts.append(torch.multinomial(weights, n, generator=g, replacement=False)[:total % n])
    return torch.cat(parts).numpy()


@pytest.mark.parametrize("recipe", config.RECIPES)
def test_balanced_sampler_class_shares_per_recipe(recipe):
    import numpy as np

    from lvmbench.train.batches import StepBatchSampler

    counts = np.repeat([400, 120, 60, 25, 10, 3], [4, 4, 6, 6, 10, 10])
    labels = np.random.default_rng(0).permutation(np.repeat(np.arange(len(counts)), counts))
    n, batch, steps = len(labels), 64, 32 * 60  # 60 steps per study epoch: 3840 draws, 1.2 x the train set
    spec = config.resolve("mnist-lt", "tiny-clip", "crt", overrides={"recipe": recipe})
    sampler = StepBatchSampler(labels, batch, "balanced", 0, steps, balanced=spec["sampler.balanced"])
    drawn = np.concatenate([sampler.batch(s) for s in range(steps)])
    got = _shares(labels, drawn)
    instance = _shares(labels, np.arange(n))
    if recipe == "reference":  # a class drawn uniformly: each group's share is its share of classes
        per_class = np.bincount(labels[drawn], minlength=len(counts)) / len(drawn)
        assert np.abs(per_class - 1 / len(counts)).max() < 0.006
        assert got == pytest.approx([8 / 40, 12 / 40, 20 / 40], abs=0.01)
    else:  # close to instance sampling, leaning a little towards the tail, as the study's sampler does
        g = torch.Generator().manual_seed(0)
        study = np.concatenate([_study_sampler_epoch(labels, 60 * batch, g) for _ in range(32)])
        want = _shares(labels, study)
        assert got == pytest.approx(want, abs=0.01)
        assert got[0] < instance[0] and got[2] > instance[2] and got[0] > 0.5
        # a whole number of passes over the train set draws every sample equally often
        exact = StepBatchSampler(labels, n // 4, "balanced", 0, 32 * 4, balanced="study")
        whole = np.concatenate([exact.batch(s) for s in range(4)])
        assert np.array_equal(np.sort(whole), np.arange(n))


def test_cbs_row_is_in_every_paper_preset():
    from lvmbench import catalog
    from lvmbench.exec.presets import PRESETS

    cbs = catalog.method("cbs")
    assert (cbs.kind, cbs.loss, cbs.sampler, cbs.stage) == ("decoder", "ce", "balanced", 1)
    for name, preset in PRESETS.items():
        if name.startswith("paper") and name != "paper-lift":  # the study's presets (paper-lift is LIFT's)
            assert "cbs" in preset.methods, name


# --------------------------------------------------------------------------- store and tables


def _stored_run(runs, method, recipe, overall, few, dataset="mnist-lt", selected_on="val", seed=0, **sets):
    import json

    from lvmbench.runs import plan

    spec = config.resolve(dataset, "tiny-clip", method, seed=seed, overrides={"recipe": recipe, **sets})
    run = plan.prepare(spec, runs)
    run.write_status(status="finished", started_at=1_700_000_000, ended_at=1_700_000_060, stage=1,
                     selected_on=selected_on, best_step=100)
    ev = {"split": "test", "overall": overall, "many": 90.0, "medium": 40.0, "few": few, "precision": 55.0,
          "recall": overall, "f1": 50.0, "worst_class": 1.0, "n_samples": 1000}
    (run.eval_dir / "test.json").write_text(json.dumps(ev))
    return run


def test_recipes_are_stored_and_never_averaged_together(tmp_path):
    from lvmbench.store import open_readonly, open_writer, tables
    from lvmbench.store.ingest import ingest_dir

    runs, db = tmp_path / "runs", tmp_path / "r.duckdb"
    _stored_run(runs, "lade", "paper", 60.0, 20.0)
    _stored_run(runs, "lade", "reference", 64.0, 30.0)
    _stored_run(runs, "ce", "paper", 50.0, 5.0)
    with open_writer(db) as con:
        ingest_dir(con, runs)
    with open_readonly(db) as con:
        stored = con.execute("SELECT method, recipe, selected_on FROM runs ORDER BY method, recipe").fetchall()
        assert stored == [("ce", "paper", "val"), ("lade", "paper", "val"), ("lade", "reference", "val")]
        main = tables.build(con, "main")
        assert [(r[0], r[4]) for r in main.rows] == [("ce", 50.0), ("lade", 60.0), ("lade (reference)", 64.0)]
        assert main.notes == []
        recipes = tables.build(con, "recipes")
    assert recipes.columns[3:] == ["Overall paper", "Overall ref.", "Δ overall", "Δ method", "Δ preproc.",
                                   "Few paper", "Few ref.", "Δ few", "Δ few method", "Δ few preproc."]
    by_method = {r[0]: r[3:] for r in recipes.rows}
    # mnist-lt reads open_clip's preprocessing under both recipes: the whole difference is the method's
    assert by_method["lade"] == pytest.approx([60.0, 64.0, 4.0, 4.0, 0.0, 20.0, 30.0, 10.0, 10.0, 0.0])
    assert by_method["ce"][:2] == [50.0, None] and by_method["ce"][2] is None


def test_table_recipes_splits_the_difference_into_method_and_preprocessing(tmp_path):
    """reference switches ImageNet-LT to open_clip's preprocessing; a reference run with the study's shows
    how much of the difference is the method's."""
    from lvmbench.store import open_readonly, open_writer, tables
    from lvmbench.store.ingest import ingest_dir

    runs, db = tmp_path / "runs", tmp_path / "r.duckdb"
    _stored_run(runs, "lade", "paper", 60.0, 20.0, dataset="imagenet-lt")
    _stored_run(runs, "lade", "reference", 64.0, 30.0, dataset="imagenet-lt")
    _stored_run(runs, "lade", "reference", 61.0, 26.0, dataset="imagenet-lt", **{"data.transform": "study"})
    with open_writer(db) as con:
        ingest_dir(con, runs)
    with open_readonly(db) as con:
        recipes = tables.build(con, "recipes")
    assert [r[0] for r in recipes.rows] == ["lade"]
    assert recipes.rows[0][3:] == pytest.approx([60.0, 64.0, 4.0, 1.0, 3.0, 20.0, 30.0, 10.0, 6.0, 4.0])


def test_runs_selected_on_test_are_marked(tmp_path):
    from lvmbench.store import open_readonly, open_writer, tables
    from lvmbench.store.ingest import ingest_dir

    runs, db = tmp_path / "runs", tmp_path / "r.duckdb"
    _stored_run(runs, "ce", "paper", 50.0, 5.0, selected_on="test")
    _stored_run(runs, "lade", "paper", 60.0, 20.0)
    with open_writer(db) as con:
        ingest_dir(con, runs)
    with open_readonly(db) as con:
        main = tables.build(con, "main")
        assert [r[0] for r in main.rows] == ["ce †", "lade"]
        assert main.notes == ["† selected on the test split, as the study's code does"]
        assert tables.build(con, "recipes").notes[0] == main.notes[0]


def test_table_recipes_on_the_command_line(tmp_path):
    from lvmbench.store import open_writer
    from lvmbench.store.ingest import ingest_dir

    runs, db = tmp_path / "runs", tmp_path / "r.duckdb"
    _stored_run(runs, "lade", "paper", 60.0, 20.0)
    _stored_run(runs, "lade", "reference", 64.0, 30.0)
    with open_writer(db) as con:
        ingest_dir(con, runs)
    out = subprocess.run([sys.executable, "-m", "lvmbench", "table", "recipes", "--dataset", "mnist-lt",
                          "--results", str(db)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "lade" in out.stdout and "4.00" in out.stdout and "10.00" in out.stdout
    assert "Δ = reference - paper" in out.stdout


# --------------------------------------------------------------------------- preprocessing


def test_transform_per_recipe_dataset_and_method():
    assert config.resolve("imagenet-lt", "ViT-L-14", "ce")["data.transform"] == "study"
    assert config.resolve("imagenet-lt", "ViT-L-14", "ce", overrides={"recipe": "reference"})["data.transform"] == "open_clip"
    assert config.resolve("imagenet-lt", "ViT-L-14", "zeroshot")["data.transform"] == "open_clip"
    assert config.resolve("mnist-lt", "tiny-clip", "ce")["data.transform"] == "open_clip"


def test_study_transforms_are_the_studys():
    """imblearn/datasets/cv_datasets/places.py and inaturalist.py: get_data_transform."""
    from torchvision import transforms as T

    from lvmbench.data.transforms import study_transforms

    train = study_transforms("places-lt", 224, True).transforms
    assert isinstance(train[0], T.RandomResizedCrop) and train[0].size == (224, 224)
    assert train[0].scale == (0.08, 1.0) and train[0].interpolation == T.InterpolationMode.BILINEAR
    assert isinstance(train[1], T.RandomHorizontalFlip)
    assert (train[-1].mean, train[-1].std) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    val = study_transforms("imagenet-lt", 224, False).transforms
    assert val[0].size == 256 and val[0].interpolation == T.InterpolationMode.BILINEAR and val[1].size == (224, 224)
    inat = study_transforms("inat18", 224, False).transforms[-1]
    assert (inat.mean, inat.std) == ((0.466, 0.471, 0.380), (0.195, 0.194, 0.192))


def test_decoder_and_head_init_are_the_studys():
    """Decoder blocks and classifier as Hugging Face's from_pretrained leaves them in the study's net:
    PyTorch's default Linear weights (|w| <= 1/sqrt(fan_in)), zero biases, LayerNorm 1 and 0."""
    from lvmbench.models.classifier import DecoderClassifier

    torch.manual_seed(0)
    model = DecoderClassifier(64, 10, depth=2, heads=4)
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear):
            bound = 1 / math.sqrt(m.in_features)
            assert m.weight.abs().max() <= bound and m.weight.abs().max() > 0.9 * bound, name
            assert m.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.15), name
            assert torch.all(m.bias == 0), name
        if isinstance(m, torch.nn.LayerNorm):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    timm = DecoderClassifier(64, 10, depth=2, heads=4, init="timm")
    assert timm.head.weight.std().item() == pytest.approx(0.02, rel=0.15)


# --------------------------------------------------------------------------- MARC's final evaluation


class StudyMarcNet(torch.nn.Module):
    """The study's ``MARC_Net`` (imblearn/algorithms/supervised/utils.py) on a bare classifier: ``w_norm`` is a
    plain tensor read from the classifier the net holds when it is built (not a buffer: load_state_dict
    leaves it alone)."""

    def __init__(self, classifier: torch.nn.Linear, num_classes: int):
        super().__init__()
        self.backbone = classifier
        self.a = torch.nn.Parameter(torch.ones(1, num_classes))
        self.b = torch.nn.Parameter(torch.zeros(1, num_classes))
        self.w_norm = torch.norm(self.backbone.weight.data, dim=1)

    def forward(self, x):
        return self.a * self.backbone(x) + self.b * self.w_norm


def study_eval_py_logits(trained: StudyMarcNet, x: torch.Tensor, seed: int) -> torch.Tensor:
    """eval.py: build a fresh net (get_net_builder: a new classifier, PyTorch's default init), wrap it in
    MARC_Net, then load the trained checkpoint; the logits it scores."""
    width, classes = trained.backbone.in_features, trained.backbone.out_features
    torch.manual_seed(seed)
    net = StudyMarcNet(torch.nn.Linear(width, classes), classes)
    net.load_state_dict(trained.state_dict())
    return net(x)


@pytest.mark.parametrize("recipe", config.RECIPES)
def test_marc_final_evaluation_reads_the_norms_the_studys_eval_py_reads(recipe):
    from lvmbench.methods import stage2

    spec = config.resolve("imagenet-lt", "ViT-B-16", "marc", overrides={"recipe": recipe})
    assert spec["marc.eval_norm"] == {"paper": "fresh", "reference": "stage1"}[recipe]
    torch.manual_seed(0)
    classifier = torch.nn.Linear(16, 6)
    with torch.no_grad():
        classifier.weight.mul_(torch.linspace(0.5, 3.0, 6)[:, None])  # trained rows of unequal norms
    study = StudyMarcNet(classifier, 6)  # training: the stage-1 classifier's norms, in both codes
    ours = stage2.MARC(classifier.weight, spec["marc.eval_norm"], seed=5)
    with torch.no_grad():
        for net in (study, ours):
            net.a.copy_(torch.linspace(0.8, 1.2, 6)[None])
            net.b.copy_(torch.linspace(-2.0, 2.0, 6)[None])
    x = torch.randn(4, 16)
    torch.testing.assert_close(ours(x, classifier(x)), study(x))
    ours.final_evaluation()
    expected = study_eval_py_logits(study, x, seed=5) if recipe == "paper" else study(x)
    torch.testing.assert_close(ours(x, classifier(x)), expected)
    if recipe == "paper":  # the fresh norms are all about 1/sqrt(3), far from the trained ones
        assert ours.weight_norm.std() < 0.1 and not torch.allclose(ours.weight_norm, study.w_norm)


def test_lade_on_inaturalist_under_reference_takes_the_authors_inaturalist_config():
    """hyperconnect/LADE config/iNaturalist18/lade.yaml: RouteWeightLoss weight 0.05, remine_lambda 0.5;
    config/ImageNet_LT and config/Places_LT/lade.yaml: 0.1 and 0.1."""
    def hparams(dataset, recipe):
        spec = config.resolve(dataset, "ViT-B-16", "lade", overrides={"recipe": recipe})
        return spec.get("loss.alpha", 0.1), spec.get("loss.remine_lambda", 0.1)

    assert hparams("inat18", "reference") == (0.05, 0.5)
    assert hparams("imagenet-lt", "reference") == hparams("places-lt", "reference") == (0.1, 0.1)
    assert hparams("inat18", "paper") == (0.1, 0.1)  # the study's generator sets no per-dataset value


def test_a_marc_run_stored_before_the_setting_counts_as_stage1_norms():
    """A spec written before marc.eval_norm (or train.schedule) existed is the run it was: the stage-1 norms
    and the study's schedule, one identity with a new run that asks for them, not with today's default."""
    now = config.resolve("mnist-lt", "tiny-clip", "marc")
    old = {k: v for k, v in now.items() if k not in ("marc.eval_norm", "train.schedule", "train.epochs")}
    asked = config.resolve("mnist-lt", "tiny-clip", "marc", overrides={"marc.eval_norm": "stage1"})
    assert config.config_hash(old) == config.config_hash(asked) != config.config_hash(now)
    assert config.result_group(old) == config.result_group(asked)
