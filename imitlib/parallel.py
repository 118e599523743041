"""Build the stages of several seeds at once, in separate processes.

Every stage of the study is built per seed and cached, so seeds are independent jobs. Tiny models on
a CPU use cores poorly (a forward pass of the miniature world's largest base takes a few
milliseconds, most of it Python and thread synchronisation), so ``run.seed_workers: 2`` on a 2-core
machine builds two seeds at once with one torch thread each instead of one seed with two threads.

Workers only build (and cache) the stages; the results are then loaded in this process from the
cache, in seed order, so what a notebook gets does not depend on how the seeds were scheduled
(with ``run.force`` each stage is built once, in its worker, and only loaded here).
On a GPU, or with ``seed_workers: 1``, seeds are built one after another in this process.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import traceback
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from typing import Callable, TypeVar

from tqdm.auto import tqdm

from imitlib.config import Config
from imitlib.processes import die_with_parent

T = TypeVar("T")


def seed_worker_count(cfg: Config) -> int:
    """Processes that build seeds at once: ``run.seed_workers``, at most one per seed, 1 on a GPU."""
    workers = min(cfg.run.seed_workers, len(cfg.run.seeds))
    if workers <= 1:
        return 1
    from imitlib.models import pick_device

    return 1 if pick_device(cfg.run.device).type != "cpu" else workers


def worker_threads(cfg: Config, workers: int) -> int:
    """Torch threads per worker: ``run.torch_threads`` when set, else the cores split between workers."""
    if cfg.run.torch_threads:
        return cfg.run.torch_threads
    return max(1, (os.cpu_count() or 1) // workers)


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    die_with_parent(signal.SIGKILL)  # a worker stops when the process that started it dies


class WorkerError(RuntimeError):
    """An error raised in a seed worker that cannot travel back to the parent as itself.

    The parent receives a worker's exception pickled; an exception class whose pickle does not load
    again (e.g. one whose ``__init__`` takes arguments it does not keep) would arrive as a bare
    ``BrokenProcessPool`` that hides the cause. This carries its type, message and traceback instead.
    """


def _build_in_worker(build: Callable[[Config, int], object], cfg: Config, seed: int) -> None:
    try:
        build(cfg, seed)
    except Exception as error:
        try:
            pickle.loads(pickle.dumps(error))
        except Exception:
            raise WorkerError(f"{type(error).__module__}.{type(error).__qualname__}: {error}\n\n"
                              f"worker traceback:\n{traceback.format_exc()}") from None
        raise


def _is_done(done: Callable[[Config, int], bool] | None, cfg: Config, seed: int) -> bool:
    if done is None:
        return False
    try:
        return bool(done(cfg, seed))
    except Exception:  # an upstream stage is missing or unreadable: the build will say what
        return False


def for_seeds(build: Callable[[Config, int], T], cfg: Config, desc: str = "seeds",
              done: Callable[[Config, int], bool] | None = None) -> list[T]:
    """``[build(cfg, seed) for seed in cfg.run.seeds]``, with the builds spread over ``run.seed_workers`` processes.

    Args:
        build: a module-level function ``(cfg, seed) -> result`` that builds (or reuses) one seed's cached
            stage; calling it again once the stage is complete must only load it.
        cfg: the study config.
        desc: label of the progress bar over seeds.
        done: optional ``(cfg, seed) -> bool``, true when that seed's stage is already complete; such seeds
            are only loaded, and no worker processes start when every seed is complete.

    Raises:
        Whatever a worker raised, with a note naming the seed; the other seeds' workers are stopped
        before they start new work (stages finished so far stay cached; unfinished ones stay partial
        and are rebuilt on the next run).
    """
    seeds = list(cfg.run.seeds)
    todo = [seed for seed in seeds if not _is_done(done, cfg, seed)]
    workers = min(seed_worker_count(cfg), len(todo))
    if workers > 1:
        threads = worker_threads(cfg, workers)
        quiet = cfg.model_copy(update={"run": cfg.run.model_copy(update={"progress": False, "torch_threads": threads})})
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(threads,)) as pool:
            futures = {pool.submit(_build_in_worker, build, quiet, seed): seed for seed in todo}
            bar = tqdm(total=len(todo), desc=f"{desc} ({workers} processes x {threads} threads)",
                       disable=not cfg.run.progress)
            pending = set(futures)
            try:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                    for future in done:
                        error = future.exception()
                        if error is not None:
                            error.add_note(f"(while building seed {futures[future]} in a worker process)")
                            raise error
                        bar.update(1)
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
            finally:
                bar.close()
        # Every stage is complete now: this only loads (with run.force off, or it would build each seed again).
        loaded = cfg.model_copy(update={"run": cfg.run.model_copy(update={"force": False})})
        return [build(loaded, seed) for seed in seeds]
    if cfg.run.torch_threads:
        import torch

        torch.set_num_threads(cfg.run.torch_threads)
    return [build(cfg, seed) for seed in tqdm(seeds, desc=desc, disable=not cfg.run.progress or len(seeds) < 2)]
