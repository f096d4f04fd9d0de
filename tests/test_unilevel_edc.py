"""UL-LT's EDC-style evaluation protocol (spec §1.7) and online relabelling."""

import torch
from unilevel_support import procedural, tiny_observer

from ltdd.unilevel.adsa import log_prior
from ltdd.unilevel.config import EDCEvalConfig
from ltdd.unilevel.edc import evaluate_edc
from ltdd.unilevel.relabel import OnlineTeacher, teacher_logits


def test_online_teacher_applies_the_adsa_shift():
    teacher = tiny_observer()
    x = torch.randn(5, 1, 28, 28)
    counts = [100, 50, 20, 10, 5, 5, 5, 5, 5, 5]
    online = OnlineTeacher(teacher, log_prior(counts), 0.7)
    torch.testing.assert_close(online(x), teacher_logits(teacher, x) - 0.7 * log_prior(counts))


def test_edc_protocol_records_protocol_labels_and_the_last_epoch_rule():
    torch.set_num_threads(1)
    data = procedural()
    teacher = tiny_observer()
    images = data.train_images[:20]
    classes = data.train_labels[:20]
    cfg = EDCEvalConfig(epochs=2, seeds=2, width=4, batch_size=10)
    online = evaluate_edc(images, classes, data, cfg, torch.device("cpu"), teacher=teacher)
    assert online["settings"]["protocol"] == "edc" and online["settings"]["labels"] == "online"
    assert len(online["balanced"]["accuracy"]["runs"]) == 2
    static = evaluate_edc(
        images, classes, data, cfg, torch.device("cpu"), labels=teacher_logits(teacher, images)
    )
    assert static["settings"]["labels"] == "static"
    assert static["settings"]["reported"] == "last-epoch EMA weights"
