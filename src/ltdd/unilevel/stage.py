"""The `unilevel` method inside `ltdd run`: its set stage, its EDC evaluation and its teacher.

`pipeline/run.py` calls these three functions; everything else stays in this package. Experts
go to `<run>/experts/unilevel/<hash>/`, the set to `<run>/distill/unilevel/`, the shared-protocol
evaluation to `eval/unilevel.json` (by the run's own evaluation) and, with
`unilevel.edc.enabled`, UL-LT's own protocol to `eval/unilevel-edc.json`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ltdd.config import to_dict
from ltdd.distilled import DistilledSet
from ltdd.io import write_json
from ltdd.pipeline.cache import stage_hash
from ltdd.unilevel.adsa import adjust, log_prior
from ltdd.unilevel.edc import evaluate_edc
from ltdd.unilevel.experts import load_expert
from ltdd.unilevel.relabel import OnlineTeacher, teacher_logits
from ltdd.unilevel.synthesize import synthesize

if TYPE_CHECKING:
    from ltdd.pipeline.run import Run

METHOD = "unilevel"


def set_key(run: Run) -> str:
    cfg = run.cfg.unilevel
    return stage_hash("set", METHOD, run.keys["data"], run.cfg.ipc, to_dict(cfg))


def make_set(run: Run, path: Path) -> None:
    """Synthesise the UL-LT set of `run` into `path` (its stage timings beside it)."""
    distilled, timings = synthesize(
        run.cfg.unilevel,
        run.data,
        run.cfg.ipc,
        run.dir / "experts" / METHOD,
        run.device,
        run._set_meta(METHOD),
        progress=run.progress,
    )
    distilled.save(path)
    write_json(path.parent / "timings.json", timings)


def _teacher_for(run: Run, distilled: DistilledSet):
    store = Path(distilled.meta["unilevel"]["teacher_store"])
    return load_expert(store, "teacher", run.data, run.device)


def evaluate_edc_stage(run: Run, set_path: Path) -> Path:
    """UL-LT under its own protocol (online or static labels): `eval/unilevel-edc.json`."""
    edc = run.cfg.unilevel.edc
    out = run.dir / "eval" / f"{METHOD}-edc.json"
    key = stage_hash("eval-edc", run.keys[f"set/{METHOD}"], to_dict(edc))

    def compute() -> None:
        distilled = DistilledSet.load(set_path)
        relabel = distilled.meta["unilevel"]["relabel"]
        labels, teacher = distilled.labels, None
        if edc.labels == "online":
            tau = relabel["adsa_tau"]
            net = _teacher_for(run, distilled)
            teacher = OnlineTeacher(net, log_prior(run.data.train_counts), tau)
            labels = None
        result = evaluate_edc(
            distilled.images,
            distilled.class_ids,
            run.data,
            edc,
            run.device,
            labels=labels,
            teacher=teacher,
            test_profile=run.cfg.evaluate.test_profile,
            progress=run.progress,
            extra={"teacher_store": distilled.meta["unilevel"]["teacher_store"]},
        )
        result.update(method=f"{METHOD}-edc", arch=edc.model, ipc=run.cfg.ipc, label_kind="soft")
        write_json(out, result)

    run._stage(f"eval/{METHOD}-edc", out.with_suffix(".stage.json"), key, compute, [out.name])
    return out


def teacher_labels(run: Run, images: torch.Tensor, distilled: DistilledSet) -> torch.Tensor:
    """Soft labels for real images from the set's own teacher (DD-Ranking's random subsets),
    with the set's temperature and ADSA shift."""
    relabel = distilled.meta["unilevel"]["relabel"]
    logits = teacher_logits(_teacher_for(run, distilled), images) / relabel["temperature"]
    return adjust(logits, log_prior(run.data.train_counts), relabel["adsa_tau"])
