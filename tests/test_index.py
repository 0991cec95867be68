"""The index and its manifest: built, saved, loaded; stale or corrupt ones refused."""

import json
import re
import shutil

import numpy as np
import pytest

from planqa.index import (
    INDEX_FILE,
    MANIFEST_FILE,
    UNITS_FILE,
    IndexUnavailable,
    build_index,
    load_index,
    plan_units,
    save_index,
    sentence_windows,
)


@pytest.fixture(scope="module")
def built(tmp_path_factory, searcher):
    d = tmp_path_factory.mktemp("index")
    save_index(build_index(searcher.plan, searcher.embeddings), d)
    return d


@pytest.fixture
def copy(built, tmp_path):
    d = tmp_path / "index"
    shutil.copytree(built, d)
    return d


def test_round_trip_and_manifest(built, searcher):
    idx = load_index(built, searcher.plan, searcher.embeddings)
    m = idx.manifest
    assert m["units"] == len(idx.units) == idx.faiss_index.ntotal
    assert m["dim"] == 384
    assert m["corpus_sha256"] == searcher.plan.sha256
    assert m["model"] == "intfloat/multilingual-e5-small"
    assert {"faiss-cpu", "sentence-transformers", "torch"} <= set(m["versions"])


def test_similarities_are_faiss_inner_products_by_unit(searcher):
    """Search reads every unit's similarity straight off the vectors; FAISS ranks the same
    numbers."""
    index = searcher.index
    qvecs = searcher.embeddings.encode_queries(["学会的治理结构怎么改", "What about youth?"])
    sims, ids = index.search(qvecs)
    direct = index.similarities(qvecs)
    assert direct.shape == (2, len(index.units))
    for row in range(2):
        np.testing.assert_allclose(direct[row, ids[row]], sims[row], atol=1e-5)


def test_committed_index_is_current(searcher, settings):
    """The index in the repo matches the plan, the links and the model: `make run` serves
    at once."""
    from planqa.links import read_links

    links = read_links(settings.links_path)
    index = load_index(settings.index_dir, searcher.plan, searcher.embeddings, links)
    assert sum(u.kind == "link" for u in index.units) == len(links)


def test_missing_index_names_the_rebuild_command(tmp_path, searcher):
    with pytest.raises(IndexUnavailable, match="make index"):
        load_index(tmp_path / "nowhere", searcher.plan, searcher.embeddings)


@pytest.mark.parametrize("damage", ["truncate", "units", "manifest-json"])
def test_corrupt_index_is_refused(copy, searcher, damage):
    if damage == "truncate":
        data = (copy / INDEX_FILE).read_bytes()
        (copy / INDEX_FILE).write_bytes(data[: len(data) // 2])
    elif damage == "units":
        (copy / UNITS_FILE).write_text("[{\"oops\": 1}]", encoding="utf-8")
    else:
        (copy / MANIFEST_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(IndexUnavailable, match="make index"):
        load_index(copy, searcher.plan, searcher.embeddings)


@pytest.mark.parametrize("name", [INDEX_FILE, UNITS_FILE])
def test_bytes_changed_in_place_are_caught_by_the_checksums(copy, searcher, name):
    """4 KB of other bytes in the middle of a file, its size unchanged, would still parse
    (and be served, quoting the wrong clauses); the manifest's sha256 catches it."""
    data = bytearray((copy / name).read_bytes())
    mid = len(data) // 2
    data[mid:mid + 4096] = bytes(b ^ 0x5A for b in data[mid:mid + 4096])
    (copy / name).write_bytes(bytes(data))
    with pytest.raises(IndexUnavailable, match=rf"damaged: {re.escape(name)}.*make index"):
        load_index(copy, searcher.plan, searcher.embeddings)


def test_an_index_without_checksums_is_refused(copy, searcher):
    manifest = json.loads((copy / MANIFEST_FILE).read_text(encoding="utf-8"))
    del manifest["files"]
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(IndexUnavailable, match=r"no checksums.*make index"):
        load_index(copy, searcher.plan, searcher.embeddings)


def test_the_index_keeps_each_units_bm25_terms(built, searcher):
    from planqa.text import tokenize, tokenizer_signature

    idx = load_index(built, searcher.plan, searcher.embeddings)
    assert idx.manifest["tokenizer"] == tokenizer_signature()
    assert all(u.tokens == tuple(tokenize(u.text)) for u in idx.units)
    assert sum(bool(u.tokens) for u in idx.units) > 0.9 * len(idx.units)


def test_terms_cut_by_another_tokenizer_are_cut_again(copy, built, searcher):
    from planqa.retrieval import PlanSearcher

    manifest = json.loads((copy / MANIFEST_FILE).read_text(encoding="utf-8"))
    manifest["tokenizer"] = "jieba 0.1; stopwords 000000000000"
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
    idx = load_index(copy, searcher.plan, searcher.embeddings)  # vectors still good
    assert all(u.tokens == () for u in idx.units)
    again = PlanSearcher(searcher.plan, idx, searcher.embeddings)
    stored = PlanSearcher(searcher.plan, load_index(built, searcher.plan, searcher.embeddings),
                          searcher.embeddings)
    for q in ("学会的理事怎么选出来？", "事业编制要精简到多少名？"):
        assert ([(h.passage.ref, h.lexical) for h in again.search(q)]
                == [(h.passage.ref, h.lexical) for h in stored.search(q)])


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("corpus_sha256", "0" * 64, "plan's text changed"),
    ("model_fingerprint", "another", "another embedding model"),
    ("unit_scheme", "v0", "cuts the plan into units differently"),
    ("units", 3, "disagree on the number of units"),
])
def test_stale_index_is_refused_with_the_reason(copy, searcher, field, value, reason):
    manifest = json.loads((copy / MANIFEST_FILE).read_text(encoding="utf-8"))
    manifest[field] = value
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(IndexUnavailable, match=reason):
        load_index(copy, searcher.plan, searcher.embeddings)


def test_units_cover_every_sentence(plan):
    units = plan_units(plan)
    sentences = {(u.passage_id, u.position) for u in units if u.kind == "sentence"}
    # A section's title is a unit only where it has no lead to stand for it (一、).
    expected = {(p.id, i) for p in plan.passages
                if p.kind != "title" or plan.section(p.section).lead is None
                for i in range(len(p.sentences_simplified))}
    assert sentences == expected
    windows = [u for u in units if u.kind == "window"]
    assert windows
    for (pid, pos) in {(u.passage_id, u.position) for u in windows}:
        parts = [u.text for u in windows if (u.passage_id, u.position) == (pid, pos)]
        assert "".join(parts) == plan.get(pid).sentences_simplified[pos]


def test_sentence_windows_cut_at_commas():
    s = "甲" * 30 + "," + "乙" * 30 + "," + "丙" * 30 + "。"
    w = sentence_windows(s, size=40)
    assert "".join(w) == s and len(w) == 3
    assert sentence_windows("短句。") == []
