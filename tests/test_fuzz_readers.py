"""Fuzzing every file reader with Hypothesis: a damaged or hostile file may be refused with a
UserError (one line, exit 2 at the CLI) or read; it may never raise anything else.

Inputs are valid files of each format with a few random byte edits (biased towards headers),
random structure in their JSON/YAML, or random bytes. The default profile keeps the whole file
to about half a minute; `LTDD_FUZZ_EXAMPLES=N` raises the examples per reader (see
benchmarks/fuzz_readers.py, which records a long run in benchmarks/results/fuzz.md).
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ltdd.config import load_config
from ltdd.data.preprocess import Preprocessing
from ltdd.data.sources import load_source
from ltdd.data.sources.idx import IMAGES_MAGIC, read_idx
from ltdd.distilled import DistilledSet
from ltdd.errors import UserError
from ltdd.experts.verify import open_store
from ltdd.pipeline.config import RunConfig
from ltdd.report.build import load_run, summary_markdown

from helpers_formats import idx_bytes, write_cifar10, write_folder_tree, write_tiny_imagenet

EXAMPLES = int(os.environ.get("LTDD_FUZZ_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=EXAMPLES <= 100,  # the test suite is reproducible; long runs explore
    suppress_health_check=list(HealthCheck),
)
TRIED: Counter[str] = Counter()  # inputs tried per reader (read by the benchmark)
WORK = Path(tempfile.mkdtemp(prefix="ltdd-fuzz-"))


def only_user_errors(reader: str, read) -> None:
    """Call `read()`; a UserError is a refusal, anything else propagates (a crash)."""
    TRIED[reader] += 1
    try:
        read()
    except UserError as exc:
        assert "\n" not in str(exc), "a user error must be one line"


# ---- mutations --------------------------------------------------------------------------------
@st.composite
def edits(draw, seed: bytes, head: int = 512) -> bytes:
    """`seed` with 1-4 edits (flip, overwrite, insert, delete, truncate), half in the first `head`
    bytes where headers live; or, sometimes, random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=256))
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        limit = max(1, len(data))
        where = draw(st.one_of(st.integers(0, min(head, limit) - 1), st.integers(0, limit - 1)))
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if kind == "flip" and data:
            data[where % len(data)] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[where % len(data)] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[where:where] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[where : where + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del data[where:]
    return bytes(data)


JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def json_edits(draw, obj):
    """`obj` with one value somewhere replaced by random JSON (or a key dropped)."""
    if not isinstance(obj, (dict, list)) or not obj or draw(st.integers(0, 4)) == 0:
        return draw(JSON)
    obj = json.loads(json.dumps(obj))
    keys = list(obj) if isinstance(obj, dict) else list(range(len(obj)))
    key = draw(st.sampled_from(keys))
    action = draw(st.sampled_from(["replace", "descend", "drop"]))
    if action == "drop" and isinstance(obj, dict):
        del obj[key]
    elif action == "descend":
        obj[key] = draw(json_edits(obj[key]))
    else:
        obj[key] = draw(JSON)
    return obj


def fresh(name: str) -> Path:
    folder = WORK / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


# ---- seeds (valid files of each format), built once --------------------------------------------
@functools.cache
def seed_tree(kind: str) -> Path:
    """A valid dataset in its official layout, kept as a template."""
    root = WORK / "seeds" / kind
    if kind == "cifar10":
        write_cifar10(root, n_per_class=1, n_test_per_class=1)
    elif kind == "tiny-imagenet":
        write_tiny_imagenet(root, ["n02", "n01"], n_train=2, n_val_per_class=1, size=8)
    else:
        write_folder_tree(root, ["a", "b"], n_train=2, n_test=1, size=(4, 4))
    return root


@functools.cache
def seed_set() -> bytes:
    path = WORK / "seeds" / "set.safetensors"
    meta = {
        "dataset": "procedural",
        "imbalance_factor": 10.0,
        "ipc": 2,
        "method": "random",
        "data": {"dataset": "procedural"},
        "num_classes": 3,
        "model": {"name": "convnet", "width": 4},
    }
    images = torch.randn(6, 1, 4, 4)
    DistilledSet(images, torch.arange(3).repeat_interleave(2), 0.01, meta).save(path)
    return path.read_bytes()


@functools.cache
def seed_preprocess() -> bytes:
    path = WORK / "seeds" / "preprocess.safetensors"
    Preprocessing().fit(
        np.random.default_rng(0).integers(0, 255, (20, 1, 4, 4), dtype=np.uint8)
    ).save(path)
    return path.read_bytes()


@functools.cache
def seed_store() -> Path:
    from ltdd.experts import train_experts

    from experts_support import tiny_config, tiny_data

    folder = WORK / "seeds" / "store"
    torch.set_num_threads(1)
    train_experts(
        tiny_config(num_experts=1, epochs=1, depth=1), tiny_data(), folder, progress=False
    )
    return folder


@functools.cache
def seed_checkpoint():
    """A distillation checkpoint of a toy run, and what loading one needs."""
    from distill_toy import MODEL, toy_data, toy_experts

    from ltdd.distill import DistillConfig, PhaseConfig, distill
    from ltdd.distill.engine import CHECKPOINT

    torch.set_num_threads(1)
    data, folder = toy_data(), WORK / "seeds" / "distill"
    experts = toy_experts(data, num_experts=1, epochs=2)
    phase = PhaseConfig(syn_steps=1, current_max_start_epoch=1, max_start_epoch=1)
    cfg = DistillConfig(
        method="mtt", ipc=1, iterations=1, checkpoint_every=1, phase1=phase, **MODEL
    )
    distill(cfg, data, experts, folder, progress=False)
    return (folder / CHECKPOINT).read_bytes(), cfg, data, experts


RUN_FILES = {
    "data.json": {
        "dataset": "procedural",
        "imbalance_factor": 10.0,
        "num_classes": 2,
        "class_names": ["a", "b"],
        "train_counts": [10, 1],
        "test_lt_counts": [4, 1],
    },
    "eval/full.json": {
        "balanced": {
            **{
                k: {"mean": 0.5, "std": 0.1}
                for k in ("accuracy", "macro_precision", "macro_recall", "macro_f1")
            },
            "per_class_accuracy": [0.5, None],
            "groups": {"head": {"accuracy": {"mean": 0.5, "std": 0.0}}, "tail": None},
        }
    },
    "timings.json": {"data": {"wall_s": 1.0, "cpu_hours": 0.1, "peak_rss_mb": 10.0}},
    "config.yaml": {"methods": ["random"]},
}


# ---- the readers ---------------------------------------------------------------------------------
@FUZZ
@given(st.data())
def test_fuzz_idx(data):
    seed = idx_bytes(np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3))
    raw = data.draw(edits(seed, head=24))
    gz = data.draw(st.booleans())
    path = fresh("idx") / ("images.gz" if gz else "images")
    path.write_bytes(gzip.compress(raw) if gz and data.draw(st.booleans()) else raw)
    only_user_errors("IDX", lambda: read_idx(path, IMAGES_MAGIC))


def _mutate_tree(data, kind: str, pick) -> Path:
    root = fresh(kind)
    shutil.copytree(seed_tree(kind), root, dirs_exist_ok=True)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    target = data.draw(st.sampled_from([p for p in files if pick(p)]))
    target.write_bytes(data.draw(edits(target.read_bytes())))
    return root


@FUZZ
@given(st.data())
def test_fuzz_cifar_pickle(data):
    root = _mutate_tree(data, "cifar10", lambda p: True)
    only_user_errors("CIFAR pickle", lambda: load_source("cifar10", root, cache=False))


@FUZZ
@given(st.data())
def test_fuzz_tiny_imagenet_layout(data):
    text_first = data.draw(st.booleans())
    root = _mutate_tree(data, "tiny-imagenet", lambda p: p.suffix == ".txt" or not text_first)
    only_user_errors("Tiny-ImageNet", lambda: load_source("tiny-imagenet", root, cache=False))


@FUZZ
@given(st.data())
def test_fuzz_image_folder(data):
    root = _mutate_tree(data, "folder", lambda p: True)
    if data.draw(st.booleans()):  # and a structural change: an empty or extra class folder
        split = data.draw(st.sampled_from(["train", "test"]))
        name = data.draw(st.sampled_from(["a", "b", "c"]))
        folder = root / split / name
        if folder.exists():
            shutil.rmtree(folder)
        else:
            folder.mkdir()
    only_user_errors("image folder", lambda: load_source("folder", root, cache=False))


@FUZZ
@given(st.data())
def test_fuzz_distilled_set(data):
    path = fresh("set") / "set.safetensors"
    seed = seed_set()
    if data.draw(st.booleans()):
        path.write_bytes(data.draw(edits(seed)))
    else:  # valid file, random metadata
        good = DistilledSet.load(WORK / "seeds" / "set.safetensors")
        meta = data.draw(json_edits(good.meta))
        from ltdd.io import save_tensors

        labels = good.labels if data.draw(st.booleans()) else torch.randn(6, 3)
        tensors = {"images": good.images, "labels": labels, "lr": torch.tensor(0.01)}
        save_tensors(path, tensors, meta)
    only_user_errors("safetensors set", lambda: DistilledSet.load(path, 3, (1, 4, 4)))


@FUZZ
@given(st.data())
def test_fuzz_preprocessing_file(data):
    path = fresh("pre") / "preprocess.safetensors"
    path.write_bytes(data.draw(edits(seed_preprocess())))
    only_user_errors("preprocessing", lambda: Preprocessing.load(path))


@FUZZ
@given(st.data())
def test_fuzz_distill_checkpoint(data):
    from ltdd.distill import engine

    raw, cfg, toy, experts = seed_checkpoint()
    path = fresh("ckpt") / "checkpoint.safetensors"
    path.write_bytes(data.draw(edits(raw)))

    def load() -> None:
        method, _ = engine.resolve_method(cfg)
        student = engine.build_student(cfg, toy, torch.device("cpu"))
        plans = engine.plan_phases(method, cfg, experts, student, toy.train_counts, "cpu")
        state = engine.initial_state(cfg, method, toy, experts, student, plans, "cpu")
        engine.load_checkpoint(path, state, cfg)

    only_user_errors("checkpoint", load)


@FUZZ
@given(st.data())
def test_fuzz_expert_store(data):
    store = fresh("store")
    shutil.copytree(seed_store(), store, dirs_exist_ok=True)
    manifest = store / "manifest.json"
    choice = data.draw(st.sampled_from(["manifest-bytes", "manifest-json", "expert-bytes"]))
    if choice == "manifest-bytes":
        manifest.write_bytes(data.draw(edits(manifest.read_bytes())))
    elif choice == "manifest-json":
        manifest.write_text(json.dumps(data.draw(json_edits(json.loads(manifest.read_text())))))
    else:
        expert = store / "expert_0000.safetensors"
        expert.write_bytes(data.draw(edits(expert.read_bytes())))

    def read() -> None:
        opened = open_store(store)
        opened.snapshot(0, 0)
        opened.final(0)

    only_user_errors("manifest/store", read)


@FUZZ
@given(st.data())
def test_fuzz_yaml_config(data):
    path = fresh("yaml") / "config.yaml"
    shipped = Path(__file__).parents[1] / "configs" / "run" / "demo.yaml"
    kind = data.draw(st.sampled_from(["bytes", "structure", "text"]))
    if kind == "bytes":
        path.write_bytes(data.draw(edits(shipped.read_bytes(), head=4096)))
    elif kind == "structure":
        values = data.draw(json_edits(yaml.safe_load(shipped.read_text())))
        path.write_text(yaml.safe_dump(values))
    else:
        path.write_text(data.draw(st.text(max_size=200)))
    only_user_errors("YAML config", lambda: load_config(RunConfig, path))


@FUZZ
@given(st.data())
def test_fuzz_run_directory(data):
    run = fresh("run")
    (run / "eval").mkdir()
    for name, obj in RUN_FILES.items():
        text = yaml.safe_dump(obj) if name.endswith(".yaml") else json.dumps(obj)
        (run / name).write_text(text)
    name = data.draw(st.sampled_from(sorted(RUN_FILES)))
    path = run / name
    if data.draw(st.booleans()):
        path.write_bytes(data.draw(edits(path.read_bytes())))
    else:
        value = data.draw(json_edits(RUN_FILES[name]))
        path.write_text(yaml.safe_dump(value) if name.endswith(".yaml") else json.dumps(value))

    def read() -> None:
        load_run(run)
        summary_markdown(run)

    only_user_errors("run directory", read)
