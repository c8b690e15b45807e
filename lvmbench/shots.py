"""Shot groups of long-tailed evaluation, from a class's training count (Liu et al. 2019, OLTR):
many n > 100, medium 20 <= n <= 100, few n < 20. Pure Python: the UI groups classes with it."""
from __future__ import annotations

SHOT_MANY = 100
SHOT_FEW = 20


def shot_group(n_train: int) -> str:
    return "many" if n_train > SHOT_MANY else ("few" if n_train < SHOT_FEW else "medium")
