"""`jobs` > 1: the stages of a run as tasks for worker processes sharing the CPU threads.

After the data (prepared by the calling process), each expert store, each method's set, the
full-data bounds and each method's evaluations are tasks. A task starts once the stages it
reads are written, in a pool of `jobs` spawned processes with `threads // jobs` torch threads
each; among the ready tasks, those on the longest chain (experts -> LTDD -> its evaluation)
start first. Small networks use one thread better than two: the CPU science profile on 2 cores
took 640 s wall (1201 CPU s) with 2 workers against 683 s (1350 CPU s) serially with 2 threads
(benchmarks/results/end-to-end.md). Workers write the stage files the serial run writes; the
calling process then walks every stage once more, reusing each, and builds the report.

The hard-label baselines (random, herding, k-center) are evaluated in one task: the random real
subsets of their DD-Ranking IOR terms are the same networks, trained once in one process.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from ltdd.pipeline.config import BASELINES, RunConfig

if TYPE_CHECKING:
    from ltdd.pipeline.run import Run

LONGEST_FIRST = ("ltdd", "datm", "mtt")


@dataclass(frozen=True)
class Task:
    """One unit of work: `kind` is 'experts', 'set', 'full' or 'eval'; `stores` are the expert
    kinds it trains or reads, in order; `methods` the methods whose stages it computes; `needs`
    the tasks that write what it reads."""

    name: str
    kind: str
    stores: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()


def plan(run: Run) -> list[Task]:
    """The stages after the data as tasks, in the order they start when ready."""
    cfg = run.cfg
    methods = sorted(
        cfg.methods, key=lambda m: LONGEST_FIRST.index(m) if m in LONGEST_FIRST else 99
    )

    def reads(*of: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        kinds = tuple(run.needed_expert_kinds(of))
        return kinds, tuple(f"experts/{k}" for k in kinds)

    tasks = []
    for kind in run.needed_expert_kinds():
        stores = ("representation", kind) if kind == "classifier" else (kind,)
        needs = tuple(f"experts/{k}" for k in stores[:-1])
        tasks.append(Task(f"experts/{kind}", "experts", stores, needs=needs))
    for m in methods:
        stores, needs = reads(m)
        tasks.append(Task(f"set/{m}", "set", stores, (m,), needs))
    ev = cfg.evaluate
    full: tuple[str, ...] = ()
    if ev.full_data:
        tasks.append(Task("eval/full", "full"))
        full = ("eval/full",) if ev.ddranking else ()
    if ev.full_balanced:
        tasks.append(Task("eval/full_balanced", "full"))
    baselines = tuple(m for m in methods if m in BASELINES)
    groups = [(m,) for m in methods if m not in BASELINES] + ([baselines] if baselines else [])
    for group in groups:
        stores, _ = reads(*group)
        needs = tuple(f"set/{m}" for m in group) + full
        tasks.append(Task("eval/" + "+".join(group), "eval", stores, group, needs))
    return tasks


def do_task(run: Run, task: Task) -> None:
    """Compute (or reuse) the stages of `task` in `run`, after reusing the stages it reads."""
    run.prepare()
    run.experts(list(task.stores))
    if task.kind == "set":
        run.make_set(task.methods[0])
    elif task.kind == "full":
        run.evaluate_full(balanced=task.name == "eval/full_balanced")
    elif task.kind == "eval":
        if "eval/full" in task.needs:
            run.evaluate_full()  # reused: its key enters the evaluation keys
        for method in task.methods:
            run.make_set(method)  # reused: its key enters the evaluation keys
            run.evaluate_method(method)


def _work(cfg: RunConfig, task: Task, threads: int) -> dict[str, dict]:
    """A worker's task; returns the timings of the stages it computed."""
    from ltdd.pipeline.run import Run

    torch.set_num_threads(threads)
    run = Run(cfg, progress=False)
    do_task(run, task)
    return {name: t for name, t in run.timings.items() if not t.get("reused")}


def run_tasks(run: Run, jobs: int) -> dict[str, dict]:
    """Every task of `plan(run)` in `jobs` worker processes; returns the computed stages'
    timings. After a task fails, no other task starts; those running finish (their stages are
    kept for the next run) and the failure is raised here."""
    tasks = plan(run)
    threads = max(1, torch.get_num_threads() // jobs)
    done: set[str] = set()
    computed: dict[str, dict] = {}
    waiting = list(tasks)
    running: dict[Future, str] = {}
    desc = f"stages, {jobs} workers"
    bar = tqdm(total=len(tasks), desc=desc, unit="task", disable=not run.progress)
    context = multiprocessing.get_context("spawn")
    with bar, ProcessPoolExecutor(jobs, mp_context=context) as pool:
        while waiting or running:
            ready = [t for t in waiting if set(t.needs) <= done]
            for task in ready[: jobs - len(running)]:
                waiting.remove(task)
                running[pool.submit(_work, run.cfg, task, threads)] = task.name
            bar.set_postfix_str(", ".join(running.values()))
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                computed.update(future.result())
                done.add(name)
                bar.update()
    return computed
