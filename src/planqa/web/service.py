"""ChatService: what the page and the JSON API share — the library, whether it loaded,
the feedback log and the pool of answer workers with its time limit (threads beside one
library, or with PLANQA_WORKERS > 1 worker processes with a library each)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from planqa.chain import PlanQA
from planqa.config import Settings
from planqa.corpus import load_plan
from planqa.errors import IndexUnavailable, PlanQAError
from planqa.retrieval import load_searcher
from planqa.web.feedback import FeedbackLog
from planqa.web.workers import WorkerPool, WorkerStartError

if TYPE_CHECKING:
    from planqa.answering import Answer
    from planqa.corpus import Plan

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: Answers in progress at once; more requests wait for a worker (the time limit counts
#: the wait). The model itself runs one batch at a time (planqa.batching.QueryBatcher),
#: so this bounds how many questions can meet in a batch and how many threads share the
#: cores between model steps. Measured with `make load` (20 users, 60 s, 2 cores): 8 → 64
#: answers/s, heap +36 MB; 12 → 70/s, +51 MB; 16 → 71/s, +59 MB (each thread keeps its
#: own malloc arena). 8 keeps p95 < 500 ms and the heap growth < 50 MB.
ANSWER_WORKERS = 8

INDEX_MISSING_ZH = (
    "问答服务暂不可用：方案的检索索引缺失、损坏或已过期。"
    "请管理员在服务器上运行 <code>make index</code> 重建索引，然后重启服务。"
)
LOAD_FAILED_ZH = (
    "问答服务暂不可用：模型或索引未能加载。"
    "请管理员运行 <code>make setup</code> 和 <code>make index</code>，然后重启服务。"
)


def answer(qa: PlanQA, question: str, history: list[tuple[str, str]],
           script: str | None) -> Answer:
    """`qa.ask`, as a function of the library: what runs on an answer worker (a thread
    or a worker process; module-level, so it pickles)."""
    return qa.ask(question, history, script)


class AnswerTimeout(PlanQAError, TimeoutError):
    """No answer within PLANQA_REQUEST_TIMEOUT (the wait for a worker included)."""

    http_status = 504


@dataclass
class ChatService:
    """The library behind the page and the API, its readiness and the feedback log.

    `qa=None` builds the library on `warm_up()` with its queries batched (many staff ask
    at once); a `qa` passed in is used as it was built."""

    qa: PlanQA | None
    settings: Settings
    feedback: FeedbackLog
    startup_error: str | None = None
    startup_message_zh: str = INDEX_MISSING_ZH  # what the page says while not ready
    executor: concurrent.futures.ThreadPoolExecutor = field(
        default_factory=lambda: concurrent.futures.ThreadPoolExecutor(
            max_workers=ANSWER_WORKERS, thread_name_prefix="planqa-ask"))
    #: the worker processes, when settings.workers > 1 (then `qa` stays None here)
    pool: WorkerPool | None = None

    _plan: Plan | None = None

    @property
    def ready(self) -> bool:
        return self.startup_error is None

    @property
    def plan(self) -> Plan:
        """The plan for the outline: the library's, or parsed from the text file when the
        library could not load (the outline still works without an index)."""
        if self._plan is None:
            if self.qa is not None and self.ready:
                try:
                    self._plan = self.qa.plan
                except Exception:  # an unavailable index must not take the page down
                    logger.debug("the library's plan is unavailable", exc_info=True)
            if self._plan is None:
                self._plan = load_plan(self.settings.plan_path)
        return self._plan

    def warm_up(self) -> None:
        """Load model and index now; remember (not raise) an unavailable index."""
        t0 = time.perf_counter()
        if self.qa is None and self.settings.workers > 1:
            self._start_pool()
            logger.info("%d answer workers ready in %.1f s", self.settings.workers,
                        time.perf_counter() - t0)
            return
        try:
            if self.qa is None:
                searcher = load_searcher(self.settings, batch_queries=True)
                self.qa = PlanQA(self.settings, searcher=searcher)
            self.qa.warm_up()
        except IndexUnavailable as exc:
            self.startup_error = str(exc)
            logger.error("index unavailable: %s", exc)
            return
        except Exception as exc:  # a broken model must show a message, not a traceback
            self.startup_error = f"{type(exc).__name__}: {exc}"
            self.startup_message_zh = LOAD_FAILED_ZH
            logger.exception("model or index failed to load")
            return
        self.startup_error = None
        embeddings = self.qa.searcher.embeddings
        if self.settings.prefault_model and hasattr(embeddings, "prefault"):
            mb = embeddings.prefault() / 2**20
            logger.info("model weights resident (%.0f MB read)", mb)
        logger.info("model and index loaded in %.1f s", time.perf_counter() - t0)

    def _start_pool(self) -> None:
        pool = WorkerPool(self.settings, self.settings.workers)
        try:
            pool.start()
        except WorkerStartError as exc:
            self.startup_error = str(exc)
            if exc.kind != IndexUnavailable.__name__:
                self.startup_message_zh = LOAD_FAILED_ZH
            logger.error("answer workers failed to start: %s", exc)
            return
        self.pool = pool
        self.startup_error = None

    def close(self) -> None:
        """Stop the worker processes (threads need no stopping)."""
        if self.pool is not None:
            self.pool.shutdown()

    def _submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        """`fn(qa, *args)` on an answer worker; IndexUnavailable (the start-up error)
        when the library did not load."""
        if not self.ready or (self.qa is None and self.pool is None):
            raise IndexUnavailable(self.startup_error or "index unavailable")
        if self.pool is not None:
            return self.pool.submit(fn, *args)
        return self.executor.submit(fn, self.qa, *args)

    def submit(self, question: str, history: list[tuple[str, str]],
               script: str | None) -> concurrent.futures.Future[Answer]:
        """qa.ask on an answer worker (so a slow answer can be abandoned at the time limit)."""
        return self._submit(answer, question, history, script)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(qa, *args)` on an answer worker within the request time limit, awaited: what
        the OpenAI-compatible and Dify routes share with /api/ask (AnswerTimeout past it).
        With worker processes, `fn` and `args` must pickle (a module-level function)."""
        future = self._submit(fn, *args)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future),
                                          timeout=self.settings.request_timeout)
        except TimeoutError as exc:
            future.cancel()
            raise AnswerTimeout(
                f"no answer within {self.settings.request_timeout:g} s") from exc

    def ask(self, question: str, history: list[tuple[str, str]],
            script: str | None) -> Answer:
        """qa.ask with the request time limit; raises AnswerTimeout past it."""
        future = self.submit(question, history, script)
        try:
            return future.result(timeout=self.settings.request_timeout)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise AnswerTimeout(
                f"no answer within {self.settings.request_timeout:g} s") from exc


__all__ = ["ANSWER_WORKERS", "INDEX_MISSING_ZH", "LOAD_FAILED_ZH", "AnswerTimeout",
           "ChatService"]
