"""PlanQA: the retrieval-augmented answering chain, built from LangChain Runnables.

    condense (follow-ups → self-contained question)
      | retrieve (hybrid search, the conversation's clause as a prior)
      | compose (extractive answer; an optional LLM answer, verified, when configured)
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langchain_core.runnables.config import (
    get_callback_manager_for_config,
    var_child_runnable_config,
)
from langchain_core.tracers import context as tracing_context
from langchain_core.utils.env import env_var_is_set
from langsmith.utils import tracing_is_enabled

from planqa.answer_type import sentence_answers
from planqa.answering import (
    DEFAULT_CALIBRATION,
    Answer,
    Calibration,
    compose,
    roundup_holders,
)
from planqa.config import Settings
from planqa.conversation import Resolved, resolve, resolve_as_follow_up
from planqa.corpus import Plan
from planqa.errors import InvalidQuestion
from planqa.query import ROUNDUP, roundup_topic
from planqa.retrieval import Hit, PlanSearcher, hit_to_document, load_searcher
from planqa.text import clean_input, has_cjk, is_traditional

log = logging.getLogger("planqa")

#: How many passages the answerer sees (and "可能相关" may list).
TOP_K = 5
#: Earlier turns a follow-up is resolved from; older ones cannot change how it resolves.
MAX_HISTORY_TURNS = 20
_MAX_TURN_CHARS = 4000


class PlanQA:
    """Answers questions about the plan, quoting section and clause.

    >>> qa = PlanQA()
    >>> qa.ask("事业编制要精简到多少名？").citations[0].ref
    '二、2'

    The searcher (model + index) and the LLM are injectable; by default they come
    from `Settings.from_env()` and load on first use (or `warm_up()`)."""

    def __init__(self, settings: Settings | None = None, searcher: PlanSearcher | None = None,
                 llm: Any | None = None, calibration: Calibration = DEFAULT_CALIBRATION) -> None:
        self.settings = settings or Settings.from_env()
        self._searcher = searcher
        self._llm = llm
        self._llm_configured = llm is not None or bool(self.settings.llm_base_url)
        self.calibration = calibration
        self._lock = threading.Lock()
        self._chain: Runnable | None = None

    # -- loading ---------------------------------------------------------------

    @property
    def searcher(self) -> PlanSearcher:
        if self._searcher is None:
            with self._lock:
                if self._searcher is None:
                    self._searcher = load_searcher(self.settings)
        return self._searcher

    @property
    def plan(self) -> Plan:
        return self.searcher.plan

    @property
    def llm(self) -> Any | None:
        if self._llm is None and self._llm_configured:
            try:
                from planqa.llm import LLMAnswerer

                self._llm = LLMAnswerer.from_settings(self.settings,
                                                      self.plan.profile.quoted_title)
            except Exception as exc:  # the LLM is optional: answer without it
                log.warning("LLM disabled (%s: %s); answering extractively",
                            type(exc).__name__, exc)
                self._llm_configured = False
        return self._llm

    def warm_up(self) -> None:
        """Load model and index now, and run one query so first answers are fast."""
        self.ask(self.plan.profile.warm_up_question)

    @property
    def chain(self) -> Runnable:
        """condense | retrieve | compose, as a LangChain Runnable over a dict state."""
        if self._chain is None:
            self._chain = (RunnableLambda(self._condense, name="condense")
                           | RunnableLambda(self._retrieve, name="retrieve")
                           | RunnableLambda(self._compose, name="compose"))
        return self._chain

    # -- the steps -------------------------------------------------------------

    def _condense(self, state: dict) -> dict:
        question = self.searcher.prepare(state["question"])
        history = [(clean_input(q), a) for q, a in state.get("history") or []]
        resolved = resolve(question, history, self.plan)
        return {**state, "question": question, "history": history, "resolved": resolved}

    def _retrieve(self, state: dict, config: RunnableConfig) -> dict:
        """Retrieval, reported to tracers as a retriever run with its documents."""
        resolved = state["resolved"]
        manager = get_callback_manager_for_config(config)
        run = manager.on_retriever_start({"name": "PlanRetriever"}, resolved.question,
                                         name="PlanRetriever")
        try:
            out = self._retrieve_hits(state)
        except Exception as exc:
            run.on_retriever_error(exc)
            raise
        traditional = self.searcher.parse(state["question"]).traditional
        run.on_retriever_end([hit_to_document(h, traditional) for h in out["hits"]])
        return out

    def _retrieve_hits(self, state: dict) -> dict:
        resolved = state["resolved"]
        query = self.searcher.parse(resolved.question)
        if query.shape == ROUNDUP:
            # Every passage on the topic, scored for the topic words alone.
            topic = roundup_topic(query.simplified) or query.simplified
            words = topic
            if not query.english:
                # Scored for the plan's words in the topic: a passage holds "every word of
                # the topic" only when no word the plan never uses counts against it.
                words = " ".join(self.searcher.plan_terms(topic)) or topic
            everyone = len(self.plan.passages)
            hits = self.searcher.search(words, k=everyone)
            # ... and, when fewer than two passages hold all of those, for the whole topic
            # as put ("年轻人"), which the dense and link channels read.
            wide = (self.searcher.search(topic, k=everyone)
                    if words != topic and len(roundup_holders(hits)) < 2 else None)
            return {**state, "hits": hits, "topic_hits": wide}
        hits = None
        if resolved.follow_up and resolved.prior and self._focus_answers(resolved):
            # An elliptical follow-up asking for a kind of fact ("什么时候完成？") is
            # answered from the clause in focus when that clause holds one.
            hits = self.searcher.search(query, k=TOP_K, prior=resolved.prior)
            focus_id = next(iter(resolved.prior))
            first = [h for h in hits if h.passage.id == focus_id]
            if first:
                return {**state, "hits": first + [h for h in hits if h is not first[0]]}
        if resolved.tentative:
            # A short question may still stand alone ("科普怎么搞？"): keep it as asked
            # when it finds a confident answer by itself.
            alone = self.searcher.search(resolved.original, k=TOP_K)
            if alone and alone[0].dense >= self.calibration.strong_dense:
                return {**state, "hits": alone,
                        "resolved": Resolved(resolved.original, resolved.original)}
        if hits is None:  # searched once already when the focus had no answer
            hits = self.searcher.search(query, k=TOP_K, prior=resolved.prior)
        if resolved.focus and hits:
            hits = self._about_focus(hits, resolved.focus)
        if hits and (resolved.focus or resolved.seen):
            hits = [self._refocus(hits[0], resolved), *hits[1:]]
        return {**state, "hits": hits}

    def _refocus(self, hit: Hit, resolved: Resolved) -> Hit:
        """The follow-up's own words choose the sentences ("那评估工作呢" quotes the one
        on 评估, not the earlier topic's best); what the previous answer already quoted
        is left out when more is asked for ("除了这个，还有啥？")."""
        scores = list(hit.sentence_scores)
        if not scores:
            return hit
        focus = self.searcher.parse(resolved.focus) if resolved.focus else None  # read once
        terms = self.searcher.query_terms(focus) if focus else []
        cover = self.searcher.sentence_coverage(terms, hit.passage.id) if terms else ()
        literal = focus.simplified if focus else ""
        if cover and len(literal) >= 2:
            # the words as typed, where the plan's tokens split them ("的线上交流": 线|上交)
            cover = tuple(1.0 if literal in sentence else c for c, sentence in
                          zip(cover, hit.passage.sentences_simplified, strict=True))
        if cover and max(cover) > 0:
            scores = [0.5 * s + c for s, c in zip(scores, cover, strict=True)]
        if resolved.seen:
            sentences = hit.passage.sentences_simplified
            # quotes are matched by their pieces: a quote may hold quotes of its own
            fresh = [i for i, s in enumerate(sentences)
                     if not any(len(q) >= 6 and q in s for q in resolved.seen)
                     and not (i == 0 and hit.passage.kind == "clause")]
            if fresh:  # (a clause with nothing new is answered as asked)
                scores = [s if i in fresh else -1.0 for i, s in enumerate(scores)]
        return replace(hit, sentence_scores=tuple(scores))

    def _focus_answers(self, resolved: Resolved) -> bool:
        """Does the clause in focus hold the kind of fact the follow-up asks for?"""
        asked = self.searcher.parse(resolved.original)
        if asked.answer_type is None or (resolved.focus and len(resolved.focus) > 4):
            return False
        passage = self.plan.get(next(iter(resolved.prior)))
        return any(sentence_answers(asked.simplified, s) for s in passage.sentences_simplified)

    def _about_focus(self, hits: list, focus: str) -> list:
        """Put first the best passage that speaks of a follow-up's new words, a clause
        of the same section whose heading names them before one that only mentions them
        ("指导思想是啥" → "目标呢" is 一、3 总体目标, though 一、1 says 目标 too; another
        section's title naming 学会 does not outrank a clause on 学会); if none of the
        hits speaks of them, search for those words alone."""
        terms = self.searcher.query_terms(focus)
        if not terms:
            return hits

        def speaks_of(hit) -> bool:
            return self.searcher.lexical_coverage(terms, hit.passage.id) >= 0.99

        def names(hit) -> bool:
            return (hit.passage.section == hits[0].passage.section
                    and all(t in hit.passage.heading_simplified for t in terms))

        # the new words searched alone, at most once (a query embedding each time)
        alone = functools.cache(lambda: self.searcher.search(focus, k=TOP_K))
        about = [h for h in hits if speaks_of(h)]
        if about and speaks_of(hits[0]):
            named = [h for h in about if names(h)]
            if names(hits[0]) or not named:
                return hits
            about = named
        if not about:
            about = [h for h in alone() if speaks_of(h)][:1]
        first = about[:1]
        if first and first[0] is not hits[0]:
            # Scored against the whole rewrite ("目标 第二条 基本原则第一条是啥"), the
            # passage that speaks of the new words looks off topic; its evidence is its
            # match to those words, which is what moved it first.
            own = next((h for h in alone() if h.passage.id == first[0].passage.id), None)
            if own is not None:
                h = first[0]
                first = [replace(h, dense=max(h.dense, own.dense), link=max(h.link, own.link),
                                 lexical=max(h.lexical, own.lexical))]
        return first + [h for h in hits if not first or h.passage.id != first[0].passage.id]

    def _compose(self, state: dict) -> Answer:
        answer = self._compose_one(state)
        if not answer.found and not state["resolved"].follow_up and state.get("history"):
            # Refused on its own, a short question in a conversation may lean on the
            # last turn though it has no follow-up form ("工作方式上要成啥样"): read it so
            # once (this second retrieval is not reported to tracers as a retriever run).
            again = resolve_as_follow_up(state["question"], state["history"], self.plan)
            if again is not None:
                second = self._compose_one(self._retrieve_hits({**state, "resolved": again}))
                if second.found:
                    return second
        return answer

    def _compose_one(self, state: dict) -> Answer:
        question, resolved, hits = state["question"], state["resolved"], state["hits"]
        script = state.get("script")
        traditional = (script == "traditional") if script else (
            has_cjk(question) and is_traditional(question))
        parse = self.searcher.parse  # typos read as the plan's words, as retrieval did
        answer = compose(parse(resolved.question), hits, self.plan, traditional=traditional,
                         asked=parse(question), cal=self.calibration,
                         topic_hits=state.get("topic_hits"), inherits=resolved.asks)
        # Only sentence picks are rewritten; a clause quoted in full or an outline built
        # from the plan's structure is already the best answer.
        if answer.mode == "quote" and self.llm is not None:
            answer = self.llm.answer(question, resolved.question, hits, answer)
        return _with_question(answer, resolved.question)

    # -- public ----------------------------------------------------------------

    def ask(self, question: str, history: list[tuple[str, str]] | None = None,
            script: str | None = None, config: RunnableConfig | None = None) -> Answer:
        """Answer `question`; `history` holds earlier (question, answer) turns, oldest first.

        `script` forces "simplified" or "traditional"; by default the answer follows the
        question's script (English questions get Simplified Chinese). `config` is
        LangChain's (callbacks, tags): a tracer sees condense, a retriever run with its
        documents, and compose.
        Raises InvalidQuestion (a ValueError) for an empty question or a malformed history."""
        if not isinstance(question, str):
            raise InvalidQuestion("question must be a string")
        if script not in (None, "simplified", "traditional"):
            raise InvalidQuestion("script must be 'simplified' or 'traditional'")
        history = _check_history(history)
        state = {"question": question, "history": history, "script": script}
        if _observed(config):
            return self.chain.invoke(state, config=config)
        # Nobody watches: the same three steps without the Runnable machinery, which
        # sets up a run per step for callbacks no one registered (2-3 ms of a 10 ms answer).
        return self._compose(self._retrieve_hits(self._condense(state)))

    def stream(self, question: str, history: list[tuple[str, str]] | None = None,
               script: str | None = None) -> Iterator[str]:
        """The answer text in pieces (a line at a time), for chat front ends."""
        answer = self.ask(question, history, script)
        lines = answer.text.split("\n")
        for i, line in enumerate(lines):
            yield line + ("\n" if i < len(lines) - 1 else "")


def _observed(config: RunnableConfig | None) -> bool:
    """Would anyone see this ask's runs: callbacks passed in, a parent run it is part of,
    LangSmith tracing, or a handler LangChain adds by itself (a configure hook)?"""
    if config or var_child_runnable_config.get() is not None or tracing_is_enabled():
        return True
    hooks = getattr(tracing_context, "_configure_hooks", None)
    if hooks is None:  # a LangChain that keeps them elsewhere: take the chain to be safe
        return True
    return any(var.get() is not None or (env is not None and env_var_is_set(env))
               for var, _, _, env in hooks)


def _with_question(answer: Answer, question: str) -> Answer:
    return replace(answer, question=question)


def _check_history(history: Any) -> list[tuple[str, str]]:
    if history is None:
        return []
    if not isinstance(history, list | tuple):
        raise InvalidQuestion("history must be a list of [question, answer] pairs")
    out = []
    for turn in history:
        if (not isinstance(turn, list | tuple) or len(turn) != 2
                or not all(isinstance(x, str) for x in turn)):
            raise InvalidQuestion("history must be a list of [question, answer] pairs of strings")
        # Only a turn's question and its closing 出处 line matter for a follow-up; clipping
        # keeps a megabyte-long turn from costing seconds.
        out.append((turn[0][:_MAX_TURN_CHARS], turn[1][-_MAX_TURN_CHARS:]))
    return out[-MAX_HISTORY_TURNS:]
