"""LangChain's own standard tests for retrievers (`langchain-tests`'
RetrieversIntegrationTests) on PlanRetriever with the real model and index: `k` as a
constructor argument and per call (`invoke(q, k=1)`), sync and async invocation.

Plus what the standard tests cannot know: `metadata["score"]` is calibrated, so it means
the same for every question — a question the plan does not cover scores low even as its
own top document, and scores fall in rank order."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_tests.integration_tests import RetrieversIntegrationTests

from planqa.retrieval import PlanRetriever


class TestPlanRetrieverStandard(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _loaded(self, searcher) -> None:
        # autouse fixtures run first: the constructor params need the session's searcher
        self._searcher = searcher

    @property
    def retriever_constructor(self) -> type[PlanRetriever]:
        return PlanRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"searcher": self._searcher}

    @property
    def retriever_query_example(self) -> str:
        return "事业编制要精简到多少名？"


@pytest.fixture(scope="module")
def retriever(searcher) -> PlanRetriever:
    return PlanRetriever(searcher=searcher, k=5)


def test_score_is_comparable_across_questions(retriever: PlanRetriever) -> None:
    covered = retriever.invoke("事业编制要精简到多少名？")[0].metadata
    for q in ("明天北京天气怎么样？", "asdfgh"):
        top = retriever.invoke(q)[0].metadata
        assert top["fused"] == 1.0  # the per-query score: top is always 1.0
        assert top["score"] < 0.1 < covered["score"]


def test_scores_fall_in_rank_order_and_stay_in_0_1(retriever: PlanRetriever) -> None:
    docs = retriever.invoke("学会要怎么改革治理结构？", k=8)
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert all(0.0 <= d.metadata["fused"] <= 1.0 for d in docs)


def test_exact_reference_is_certain(retriever: PlanRetriever) -> None:
    top = retriever.invoke("第二部分第5条")[0].metadata
    assert top["exact_ref"] is True and top["score"] == 1.0
