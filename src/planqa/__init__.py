"""planqa: ask the CAST reform implementation plan, get answers that quote section and clause.

Public API (imported lazily, so `import planqa` does no work):

    planqa.load_retriever(k=5)  -> a LangChain BaseRetriever over the plan's clauses
    planqa.PlanQA()             -> the answering chain: .ask(question, history) -> Answer
    planqa.load_plan()          -> the plan as structured data
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Answer", "Citation", "PlanQA", "Settings", "load_plan", "load_retriever"]

_LAZY = {
    "Answer": "planqa.answering",
    "Citation": "planqa.answering",
    "PlanQA": "planqa.chain",
    "Settings": "planqa.config",
    "load_plan": "planqa.corpus",
    "load_retriever": "planqa.retrieval",
}

if TYPE_CHECKING:
    from planqa.answering import Answer, Citation
    from planqa.chain import PlanQA
    from planqa.config import Settings
    from planqa.corpus import load_plan
    from planqa.retrieval import load_retriever


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'planqa' has no attribute {name!r}")
