import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ltdd.data.dataset import DataConfig, prepare_data
from ltdd.evaluate import trainer
from ltdd.evaluate.evaluate import EvalConfig, evaluate_set
from ltdd.evaluate.trainer import TrainConfig, soft_cross_entropy, train_network


class Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.classifier = nn.Linear(4, 3)

    def forward(self, x):
        return self.classifier(x.flatten(1))


def test_protocol_decays_lr_tenfold_with_a_fresh_optimiser_after_half(monkeypatch):
    """epochs=2 -> 3 full-batch passes: two momentum steps at lr, then one at lr/10, no momentum."""
    model = Linear()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    monkeypatch.setattr(trainer, "create_model", lambda *a, **k: model)
    x = torch.randn(6, 1, 2, 2)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    lr, mom, wd = 0.5, 0.9, 0.01
    cfg = TrainConfig(epochs=2, batch_size=6, momentum=mom, weight_decay=wd, dsa=False)
    train_network(x, y, lr, 3, cfg, seed=0, device=torch.device("cpu"))

    w, b = start["classifier.weight"].clone(), start["classifier.bias"].clone()

    def grads(w, b):
        w_, b_ = w.clone().requires_grad_(), b.clone().requires_grad_()
        F.cross_entropy(x.flatten(1) @ w_.T + b_, y).backward()
        return w_.grad + wd * w, b_.grad + wd * b

    vw, vb = grads(w, b)  # pass 0: momentum buffer starts as the gradient
    w, b = w - lr * vw, b - lr * vb
    gw, gb = grads(w, b)  # pass 1
    vw, vb = mom * vw + gw, mom * vb + gb
    w, b = w - lr * vw, b - lr * vb
    gw, gb = grads(w, b)  # pass 2: fresh optimiser at lr/10
    w, b = w - lr / 10 * gw, b - lr / 10 * gb
    assert torch.allclose(model.classifier.weight, w, atol=1e-6)
    assert torch.allclose(model.classifier.bias, b, atol=1e-6)


def test_soft_cross_entropy_equals_cross_entropy_for_one_hot_limit():
    logits = torch.randn(5, 4)
    target = torch.tensor([0, 3, 1, 1, 2])
    sharp = F.one_hot(target, 4).float() * 1e4
    assert torch.allclose(soft_cross_entropy(logits, sharp), F.cross_entropy(logits, target))


def test_same_seed_same_network_different_seed_different_network():
    x = torch.randn(20, 1, 28, 28)
    y = torch.arange(20) % 10
    cfg = TrainConfig(width=8, epochs=2, batch_size=8)
    cpu = torch.device("cpu")
    a, b, c = (train_network(x, y, 0.01, 10, cfg, seed=s, device=cpu) for s in (1, 1, 2))
    pa, pb, pc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


def test_evaluation_learns_above_chance_and_reports_both_profiles():
    data = prepare_data(DataConfig(dataset="procedural", imbalance_factor=10))
    idx = torch.cat([torch.nonzero(data.train_labels == c).flatten()[:10] for c in range(10)])
    cfg = EvalConfig(train=TrainConfig(width=8, epochs=20, batch_size=50), seeds=2)
    out = evaluate_set(
        data.train_images[idx], data.train_labels[idx], 0.01, data, cfg, torch.device("cpu")
    )
    for profile in ("balanced", "long_tailed"):
        acc = out[profile]["accuracy"]
        assert len(acc["runs"]) == 2 and acc["std"] == pytest.approx(np.std(acc["runs"]))
        assert acc["mean"] > 0.3  # chance is 0.1
        assert set(out[profile]["groups"]) == {"head", "medium", "tail"}
    assert out["settings"]["label_kind"] == "hard" and out["settings"]["train"]["epochs"] == 20
