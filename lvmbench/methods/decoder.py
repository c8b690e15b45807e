"""The study's one-stage methods: a decoder over the frozen tokens and a classifier, trained with the
method's loss (Wang et al. 2023, Sec. 3; Imbalance-VLM ``imblearn/nets``)."""
from __future__ import annotations

from ..models.classifier import DecoderClassifier
from .task import Build, Task
from .text_head import init_head_from_text


def decoder_task(b: Build) -> Task:
    """The decoder and classifier on the frozen tokens, the classifier optionally text-initialised."""
    model = DecoderClassifier.from_spec(b.spec, b.backbone.width, b.dataset.num_classes)
    if b.spec["head.init"] == "text":
        init_head_from_text(model.head, b.spec, b.backbone, b.dataset, through_projection=True)
    return Task(model, "tokens", b.loss, b.info.sampler)
