"""Evaluation networks asked for twice are trained once, with the same results as training twice."""

import json

import pytest
import torch

from ltdd.config import load_config
from ltdd.data.dataset import DataConfig, prepare_data
from ltdd.evaluate import evaluate as evaluate_module
from ltdd.evaluate.evaluate import EvalConfig, evaluate_set
from ltdd.evaluate.seedcache import SeedCache
from ltdd.evaluate.trainer import TrainConfig
from ltdd.pipeline.config import RunConfig
from ltdd.pipeline.run import Run

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data():
    return prepare_data(DataConfig(dataset="procedural", imbalance_factor=10))


@pytest.fixture
def trained(monkeypatch):
    """The seeds that `evaluate_set` actually trains, in order."""
    seeds: list[int] = []
    train = evaluate_module.train_network

    def counting(*args, **kwargs):
        seeds.append(args[5])
        return train(*args, **kwargs)

    monkeypatch.setattr(evaluate_module, "train_network", counting)
    return seeds


def _small_set(data):
    idx = torch.cat([torch.nonzero(data.train_labels == c).flatten()[:2] for c in range(10)])
    return data.train_images[idx], data.train_labels[idx]


def test_a_repeated_request_trains_nothing_and_returns_the_same_result(data, trained):
    torch.set_num_threads(1)
    images, labels = _small_set(data)
    cfg = EvalConfig(train=TrainConfig(width=4, epochs=2, batch_size=10), seeds=2)
    plain = evaluate_set(images, labels, 0.01, data, cfg, CPU)
    assert trained == [0, 1]
    cache = SeedCache(data)
    first = evaluate_set(images, labels, 0.01, data, cfg, CPU, cache=cache)
    again = evaluate_set(images.clone(), labels.clone(), 0.01, data, cfg, CPU, cache=cache)
    assert trained == [0, 1, 0, 1]  # the cached call trained nothing
    assert first == plain and again == plain
    assert (cache.hits, cache.misses) == (2, 2)
    # a subset of the stored profiles is a hit; seeds 1-2 train only seed 2
    balanced = EvalConfig(cfg.train, seeds=2, first_seed=1, test_profile="balanced")
    out = evaluate_set(images, labels, 0.01, data, balanced, CPU, cache=cache)
    assert trained == [0, 1, 0, 1, 2]
    assert out["balanced"]["accuracy"]["runs"][0] == plain["balanced"]["accuracy"]["runs"][1]


def test_anything_that_changes_the_network_is_a_miss(data, trained):
    torch.set_num_threads(1)
    images, labels = _small_set(data)
    train = TrainConfig(width=4, epochs=1, batch_size=10)
    cfg = EvalConfig(train=train, seeds=1, test_profile="balanced")
    cache = SeedCache(data)
    evaluate_set(images, labels, 0.01, data, cfg, CPU, cache=cache)
    soft = torch.nn.functional.one_hot(labels, 10).float()
    changed = [
        (images, labels, 0.02, cfg),
        (images, labels.flip(0), 0.01, cfg),
        (images, soft, 0.01, cfg),
        (images + 1e-3, labels, 0.01, cfg),
        (images, labels, 0.01, EvalConfig(TrainConfig(width=4, epochs=2, batch_size=10), seeds=1)),
        (images, labels, 0.01, EvalConfig(train=train, seeds=1, first_seed=3)),
    ]
    for x, y, lr, c in changed:
        evaluate_set(x, y, lr, data, c, CPU, cache=cache)
    assert len(trained) == 1 + len(changed) and cache.hits == 0
    with pytest.raises(ValueError, match="another data set"):
        other = prepare_data(DataConfig(dataset="procedural", imbalance_factor=10))
        evaluate_set(images, labels, 0.01, other, cfg, CPU, cache=cache)


def test_ddranking_of_real_image_sets_reuses_networks_with_unchanged_results(
    tmp_path, trained, monkeypatch
):
    """random and herding (hard labels, lr = hard_label_lr): the hard-label evaluation is the
    set's own, and the random subsets of IOR are the same for both; the eval JSONs must equal
    those of a run that trains every network."""
    torch.set_num_threads(1)
    config = [
        "ipc=2",
        "methods=[random, herding]",
        "data.dataset=procedural",
        "data.imbalance_factor=10",
        "experts.representation={num_experts: 1, epochs: 1, width: 4, batch_size: 256}",
        "evaluate.seeds=2",
        "evaluate.train={epochs: 2, width: 4}",
        "evaluate.full_epochs=1",
        "evaluate.ddranking=true",
        "evaluate.test_profile=balanced",
    ]

    def run(folder):
        cfg = load_config(RunConfig, None, [*config, f"runs_dir={tmp_path / folder}"])
        r = Run(cfg, progress=False)
        r.run()
        return r

    cached = run("cached")
    reused = len(trained)
    # trained: full 2, random's own 2, random's second random subset 1, herding's own 2;
    # reused: both hard-label runs (= own), random's first random subset (= its own seed 0:
    # the same draw), both of herding's random subsets (= random's)
    assert reused == 2 + 2 + 1 + 2 and cached.seed_cache.hits == 2 + 1 + 2 + 2
    monkeypatch.setattr(SeedCache, "get", lambda self, key, profiles: None)
    uncached = run("uncached")
    assert len(trained) - reused == 2 + 2 * (2 + 2 + 2)
    for name in ("full", "random", "herding"):
        a, b = (
            json.loads((r.dir / "eval" / f"{name}.json").read_text()) for r in (cached, uncached)
        )
        assert a == b
