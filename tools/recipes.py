"""The two stock retrieval recipes planqa is benchmarked against (see tools.bench).

Both index the same cleaned plan text with the same embedding model as planqa, and
the "answer" a reader gets is the top chunk:

* `stock_langchain`: LangChain's tutorial recipe, `RecursiveCharacterTextSplitter`
  (500/50) + `FAISS` vector store.
* `chatchat_ensemble`: a Langchain-Chatchat-style hybrid, jieba BM25 + FAISS fused by
  `EnsembleRetriever` (0.5/0.5), chunks of 750 with overlap 150.

They exist for comparison only; nothing in planqa answers with them. The LangChain
imports live inside the functions so importing this module does no work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from langchain_core.retrievers import BaseRetriever

    from planqa.corpus import Plan

#: The stock LangChain recipe's chunking (the library's documented example values).
STOCK_CHUNK_SIZE, STOCK_CHUNK_OVERLAP = 500, 50
#: Langchain-Chatchat's knowledge-base defaults: CHUNK_SIZE 750, OVERLAP_SIZE 150,
#: VECTOR_SEARCH_TOP_K 3, ensemble weights 0.5/0.5.
CHATCHAT_CHUNK_SIZE, CHATCHAT_CHUNK_OVERLAP, CHATCHAT_TOP_K = 750, 150, 3
#: Chatchat splits Chinese at paragraph, line, then sentence and clause punctuation
#: (its ChineseRecursiveTextSplitter); the same order as plain separators.
CHATCHAT_SEPARATORS = ["\n\n", "\n", "。", "！", "？", "；", ";", "，", ",", ""]


@dataclass
class Recipe:
    """A stock recipe, ready to query: `retriever.invoke(q)[0]` is its answer."""

    name: str
    retriever: BaseRetriever
    chunks: list[str]
    build_seconds: float

    def top_chunk(self, question: str) -> str:
        """The best chunk for a question (a recipe never refuses)."""
        docs = self.retriever.invoke(question)
        return docs[0].page_content if docs else ""


def plan_text(plan: Plan) -> str:
    """The cleaned plan in Simplified script, one passage per paragraph, blank lines
    between them: the document a stock recipe would be fed."""
    return "\n\n".join(p.text_simplified for p in plan.passages)


def stock_langchain(plan: Plan, embeddings: Embeddings, k: int = 4) -> Recipe:
    """LangChain's stock recipe: recursive character chunks of 500 (overlap 50) in a
    FAISS vector store; `k` is the retriever's default of 4 (only the first is read)."""
    import time

    from langchain_community.vectorstores import FAISS
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    t0 = time.perf_counter()
    splitter = RecursiveCharacterTextSplitter(chunk_size=STOCK_CHUNK_SIZE,
                                              chunk_overlap=STOCK_CHUNK_OVERLAP)
    chunks = splitter.split_text(plan_text(plan))
    store = FAISS.from_texts(chunks, embeddings)
    retriever = store.as_retriever(search_kwargs={"k": k})
    return Recipe("LangChain stock (500/50 + FAISS)", retriever, chunks,
                  time.perf_counter() - t0)


def chatchat_ensemble(plan: Plan, embeddings: Embeddings, k: int = CHATCHAT_TOP_K) -> Recipe:
    """A Langchain-Chatchat-style hybrid: chunks of 750 (overlap 150), jieba BM25 and
    FAISS, each taking the top `k`, fused by `EnsembleRetriever` with weights 0.5/0.5."""
    import time

    import jieba
    from langchain_community.retrievers import BM25Retriever
    from langchain_community.vectorstores import FAISS
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    try:  # LangChain 1.x moved the classic retrievers out of `langchain`
        from langchain_classic.retrievers import EnsembleRetriever
    except ImportError:  # pragma: no cover - LangChain 0.3
        from langchain.retrievers import EnsembleRetriever

    t0 = time.perf_counter()
    splitter = RecursiveCharacterTextSplitter(chunk_size=CHATCHAT_CHUNK_SIZE,
                                              chunk_overlap=CHATCHAT_CHUNK_OVERLAP,
                                              separators=CHATCHAT_SEPARATORS,
                                              keep_separator="end")
    chunks = splitter.split_text(plan_text(plan))
    bm25 = BM25Retriever.from_texts(chunks, preprocess_func=jieba.lcut_for_search, k=k)
    dense = FAISS.from_texts(chunks, embeddings).as_retriever(search_kwargs={"k": k})
    ensemble = EnsembleRetriever(retrievers=[bm25, dense], weights=[0.5, 0.5])
    return Recipe("Chatchat-style ensemble (750/150, BM25+FAISS)", ensemble, chunks,
                  time.perf_counter() - t0)
