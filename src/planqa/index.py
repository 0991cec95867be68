"""The FAISS index over the plan's retrieval units, with a manifest that guards it.

Files under the index directory:
  plan.faiss      inner-product index of L2-normalized unit embeddings
  units.json      what each vector is (passage id, sentence position, text) and its
                  BM25 terms (so a start need not cut two thousand units again)
  manifest.json   model + fingerprint, corpus and links sha256, unit scheme, counts,
                  versions (nothing that changes from one build to the next)

`load_index` refuses a missing, corrupt or stale index with `IndexUnavailable`,
whose message names the command that rebuilds it; it never serves one silently.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from pathlib import Path

import numpy as np

from planqa.corpus import Plan
from planqa.embeddings import PlanEmbeddings
from planqa.errors import IndexUnavailable
from planqa.links import Link, links_sha256, ref_passage
from planqa.text import normalize_query, tokenize, tokenizer_signature

REBUILD_HINT = "run `make index` (or `planqa index`) to rebuild it"
#: Bump when the way units are cut or embedded changes: old indexes become stale.
UNIT_SCHEME = "sentence+window50+passage+link/v3"
INDEX_FILE, UNITS_FILE, MANIFEST_FILE = "plan.faiss", "units.json", "manifest.json"


@dataclass(frozen=True)
class Unit:
    """One embedded piece of the plan: a sentence of a passage, or a whole passage."""

    passage_id: str
    kind: str  # "sentence" | "window" (part of a long sentence) | "passage" | "link"
    position: int  # sentence index inside the passage; -1 for a whole passage or a link
    text: str  # Simplified text of the unit
    embed_text: str  # what the model embeds
    #: its BM25 terms (`planqa.text.tokenize` of `text`); empty when not stored
    tokens: tuple[str, ...] = ()


#: Sentences longer than this are also embedded as comma-delimited windows: one
#: long sentence of the plan often carries several facts, and a short question
#: matches the window with its fact better than the whole (eval/: +4 pts dense hit@1).
WINDOW_CHARS = 50
_COMMA = re.compile(r"(?<=[,;，；])")


def sentence_windows(sentence: str, size: int = WINDOW_CHARS) -> list[str]:
    """Cut a long sentence at commas into consecutive windows of about `size` chars."""
    if len(sentence) <= size + size // 5:
        return []
    windows, buf = [], ""
    for piece in (x for x in _COMMA.split(sentence) if x):
        if buf and len(buf) + len(piece) > size:
            windows.append(buf)
            buf = ""
        buf += piece
    if buf:
        windows.append(buf)
    return windows if len(windows) > 1 else []


UNIT_KINDS = ("sentence", "window", "passage", "link")


def plan_units(plan: Plan, links: tuple[Link, ...] = ()) -> list[Unit]:
    """Cut the plan into retrieval units (pure): every sentence, the comma windows of
    long sentences, whole passages (for questions about a clause's topic), and the
    question links (staff's own words for a passage; never quoted).

    Units are embedded as they stand: adding the clause heading as context was
    measured and made dense retrieval worse (0.78 vs 0.81 hit@1 on eval/)."""
    units: list[Unit] = []
    for p in plan.passages:
        if p.kind == "title" and (sec := plan.section(p.section)) and sec.lead:
            continue  # the lead stands for its section
        for i, sent in enumerate(p.sentences_simplified):
            units.append(Unit(p.id, "sentence", i, sent, sent))
            units += [Unit(p.id, "window", i, w, w) for w in sentence_windows(sent)]
        if len(p.sentences_simplified) > 1:
            units.append(Unit(p.id, "passage", -1, p.text_simplified, p.text_simplified))
    for link in links:
        target = ref_passage(plan, link.ref)
        if target is None:
            raise ValueError(f"question link for unknown passage {link.ref!r}: {link.question}")
        question = normalize_query(link.question)
        units.append(Unit(target.id, "link", -1, question, question))
    return units


def _versions() -> dict[str, str]:
    out = {}
    for dist in ("planqa", "faiss-cpu", "sentence-transformers", "torch", "transformers"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "unknown"
    return out


@dataclass
class PlanIndex:
    """Unit vectors in FAISS plus the units they stand for."""

    faiss_index: object
    units: list[Unit]
    manifest: dict

    def search(self, query_vecs: np.ndarray, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Inner-product search; k defaults to every unit (the plan is small)."""
        k = min(k or len(self.units), len(self.units))
        return self.faiss_index.search(np.ascontiguousarray(query_vecs, dtype=np.float32), k)

    def similarities(self, query_vecs: np.ndarray) -> np.ndarray:
        """Every unit's inner product with each query, in unit order (n_queries, n_units).
        A search scores every unit; FAISS's k = all would rank them too (a heap over 2,600
        units, 0.5 ms a question) for a caller that only reads them back by unit."""
        return np.ascontiguousarray(query_vecs, dtype=np.float32) @ self.vectors.T

    @functools.cached_property
    def vectors(self) -> np.ndarray:
        """Every unit's vector, in unit order (read out of FAISS once)."""
        return self.faiss_index.reconstruct_n(0, self.faiss_index.ntotal)


def embedded_by(backend: str) -> str:
    """The backend that embeds an index, with the ONNX exporter's version for an ONNX
    backend (its graph changes with it): "torch", "onnx-int8 (exporter 4)"."""
    if backend == "torch":
        return backend
    from planqa.onnx_backend import EXPORTER_VERSION

    return f"{backend} (exporter {EXPORTER_VERSION})"


def build_index(plan: Plan, embeddings: PlanEmbeddings,
                links: tuple[Link, ...] = ()) -> PlanIndex:
    """Embed every unit of the plan (and its question links) into a fresh index."""
    import faiss

    units = [replace(u, tokens=tuple(tokenize(u.text))) for u in plan_units(plan, links)]
    # Links are questions, so they are embedded as queries: e5 compares a question with
    # a question best on the query side of both.
    is_link = np.array([u.kind == "link" for u in units])
    vecs = np.empty((len(units), embeddings.dim), dtype=np.float32)
    passages = [u.embed_text for u in units if u.kind != "link"]
    questions = [u.embed_text for u in units if u.kind == "link"]
    if passages:
        vecs[~is_link] = embeddings.encode_passages(passages)
    if questions:
        vecs[is_link] = embeddings.encode_queries(questions)
    index = faiss.IndexFlatIP(vecs.shape[1])
    index.add(vecs)
    manifest = {
        "format": 1,
        "model": embeddings.name,
        "model_fingerprint": embeddings.fingerprint,
        "corpus_sha256": plan.sha256,
        "links_sha256": links_sha256(links),
        "unit_scheme": UNIT_SCHEME,
        "units": len(units),
        "dim": int(vecs.shape[1]),
        # what embedded the units (informational: every backend reads every index)
        "embedded_by": embedded_by(embeddings.backend),
        "tokenizer": tokenizer_signature(),
        "versions": _versions(),
    }
    return PlanIndex(index, units, manifest)


def save_index(index: PlanIndex, directory: Path) -> None:
    """Write the three files atomically (temp files, then rename), manifest last."""
    import faiss

    directory.mkdir(parents=True, exist_ok=True)

    checksums: dict[str, str] = {}

    def write(name: str, writer) -> None:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.")
        os.close(fd)
        try:
            writer(tmp)
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; the index is shared, not secret
            checksums[name] = _sha256(Path(tmp))
            os.replace(tmp, directory / name)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def text_writer(payload: object):
        def _w(path: str) -> None:
            Path(path).write_text(
                json.dumps(payload, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
            )

        return _w

    write(INDEX_FILE, lambda path: faiss.write_index(index.faiss_index, path))
    write(UNITS_FILE, text_writer([asdict(u) for u in index.units]))
    # The manifest, written last, records what the other two files must hash to.
    index.manifest["files"] = dict(sorted(checksums.items()))
    write(MANIFEST_FILE, text_writer(index.manifest))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _units_match(units: list[Unit], plan: Plan) -> bool:
    """Every unit names a passage of the plan and has well-typed fields (a hand-edited or
    corrupt units.json must not reach the searcher, which would fail obscurely)."""
    ids = {p.id for p in plan.passages}
    return all(isinstance(u.passage_id, str) and u.passage_id in ids
               and u.kind in UNIT_KINDS
               and type(u.position) is int
               and isinstance(u.text, str) and isinstance(u.embed_text, str)
               and isinstance(u.tokens, tuple) and all(isinstance(t, str) for t in u.tokens)
               for u in units)


def load_index(directory: Path, plan: Plan, embeddings: PlanEmbeddings,
               links: tuple[Link, ...] = ()) -> PlanIndex:
    """Load and verify the index; raise `IndexUnavailable` if it cannot be trusted."""
    import faiss

    manifest_path = directory / MANIFEST_FILE
    if not manifest_path.is_file():
        raise IndexUnavailable(f"No index at {directory}: {REBUILD_HINT}.")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if not isinstance(manifest, dict):  # valid JSON of the wrong shape
            raise ValueError("manifest.json is not a JSON object")
        # Bytes changed in place (a bad disk, a hand edit) would still parse and be
        # served: the files must hash to what the manifest recorded when it was built.
        files = manifest.get("files")
        if not isinstance(files, dict) or set(files) != {INDEX_FILE, UNITS_FILE}:
            raise IndexUnavailable(f"The index at {directory} has no checksums (built by an "
                                   f"older planqa): {REBUILD_HINT}.")
        for name, digest in files.items():
            if _sha256(directory / name) != digest:
                raise IndexUnavailable(f"The index at {directory} is damaged: {name} does not "
                                       f"match its checksum in {MANIFEST_FILE}: {REBUILD_HINT}.")
        units = [Unit(**{**u, "tokens": tuple(u.get("tokens") or ())})
                 for u in json.loads((directory / UNITS_FILE).read_text("utf-8"))]
        faiss_index = faiss.read_index(str(directory / INDEX_FILE))
    except IndexUnavailable:
        raise
    except (OSError, ValueError, TypeError, RuntimeError) as exc:
        raise IndexUnavailable(
            f"The index at {directory} is unreadable ({type(exc).__name__}): {REBUILD_HINT}."
        ) from exc

    problems = []
    if manifest.get("corpus_sha256") != plan.sha256:
        problems.append("the plan's text changed since it was built")
    if manifest.get("links_sha256") != links_sha256(links):
        problems.append("the question links changed since it was built")
    if manifest.get("model_fingerprint") != embeddings.fingerprint:
        problems.append(
            f"it was built with another embedding model ({manifest.get('model')!r}, "
            f"now {embeddings.name!r})"
        )
    if manifest.get("unit_scheme") != UNIT_SCHEME:
        problems.append("this planqa version cuts the plan into units differently")
    if not (manifest.get("units") == len(units) == faiss_index.ntotal):
        problems.append("its files disagree on the number of units")
    if not _units_match(units, plan):
        problems.append("units.json does not describe this plan's passages")
    if manifest.get("dim") != faiss_index.d or faiss_index.d != embeddings.dim:
        problems.append("its vector dimension does not match the model")
    if problems:
        raise IndexUnavailable(f"The index at {directory} is stale: {'; '.join(problems)}: "
                               f"{REBUILD_HINT}.")
    if manifest.get("tokenizer") != tokenizer_signature():
        # Terms cut by another jieba would not match the question's: cut them again at
        # start (a second or so); the vectors are still good.
        units = [replace(u, tokens=()) for u in units]
    return PlanIndex(faiss_index, units, manifest)
