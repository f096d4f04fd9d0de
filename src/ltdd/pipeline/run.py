"""`run_pipeline`: data -> experts -> sets (baselines and distillation) -> evaluation -> report.

Every stage writes a record (`stage.json` or `<name>.stage.json`) holding a hash of its own
configuration and of the stages it reads; a stage whose record matches is reused, any other is
recomputed (its stale outputs removed first). Wall-clock, CPU time and peak memory of each
computed stage go into its record and into `timings.json` (the supplementary's Table 9).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
import yaml

from ltdd import tracking
from ltdd.config import to_dict
from ltdd.data.dataset import LongTailedData, prepare_data
from ltdd.data.preprocess import Preprocessing
from ltdd.device import resolve_device
from ltdd.distill.config import DistillConfig
from ltdd.distill.engine import INITIAL, checkpoint_iteration, distill, schedule_of
from ltdd.distill.init import average_correct_logits
from ltdd.distill.methods import METHODS
from ltdd.distilled import DistilledSet, set_metadata
from ltdd.evaluate.balanced import balanced_indices
from ltdd.evaluate.ddranking import ddranking_summary
from ltdd.evaluate.evaluate import evaluate_set
from ltdd.evaluate.gain import distillation_gain
from ltdd.evaluate.seedcache import SeedCache
from ltdd.experts import TrajectoryStore, train_experts
from ltdd.experts.config import stage_config
from ltdd.experts.verify import open_store
from ltdd.io import read_json, write_json, write_text
from ltdd.lock import locked
from ltdd.pipeline.cache import is_current, stage_hash, write_record
from ltdd.pipeline.config import BASELINES, UNILEVEL, RunConfig, check_run_config
from ltdd.pipeline.parallel import run_tasks
from ltdd.pipeline.resources import measure
from ltdd.select import (
    extract_features,
    model_from_flat,
    select_herding,
    select_kcenter,
    select_random,
)
from ltdd.unilevel import stage as unilevel

log = logging.getLogger("ltdd")
SET_FILE = "distilled.safetensors"
RECORD = "stage.json"
PENDING = "stage.pending"


class Run:
    """One run directory and the stages computed (or reused) in it."""

    def __init__(self, cfg: RunConfig, progress: bool = True) -> None:
        check_run_config(cfg)
        self.cfg = cfg
        self.dir = cfg.run_dir
        self.device = resolve_device(cfg.device)
        self.progress = progress
        self.keys: dict[str, str] = {}
        self.timings: dict[str, dict] = {}
        self.data: LongTailedData | None = None
        self.stores: dict[str, TrajectoryStore] = {}
        self._seed_cache: SeedCache | None = None

    # ---- bookkeeping ---------------------------------------------------------------------
    def _stage(
        self,
        name: str,
        record: Path,
        key: str,
        compute: Callable[[], None],
        outputs: list[str],
        folder: Path | None = None,
        continues: bool = False,
    ) -> bool:
        """Run `compute()` unless `record` matches `key`; returns True when it computed.

        A stage that owns `folder` resumes there when an interrupted attempt had the same key
        (kept in `stage.pending`) or when the caller says it `continues` what the folder holds
        (a distillation given more iterations continues from its checkpoint); it starts from an
        empty folder otherwise.
        """
        self.keys[name] = key
        if is_current(record, key):
            self.timings[name] = {**read_json(record).get("resources", {}), "reused": True}
            log.info("reuse %s", name)
            return False
        log.info("compute %s", name)
        if folder is not None:
            pending = folder / PENDING
            interrupted = pending.is_file() and pending.read_text() == key
            if folder.exists() and not (interrupted or continues):
                shutil.rmtree(folder)
            folder.mkdir(parents=True, exist_ok=True)
            write_text(pending, key)
        with measure(self.device) as resources:
            compute()
        write_record(record, key, outputs, resources=resources)
        if folder is not None:
            (folder / PENDING).unlink()
        self.timings[name] = {**resources, "reused": False}
        tracking.log_stage(name, resources)
        return True

    # ---- stages --------------------------------------------------------------------------
    def prepare(self) -> LongTailedData:
        cfg = self.cfg.data
        values = to_dict(cfg)
        values.pop("root")  # where the files live is not what they are
        if values["val_from"] == "train":  # the default keeps the hash runs had before the key
            values.pop("val_from")
        key = stage_hash("data", values)
        pre_path = self.dir / "preprocess.safetensors"

        def compute() -> None:
            self.data = prepare_data(cfg)
            self.data.preprocessing.save(pre_path)
            write_json(self.dir / "data.json", self.data.info)

        self.dir.mkdir(parents=True, exist_ok=True)
        if not self._stage(
            "data",
            self.dir / "data.stage.json",
            key,
            compute,
            ["data.json", "preprocess.safetensors"],
        ):
            self.data = prepare_data(cfg, Preprocessing.load(pre_path))
        return self.data

    def _expert_kind(self, kind: str) -> str:
        """The store a method's expert kind reads (`share_experts`: mtt/datm -> representation)."""
        return "representation" if self.cfg.share_experts and kind in ("mtt", "datm") else kind

    def needed_expert_kinds(self, methods: tuple[str, ...] | None = None) -> list[str]:
        """The expert stores `methods` (default: the run's) read, in training order."""
        kinds: list[str] = []
        for method in self.cfg.methods if methods is None else methods:
            if method in ("herding", "kcenter"):
                kinds.append("representation")
            elif method not in BASELINES + UNILEVEL:
                spec = METHODS.get(method)()
                kinds += [self._expert_kind(k) for k in spec.expert_kinds]
        if "classifier" in kinds:
            kinds.insert(0, "representation")
        return list(
            dict.fromkeys(k for k in ("representation", "classifier", "mtt", "datm") if k in kinds)
        )

    def experts(self, kinds: list[str] | None = None) -> None:
        """Train (or reuse) the expert stores `kinds` (default: every store the run reads), in
        order: classifier experts are retrained from the representation store before them."""
        for kind in self.needed_expert_kinds() if kinds is None else kinds:
            section = dataclasses.replace(
                getattr(self.cfg.experts, kind), kind=kind, device=self.cfg.device
            )
            folder = self.dir / "experts" / kind
            source = self.stores["representation"] if kind == "classifier" else None
            key = stage_hash(
                "experts",
                self.keys["data"],
                stage_config(section),
                self.keys.get("experts/representation") if source else None,
            )

            def compute(section=section, folder=folder, source=source) -> None:
                train_experts(section, self.data, folder, source=source, progress=self.progress)

            self._stage(f"experts/{kind}", folder / RECORD, key, compute, ["manifest.json"], folder)
            self.stores[kind] = open_store(folder, self.data.info)

    def _set_meta(self, method: str) -> dict:
        return set_metadata(self.data, self.cfg.data, method, self.cfg.ipc)

    def make_set(self, method: str) -> Path:
        folder = self.dir / "distill" / method
        path = folder / SET_FILE
        continues = False  # a distillation continuing its checkpoint
        if method in BASELINES:
            base = self.cfg.baselines
            uses_features = method != "random"
            key = stage_hash(
                "set",
                method,
                self.keys["data"],
                self.cfg.ipc,
                base.tail_policy,
                base.seed,
                base.feature_expert if uses_features else None,
                self.keys["experts/representation"] if uses_features else None,
                self._model_spec(self.cfg.experts.representation) if uses_features else None,
            )

            def compute() -> None:
                self._baseline(method).save(path)
        elif method in UNILEVEL:
            key = unilevel.set_key(self)

            def compute() -> None:
                unilevel.make_set(self, path)
        else:
            section = dataclasses.replace(
                getattr(self.cfg.distill, method), method=method, ipc=self.cfg.ipc
            )
            kinds = METHODS.get(method)().expert_kinds
            expert_keys = [self.keys[f"experts/{self._expert_kind(k)}"] for k in kinds]

            def set_key(section: DistillConfig) -> str:
                return stage_hash("set", method, self.keys["data"], to_dict(section), expert_keys)

            key = set_key(section)
            # the folder's set was made under this config and these experts with another
            # schedule (fewer iterations, another checkpoint/eval cadence) when its record
            # matches the key of this section with the set's schedule: continue its checkpoint,
            # unless that holds more iterations than asked
            made_with = schedule_of(folder)
            continues = (
                made_with is not None
                and checkpoint_iteration(folder) <= section.iterations
                and is_current(folder / RECORD, set_key(dataclasses.replace(section, **made_with)))
            )

            def compute() -> None:
                experts = {k: self.stores[self._expert_kind(k)] for k in kinds}
                distill(
                    section,
                    self.data,
                    experts,
                    folder,
                    progress=self.progress,
                    device=self.device,
                    meta=self._set_meta(method),
                )

        self._stage(f"set/{method}", folder / RECORD, key, compute, [SET_FILE], folder, continues)
        return path

    @staticmethod
    def _model_spec(section) -> dict:
        return {
            "name": section.model,
            "width": section.width,
            "depth": section.depth,
            "norm": section.norm,
        }

    def _baseline(self, method: str) -> DistilledSet:
        data, base, ipc = self.data, self.cfg.baselines, self.cfg.ipc
        labels = data.train_labels.numpy()
        if method == "random":
            idx = select_random(labels, data.num_classes, ipc, base.seed, base.tail_policy)
        else:
            features = self._expert_features(base.feature_expert)
            if method == "herding":
                idx = select_herding(features, labels, data.num_classes, ipc, base.tail_policy)
            else:
                idx = select_kcenter(
                    features, labels, data.num_classes, ipc, base.seed, base.tail_policy
                )
        idx = torch.as_tensor(idx)
        meta = {
            **self._set_meta(method),
            "tail_policy": base.tail_policy,
            "model": self._model_spec(self.cfg.experts.representation),
        }
        return DistilledSet(
            data.train_images[idx], data.train_labels[idx], self.cfg.evaluate.hard_label_lr, meta
        )

    def _expert_model(self, kind: str, index: int) -> torch.nn.Module:
        store = self.stores[kind]
        spec = self._model_spec(getattr(self.cfg.experts, kind))
        name = spec.pop("name")
        overrides = {k: v for k, v in spec.items() if v is not None}
        flat = store.final(index)
        return model_from_flat(
            name, self.data.num_classes, self.data.image_shape, flat, **overrides
        ).to(self.device)

    def _expert_features(self, index: int) -> torch.Tensor:
        store = self.stores["representation"]
        if index >= store.num_experts:
            from ltdd.errors import UserError

            raise UserError(
                f"baselines.feature_expert={index}, but only "
                f"{store.num_experts} representation experts exist"
            )
        model = self._expert_model("representation", index)
        return extract_features(model, self.data.train_images)

    # ---- evaluation ----------------------------------------------------------------------
    @property
    def seed_cache(self) -> SeedCache:
        """Evaluation networks trained in this process, shared by every evaluation stage: a
        network asked for twice (DD-Ranking's hard-label and random-subset runs of real-image
        sets) is trained once."""
        if self._seed_cache is None or self._seed_cache.data is not self.data:
            self._seed_cache = SeedCache(self.data)
        return self._seed_cache

    def _eval_cfg(self, arch: str | None, made_for: dict):
        ev = self.cfg.evaluate
        train = ev.train
        if arch is not None:
            train = dataclasses.replace(train, model=arch, width=None, depth=None, norm=None)
        elif train.width is None and made_for.get("width"):
            train = dataclasses.replace(
                train,
                model=made_for.get("name", train.model),
                width=made_for.get("width"),
                depth=made_for.get("depth"),
            )
        return dataclasses.replace(ev, train=train)

    def evaluate(self, method: str, arch: str | None = None) -> Path:
        tag = method if arch is None else f"{method}@{arch}"
        out = self.dir / "eval" / f"{tag}.json"
        set_path = self.dir / "distill" / method / SET_FILE
        key = stage_hash(
            "eval",
            self.keys[f"set/{method}"],
            to_dict(self.cfg.evaluate),
            arch,
            self.keys.get("eval/full") if self._ddranking(arch) else None,
        )

        def compute() -> None:
            distilled = DistilledSet.load(set_path, self.data.num_classes, self.data.image_shape)
            cfg = self._eval_cfg(arch, distilled.meta.get("model", {}))
            result = evaluate_set(
                distilled.images,
                distilled.labels,
                distilled.lr,
                self.data,
                cfg,
                self.device,
                progress=self.progress,
                cache=self.seed_cache,
            )
            result.update(
                method=method,
                arch=cfg.train.model,
                ipc=self.cfg.ipc,
                label_kind=distilled.label_kind,
            )
            if self._ddranking(arch):
                result["ddranking"] = self._ddranking_for(distilled, cfg, result)
            write_json(out, result)

        self._stage(f"eval/{tag}", out.with_suffix(".stage.json"), key, compute, [out.name])
        return out

    def evaluate_method(self, method: str) -> None:
        """Every evaluation of a method's set: the shared protocol, UL-LT's own (EDC), the other
        architectures and, for a distillation, its iteration-0 set."""
        self.evaluate(method)
        if method in UNILEVEL and self.cfg.unilevel.edc.enabled:
            unilevel.evaluate_edc_stage(self, self.dir / "distill" / method / SET_FILE)
        for arch in self.cfg.evaluate.archs:
            self.evaluate(method, arch)
        if method not in BASELINES and self.cfg.evaluate.initial_sets:
            self.evaluate_initial(method)

    def evaluate_initial(self, method: str) -> Path | None:
        """The iteration-0 set of a distillation, evaluated exactly as its final set (same
        protocol and seeds), into `eval/init/<method>.json`: the base of the distillation gain."""
        set_path = self.dir / "distill" / method / INITIAL
        if not set_path.is_file():
            return None
        out = self.dir / "eval" / "init" / f"{method}.json"
        key = stage_hash("eval-init", self.keys[f"set/{method}"], to_dict(self.cfg.evaluate))

        def compute() -> None:
            initial = DistilledSet.load(set_path)
            cfg = self._eval_cfg(None, initial.meta.get("model", {}))
            cfg = dataclasses.replace(cfg, test_profile="balanced")
            result = evaluate_set(
                initial.images,
                initial.labels,
                initial.lr,
                self.data,
                cfg,
                self.device,
                cache=self.seed_cache,
            )
            final = read_json(self.dir / "eval" / f"{method}.json")
            result.update(
                method=method,
                iteration=0,
                distillation_gain=distillation_gain(
                    final["balanced"]["accuracy"]["runs"], result["balanced"]["accuracy"]["runs"]
                ),
            )
            write_json(out, result)

        out.parent.mkdir(parents=True, exist_ok=True)
        self._stage(f"eval/init/{method}", out.with_suffix(".stage.json"), key, compute, [out.name])
        return out

    def _ddranking(self, arch: str | None) -> bool:
        return self.cfg.evaluate.ddranking and self.cfg.evaluate.full_data and arch is None

    def evaluate_full(self, balanced: bool = False) -> Path:
        """The upper bound: the whole long-tailed training set, hard labels; with `balanced`,
        every class re-sampled (repeated) up to the largest class's count (`full_balanced`)."""
        name = "full_balanced" if balanced else "full"
        out = self.dir / "eval" / f"{name}.json"
        ev = self.cfg.evaluate
        key = stage_hash(
            "eval-full",
            self.keys["data"],
            to_dict(ev),
            self._model_spec(self.cfg.experts.representation),
            *(["balanced"] if balanced else []),
        )

        def compute() -> None:
            spec = self._model_spec(self.cfg.experts.representation)
            train = dataclasses.replace(
                ev.train,
                epochs=ev.full_balanced_epochs if balanced else ev.full_epochs,
                batch_size=ev.full_batch_size,
                width=ev.train.width or spec["width"],
            )
            cfg = dataclasses.replace(ev, train=train)
            data = self.data
            images, labels = data.train_images, data.train_labels
            if balanced:
                idx = balanced_indices(labels, data.num_classes)
                images, labels = images[idx], labels[idx]
            result = evaluate_set(
                images,
                labels,
                ev.hard_label_lr,
                data,
                cfg,
                self.device,
                progress=self.progress,
                cache=self.seed_cache,
            )
            result.update(method=name, arch=train.model, ipc=None, label_kind="hard")
            write_json(out, result)

        self._stage(f"eval/{name}", out.with_suffix(".stage.json"), key, compute, [out.name])
        return out

    def _ddranking_for(self, distilled: DistilledSet, cfg, own: dict) -> dict:
        """HLR against the full set, IOR against random real subsets labelled like the set.

        The hard-label learning rate is taken as a set file stores it (float32), so that the
        hard-label evaluation of a real-image set is its own evaluation, trained once."""
        ev_hard = dataclasses.replace(cfg, test_profile="balanced")
        hard_lr = float(torch.tensor(self.cfg.evaluate.hard_label_lr, dtype=torch.float32))
        hard = evaluate_set(
            distilled.images,
            distilled.class_ids,
            hard_lr,
            self.data,
            ev_hard,
            self.device,
            cache=self.seed_cache,
        )["balanced"]
        labels = self.data.train_labels.numpy()
        counts = torch.bincount(distilled.class_ids, minlength=self.data.num_classes).tolist()
        random_runs = []
        for seed in range(cfg.first_seed, cfg.first_seed + cfg.seeds):
            idx = torch.as_tensor(
                select_random(labels, self.data.num_classes, max(counts), seed, "all")
            )
            images, classes = self.data.train_images[idx], self.data.train_labels[idx]
            targets = (
                classes
                if distilled.label_kind == "hard"
                else self._teacher(images, classes, distilled)
            )
            one = dataclasses.replace(ev_hard, seeds=1, first_seed=seed)
            random_runs.append(
                evaluate_set(
                    images,
                    targets,
                    distilled.lr,
                    self.data,
                    one,
                    self.device,
                    cache=self.seed_cache,
                )["balanced"]["accuracy"]["runs"][0]
            )
        full = read_json(self.dir / "eval" / "full.json")["balanced"]["accuracy"]["runs"]
        own_runs = own["balanced"]["accuracy"]["runs"]
        summary = ddranking_summary(full, hard["accuracy"]["runs"], own_runs, random_runs)
        return {
            **summary,
            "syn_hard_accuracy": hard["accuracy"],
            "random_accuracy_runs": random_runs,
            "units": "fractions (LRS in [0, 1])",
        }

    def _teacher(
        self, images: torch.Tensor, classes: torch.Tensor, distilled: DistilledSet
    ) -> torch.Tensor:
        """Soft labels for real images from the experts that labelled the set (mean of correct)."""
        if distilled.meta["method"] in UNILEVEL:
            return unilevel.teacher_labels(self, images, distilled)
        kind = self._expert_kind(METHODS.get(distilled.meta["method"])().init_experts)
        store = self.stores[kind]
        logits = []
        for e in range(store.num_experts):
            model = self._expert_model(kind, e).eval()
            with torch.no_grad():
                logits.append(
                    torch.cat(
                        [
                            model(images[i : i + 512].to(self.device)).cpu()
                            for i in range(0, len(images), 512)
                        ]
                    )
                )
        return average_correct_logits(logits, classes)

    # ---- everything ----------------------------------------------------------------------
    def run(self) -> Path:
        """Every stage, holding the run directory so that no other process writes into it."""
        with locked(self.dir, "run directory"):
            return self._run()

    def _run(self) -> Path:
        write_text(self.dir / "config.yaml", yaml.safe_dump(to_dict(self.cfg), sort_keys=False))
        self.prepare()
        in_workers = run_tasks(self, self.cfg.jobs) if self.cfg.jobs > 1 else {}
        self.experts()
        if self.cfg.evaluate.full_data:
            self.evaluate_full()
        if self.cfg.evaluate.full_balanced:
            self.evaluate_full(balanced=True)
        for method in self.cfg.methods:
            self.make_set(method)
            self.evaluate_method(method)
        for name, resources in in_workers.items():
            self.timings[name] = {**resources, "reused": False}
            tracking.log_stage(name, resources)
        write_json(self.dir / "timings.json", self.timings)
        cache = self._seed_cache
        if cache is not None:
            log.info("evaluation networks: %d trained, %d reused", cache.misses, cache.hits)
        from ltdd.report.build import build_report

        return build_report([self.dir])


def run_pipeline(cfg: RunConfig, progress: bool = True) -> Path:
    """Run (or finish) every stage of `cfg` and return the path of the report."""
    return Run(cfg, progress).run()
