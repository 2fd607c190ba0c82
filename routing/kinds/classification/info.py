"""What a text classification mixture is, for the hub's pages, forms and API (no torch)."""

from __future__ import annotations

from dataclasses import dataclass

from ...config import ClassifierRouting, from_dict
from ..interface import KindInfo


@dataclass(frozen=True)
class ClassificationInfo(KindInfo):
    def page_context(self, routing: dict | None, base_name: str, **facts) -> dict:
        return {"classifier": from_dict(ClassifierRouting, (routing or {}).get("classifier"))}


INFO = ClassificationInfo(
    name="classification",
    title="Text classification",
    metric="accuracy",
    metric_title="Accuracy",
    higher_is_better=True,
    second_metric="macro_f1",
    second_metric_title="Macro-F1",
    auto_class="AutoModelForSequenceClassification",
    pipeline_task="text-classification",
    example_input="The striker scored twice in the second half.",
    implementation="routing.kinds.classification.kind:CLASSIFICATION",
    expert_format_version=1,
    has_labels=True,
    generates=False,
    data_formats="CSV with a text,label header, or JSONL with text and label",
    tolerance_help="the largest drop in held-out accuracy that a new expert may cause on any "
    "other domain (0.02: two points)",
    routing_sections=(("classifier", ClassifierRouting, "Classifier"),),
)
