import numpy as np
import pytest
from sklearn.metrics import accuracy_score, precision_recall_fscore_support, recall_score

from ltdd.data.longtail import longtail_counts
from ltdd.evaluate.evaluate import aggregate, summarize
from ltdd.evaluate.metrics import class_groups, classification_report


@pytest.mark.parametrize("seed", range(5))
def test_report_matches_sklearn_on_random_predictions(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 10, 500)
    y_pred = np.where(rng.random(500) < 0.5, y_true, rng.integers(0, 7, 500))  # 7-9 rarely hit
    report = classification_report(y_true, y_pred, 10, longtail_counts(6000, 10, 100))
    p, r, f, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=range(10), average="macro", zero_division=0
    )
    assert report["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert report["macro_precision"] == pytest.approx(p)
    assert report["macro_recall"] == pytest.approx(r)
    assert report["macro_f1"] == pytest.approx(f)
    per_class = recall_score(y_true, y_pred, labels=range(10), average=None, zero_division=0)
    assert report["per_class_accuracy"] == pytest.approx(per_class.tolist())
    head = report["groups"]["head"]
    assert head["classes"] == [0, 1, 2]
    assert head["accuracy"] == pytest.approx(per_class[:3].mean())


def test_predicting_the_head_class_everywhere_scores_high_accuracy_on_a_long_tailed_test():
    counts = longtail_counts(1000, 10, 200)
    y_true = np.repeat(np.arange(10), counts)
    report = classification_report(y_true, np.zeros_like(y_true), 10, counts)
    assert report["accuracy"] == pytest.approx(1000 / sum(counts))  # 44.7 %, supp. Table 6
    assert report["macro_recall"] == pytest.approx(0.1)
    assert report["groups"]["tail"]["accuracy"] == 0.0


def test_groups_on_the_exponential_profile_and_absent_groups():
    assert class_groups(longtail_counts(5000, 10, 100)) == {
        "head": [0, 1, 2],
        "medium": [3, 4, 5],
        "tail": [6, 7, 8, 9],
    }
    balanced = class_groups([100] * 10)
    assert balanced["medium"] == [] and balanced["tail"] == []
    report = classification_report(np.arange(10), np.arange(10), 10, [100] * 10)
    assert report["groups"]["medium"] is None and report["groups"]["tail"] is None


def test_class_missing_from_the_test_set_has_no_accuracy():
    report = classification_report(np.array([0, 0, 1]), np.array([0, 1, 1]), 3, [30, 20, 10])
    assert report["per_class_accuracy"] == [0.5, 1.0, None]
    assert report["groups"]["tail"] is None


def test_aggregate_is_mean_and_population_std_over_seeds():
    counts = longtail_counts(100, 3, 10)
    reports = [
        classification_report(np.array([0, 1, 2, 2]), np.array(pred), 3, counts)
        for pred in ([0, 1, 2, 2], [0, 0, 2, 1])
    ]
    out = aggregate(reports)
    assert out["accuracy"]["mean"] == pytest.approx(0.75)
    assert out["accuracy"]["std"] == pytest.approx(0.25)
    assert out["per_class_accuracy"] == pytest.approx([1.0, 0.5, 0.75])
    assert summarize([1.0, 3.0]) == {"mean": 2.0, "std": 1.0, "runs": [1.0, 3.0]}
