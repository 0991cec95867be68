"""Answer worker processes: N copies of the library behind the one server.

With `PLANQA_WORKERS=N` (N > 1) the server process keeps the HTTP routes, the Gradio page
with its sessions and queue, and the feedback log (one writer); every answer and every
retrieval runs in one of N worker processes, each with its own model and index, so
answering is not bound to one interpreter's GIL. Workers are started with "spawn" (a
fresh interpreter: no threads or locks inherited from the server) and are ready when
each has loaded and answered its warm-up question.
"""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any, TypeVar

from planqa.errors import PlanQAError

if TYPE_CHECKING:
    from planqa.chain import PlanQA
    from planqa.config import Settings

T = TypeVar("T")
logger = logging.getLogger(__name__)

#: The library of this worker process (set by `_start_worker`).
_QA: PlanQA | None = None


def _start_worker(settings: Settings, ready: Any) -> None:
    """Runs once in each worker process: load, warm up, report (pid or the error)."""
    global _QA
    parent = os.getppid()

    def orphaned() -> None:  # the server is gone (killed, crashed): so is its worker
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=orphaned, name="planqa-orphan-watch", daemon=True).start()
    try:
        from planqa.chain import PlanQA
        from planqa.retrieval import load_searcher

        qa = PlanQA(settings, searcher=load_searcher(settings))
        qa.warm_up()
        embeddings = qa.searcher.embeddings
        if settings.prefault_model and hasattr(embeddings, "prefault"):
            embeddings.prefault()
        _QA = qa
    except Exception as exc:  # reported, not raised: the server says why and stops the pool
        ready.put(("error", f"{type(exc).__name__}: {exc}", type(exc).__name__))
        return
    ready.put(("ok", os.getpid(), ""))


def _call(fn: Callable[..., T], *args: Any) -> T:
    """`fn(qa, *args)` with this worker's library."""
    assert _QA is not None, "worker not started"
    return fn(_QA, *args)


class WorkerStartError(PlanQAError, RuntimeError):
    """A worker process could not load the library; `kind` is the exception's class name
    (IndexUnavailable: the index is missing or stale)."""

    http_status = 503

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class WorkerDied(PlanQAError, RuntimeError):
    """The worker holding this answer stopped; the pool restarts, the question can be
    asked again."""

    http_status = 503


class WorkerPool:
    """N worker processes, each with its own PlanQA; `submit(fn, *args)` runs
    `fn(qa, *args)` in one of them (fn and args must pickle: module-level functions,
    plain data)."""

    def __init__(self, settings: Settings, workers: int) -> None:
        self.workers = workers
        self.settings = settings
        self._lock = threading.Lock()
        self._executor = self._new_executor()

    def _new_executor(self) -> concurrent.futures.ProcessPoolExecutor:
        context = multiprocessing.get_context("spawn")
        self._ready = context.Queue()
        return concurrent.futures.ProcessPoolExecutor(
            max_workers=self.workers, mp_context=context, initializer=_start_worker,
            initargs=(self.settings, self._ready))

    def start(self, timeout: float = 300.0) -> list[int]:
        """Start every worker and wait until each is warm; their pids. Raises
        WorkerStartError when one could not load (the pool is then shut down)."""
        # The executor starts a process per task while none is idle: N tasks at once
        # start all N, whose initializers each report once.
        pings = [self._executor.submit(os.getpid) for _ in range(self.workers)]
        pids = []
        try:
            for _ in range(self.workers):
                status, value, kind = self._ready.get(timeout=timeout)
                if status != "ok":
                    raise WorkerStartError(str(value), kind)
                pids.append(int(value))
        except queue.Empty:
            self.shutdown()
            raise WorkerStartError(f"the answer workers were not ready within {timeout:g} s",
                                   "TimeoutError") from None
        except WorkerStartError:
            self.shutdown()
            raise
        concurrent.futures.wait(pings, timeout=timeout)
        return pids

    def submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        """A future of `fn(qa, *args)`. When a worker has died (killed, out of memory),
        the answers it held fail with WorkerDied (503) and the pool is started anew,
        rather than every answer failing from then on."""
        executor = self._executor
        try:
            inner = executor.submit(_call, fn, *args)
        except BrokenProcessPool:
            self._restart(executor)
            executor = self._executor
            inner = executor.submit(_call, fn, *args)
        outer: concurrent.futures.Future[T] = concurrent.futures.Future()

        def settle(done: concurrent.futures.Future[T]) -> None:
            try:
                if done.cancelled():
                    outer.cancel()
                elif isinstance(exc := done.exception(), BrokenProcessPool):
                    outer.set_exception(WorkerDied("an answer worker stopped; ask again"))
                    threading.Thread(target=self._restart, args=(executor,),
                                     daemon=True).start()
                elif exc is not None:
                    outer.set_exception(exc)
                else:
                    outer.set_result(done.result())
            except concurrent.futures.InvalidStateError:
                pass  # the caller gave up on it (timed out)

        outer.add_done_callback(lambda o: inner.cancel() if o.cancelled() else None)
        inner.add_done_callback(settle)
        return outer

    def _restart(self, broken: concurrent.futures.ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is not broken:  # another request restarted it already
                return
            logger.error("an answer worker died; starting the workers anew")
            broken.shutdown(wait=False, cancel_futures=True)
            self._executor = self._new_executor()
            self.start()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


__all__ = ["WorkerDied", "WorkerPool", "WorkerStartError"]
