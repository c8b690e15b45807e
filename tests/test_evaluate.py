import json

import numpy as np
import pytest
import torch

from lvmbench.evaluate import SHOT_FEW, SHOT_MANY, compute_metrics, shot_groups

# Five classes; training counts put them in groups many, medium (n = 100, upper
# boundary), medium (n = 20, lower boundary), few (n = 19), few.
TRAIN = [500, 100, 20, 19, 7]

# Hand-made evaluation split (class 4 never occurs in the targets):
#   class 0: 4 samples predicted [0, 0, 0, 1] -> 3/4 correct = 75 %
#   class 1: 2 samples predicted [1, 4]       -> 1/2 correct = 50 %
#   class 2: 2 samples predicted [2, 2]       -> 2/2 correct = 100 %
#   class 3: 2 samples predicted [0, 0]       -> 0/2 correct = 0 %
TARGETS = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3]
PREDS = [0, 0, 0, 1, 1, 4, 2, 2, 0, 0]


def test_shot_groups_boundaries():
    assert (SHOT_MANY, SHOT_FEW) == (100, 20)
    assert list(shot_groups(TRAIN)) == ["many", "medium", "medium", "few", "few"]
    assert list(shot_groups(np.array([101, 0]))) == ["many", "few"]


def test_hand_made_confusion():
    r = compute_metrics(PREDS, TARGETS, TRAIN, class_names=list("abcde"))
    # overall: correct = 3 + 1 + 2 + 0 = 6 of 10 samples -> 60 %
    assert r.overall == pytest.approx(60.0)
    assert r.n_samples == 10
    # many: class 0 only -> 75; medium: classes 1, 2 -> (50 + 100) / 2 = 75;
    # few: class 3 (class 4 is absent from the split) -> 0
    assert (r.many, r.medium, r.few) == pytest.approx((75.0, 75.0, 0.0))
    # recall over present classes 0..3: (75 + 50 + 100 + 0) / 4 = 56.25
    assert r.recall == pytest.approx(56.25)
    # precision per predicted class (present classes only):
    #   0: predicted 5 times (3 from class 0, 2 from class 3), 3 right -> 60 %
    #   1: predicted 2 times (class 0, class 1), 1 right               -> 50 %
    #   2: predicted 2 times, both right                               -> 100 %
    #   3: never predicted -> 0 (zero_division=0)
    #   (4 is predicted once but is absent, so it is left out of the average)
    # macro: (60 + 50 + 100 + 0) / 4 = 52.5
    assert r.precision == pytest.approx(52.5)
    # F1 = 2PR / (P + R): class 0: 2 * .6 * .75 / 1.35 = 2/3; class 1: .5; class 2: 1; class 3: 0
    # macro: (2/3 + 1/2 + 1 + 0) / 4 = 13/24
    assert r.f1 == pytest.approx(100 * 13 / 24)
    # worst present class: class 3 at 0 %
    assert r.worst_class == pytest.approx(0.0)

    assert [row["accuracy"] for row in r.per_class] == pytest.approx([75.0, 50.0, 100.0, 0.0, None])
    assert [row["n_test"] for row in r.per_class] == [4, 2, 2, 2, 0]
    assert [row["n_correct"] for row in r.per_class] == [3, 1, 2, 0, 0]  # the confusion matrix's diagonal
    assert [row["n_train"] for row in r.per_class] == TRAIN
    assert r.per_class[4] == {"class_id": 4, "class_name": "e", "n_train": 7,
                              "accuracy": None, "n_test": 0, "n_correct": 0}


def test_recall_equals_mean_per_class_accuracy():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 5, size=200)
    preds = np.where(rng.random(200) < 0.7, targets, rng.integers(0, 5, size=200))
    r = compute_metrics(preds, targets, TRAIN)
    accs = [row["accuracy"] for row in r.per_class]
    assert r.recall == pytest.approx(np.mean(accs))
    assert r.worst_class == pytest.approx(min(accs))


def test_group_without_present_class_is_none():
    # only classes 0 (many) and 1 (medium) are evaluated
    r = compute_metrics([0, 1, 1], [0, 1, 0], TRAIN)
    assert r.few is None
    assert r.many == pytest.approx(50.0)   # class 0: 1 of 2
    assert r.medium == pytest.approx(100.0)  # class 1: 1 of 1
    assert r.overall == pytest.approx(200 / 3)


def test_tensor_inputs_and_to_dict():
    r = compute_metrics(torch.tensor(PREDS), torch.tensor(TARGETS), torch.tensor(TRAIN))
    assert r.to_dict() == compute_metrics(PREDS, TARGETS, TRAIN).to_dict()  # tensors count like lists
    d = r.to_dict()
    assert "per_class" not in d
    assert set(d) == {"overall", "many", "medium", "few", "precision", "recall", "f1",
                      "worst_class", "n_samples"}
    assert json.loads(json.dumps(d)) == d
    assert r.per_class[0]["class_name"] == "0"


def test_invalid_inputs():
    with pytest.raises(ValueError, match=r"preds must lie in \[0, 5\)"):
        compute_metrics([0, 5], [0, 1], TRAIN)  # prediction outside [0, C)
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 5\)"):
        compute_metrics([0, 1], [0, -1], TRAIN)
    with pytest.raises(ValueError, match="preds and targets differ in length: 1 vs 2"):
        compute_metrics([0], [0, 1], TRAIN)
    with pytest.raises(ValueError) as empty:
        compute_metrics([], [], TRAIN)
    assert str(empty.value) == "cannot compute metrics of an empty split"
    with pytest.raises(ValueError, match="1 class names for 5 classes"):
        compute_metrics([0], [0], TRAIN, class_names=["a"])
    one = compute_metrics([2], [2], TRAIN)  # a split of one sample is a split
    assert (one.overall, one.medium, one.many, one.n_samples) == (100.0, 100.0, None, 1)
