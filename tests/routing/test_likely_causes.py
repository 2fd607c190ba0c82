"""A weak expert's report names the likely cause first, read off its predictions."""

import torch

from routing.kinds.classification.scoring import likely_causes

LABELS = ["negative", "positive"]
TRUTH = torch.tensor([0, 1] * 50)


def test_swapped_labels_come_first_with_the_score_they_would_have():
    causes = likely_causes(1 - TRUTH, TRUTH, LABELS)
    assert "label order" in causes[0] and "would score 1.0000" in causes[0]
    assert "'negative' looks like 'positive'" in causes[0]


def test_one_label_for_everything_comes_first_when_it_collapses():
    causes = likely_causes(torch.zeros(100, dtype=torch.long), TRUTH, LABELS)
    assert causes[0].startswith("it answers 'negative' for 100% of the texts")
    assert not any("label order" in c for c in causes)


def test_noise_points_at_the_data():
    noise = torch.tensor([0, 0, 1, 1] * 25)  # half right, no pattern
    causes = likely_causes(noise, TRUTH, LABELS)
    assert causes == [causes[-1]] and "training data differs" in causes[0]
