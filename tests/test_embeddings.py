"""The embedding model as loaded: LangChain face, weights made resident on demand, and the
ONNX backends (PLANQA_BACKEND) against torch: tokens, vectors and retrieval per eval kind."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from planqa import onnx_backend
from planqa.config import Settings
from planqa.errors import ConfigError
from planqa.evaluation import DEFAULT_SET, HELDOUT_SET, MULTITURN, gold_rank, load_cases

ROOT = Path(__file__).resolve().parents[1]
ARTIFACT = ROOT / "test-artifacts" / "onnx-parity.json"
#: fp32 ONNX is the same graph as torch; int8 per-channel measured min 0.993 on eval/.
MIN_COSINE = {"onnx": 0.9999, "onnx-int8": 0.99}
#: Texts the tokenizer must treat exactly as the sentence-transformers one does.
TRICKY = ["", "   ", "<s>科协</s> <pad> <unk>", "ＡＢＣ１２３，全角", "科協系統深化改革",
          "What is CAST?", "😀 emoji", "事业编制" * 400]  # the last: truncated at 512


def _resident_weight_bytes() -> tuple[int, int]:
    """(resident, mapped) bytes of memory-mapped *.safetensors files in this process."""
    resident = mapped = 0
    current = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if "-" in head[0] and len(head) >= 5:  # a mapping's header line
            current = line.rstrip().endswith(".safetensors")
        elif current and head[0] == "Rss:":
            resident += int(head[1]) * 1024
        elif current and head[0] == "Size:":
            mapped += int(head[1]) * 1024
    return resident, mapped


@pytest.fixture(scope="module")
def backends(settings):
    """PlanEmbeddings of every backend, loaded once for this module."""
    from planqa.embeddings import load_embeddings

    return {b: load_embeddings(settings.replace(backend=b)) for b in onnx_backend.BACKENDS}


@pytest.fixture(scope="module")
def questions() -> list[str]:
    return [t.question for path in (DEFAULT_SET, HELDOUT_SET) for c in load_cases(path)
            for t in c.turns]


def test_prefault_makes_the_mapped_weights_resident(backends):
    emb = backends["torch"]
    read = emb.prefault()
    n_params = sum(p.numel() for p in emb.model.parameters())
    assert read == 4 * n_params > 400 * 2**20  # float32 e5-small, embeddings included
    resident, mapped = _resident_weight_bytes()
    # The weights are memory-mapped (safetensors), so this checks something: now all
    # of them are in memory.
    assert mapped >= read
    assert resident >= 0.95 * read
    vec = emb.embed_query("事业编制")  # and the model still works
    assert len(vec) == emb.dim


def test_prefault_setting(monkeypatch):
    assert Settings().prefault_model is True
    monkeypatch.setenv("PLANQA_PREFAULT_MODEL", "0")
    assert Settings.from_env().prefault_model is False
    monkeypatch.setenv("PLANQA_PREFAULT_MODEL", "yes")
    assert Settings.from_env().prefault_model is True


def test_backend_setting(monkeypatch):
    assert Settings().backend in onnx_backend.BACKENDS
    for b in onnx_backend.BACKENDS:
        monkeypatch.setenv("PLANQA_BACKEND", b)
        assert Settings.from_env().backend == b
    monkeypatch.setenv("PLANQA_BACKEND", "gpu")
    with pytest.raises(ConfigError, match="PLANQA_BACKEND must be `torch`, `onnx` or `onnx-int8`"):
        Settings.from_env()


def test_onnx_backend_needs_a_local_model(settings):
    from planqa.embeddings import load_embeddings

    with pytest.raises(ConfigError, match="PLANQA_BACKEND=onnx-int8 needs the model as a local"):
        load_embeddings(settings.replace(backend="onnx-int8", embedding_model="no/such-model"))


def test_onnx_tokens_are_the_sentence_transformers_tokens(backends, questions):
    st_tokenizer = backends["torch"].model.tokenizer
    ours = backends["onnx"].model.tokenizer
    for text in [*questions, *TRICKY]:
        want = st_tokenizer("query: " + text, truncation=True, max_length=512)["input_ids"]
        assert ours.encode("query: " + text).ids == want, text[:40]
    assert len(ours.encode("query: " + TRICKY[-1]).ids) == 512


def test_onnx_vectors_match_torch(backends, questions):
    # Every third question (the encoding on torch is the slow part), and the tricky texts
    # but the 512-token one: a word repeated 400 times, where int8 drifts to 0.972.
    texts = [*questions[::3], *TRICKY[:-1]]
    ref = backends["torch"].encode_queries(texts)
    report = {}
    for b in ("onnx", "onnx-int8"):
        vecs = backends[b].encode_queries(texts)
        assert vecs.shape == ref.shape and vecs.dtype == np.float32
        assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
        cos = (vecs * ref).sum(axis=1)
        report[b] = {"n": len(texts), "min": float(cos.min()), "mean": float(cos.mean())}
        assert cos.min() >= MIN_COSINE[b], (b, report[b])
    # passages too: fp32 ONNX embeds them as torch does
    passages = ["passage: 精简机关编制", "科协是党领导下的人民团体"]
    p_ref = backends["torch"].encode_passages(passages)
    assert ((backends["onnx"].encode_passages(passages) * p_ref).sum(axis=1) > 0.9999).all()
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(report)


def test_every_backend_shares_the_fingerprint_and_the_index(backends):
    # One index serves every backend: the weights, hence the fingerprint, are the same.
    assert len({e.fingerprint for e in backends.values()}) == 1
    assert {e.backend for e in backends.values()} == set(onnx_backend.BACKENDS)
    assert backends["onnx-int8"].dim == backends["torch"].dim == 384


@pytest.mark.parametrize("path", [DEFAULT_SET, HELDOUT_SET], ids=["qa", "heldout"])
def test_onnx_int8_retrieval_is_torch_retrieval_within_one_question(searcher, backends, path):
    """Against the committed index (embedded by onnx-int8), int8 queries find the gold passage at
    rank 1 and in the top 3 as often as torch, within one question per kind (the bar for
    the default backend; the whole eval per backend: `python -m tools.backends --eval`)."""
    hits: dict[str, Counter] = {}
    for b in ("torch", "onnx-int8"):
        # The session's searcher (plan, index, BM25) with this backend's query encoder.
        one = copy.copy(searcher)
        one.embeddings = backends[b]
        count: Counter = Counter()
        for case in load_cases(path):
            turn = case.turns[0]
            if case.kind == MULTITURN or not turn.in_scope or turn.whole_document:
                continue
            rank = gold_rank(one.search(turn.question, k=5), turn)
            count[f"{case.kind} n"] += 1
            count[f"{case.kind} hit@1"] += rank == 1
            count[f"{case.kind} hit@3"] += rank is not None and rank <= 3
        hits[b] = count
    moved = {k: hits["onnx-int8"][k] - hits["torch"][k] for k in hits["torch"]}
    assert sum(v for k, v in hits["torch"].items() if k.endswith(" n")) >= 60
    assert all(abs(d) <= 1 for d in moved.values()), moved


def test_onnx_runtime_never_imports_torch(settings):
    """The ONNX backends answer without torch or sentence-transformers in the process."""
    probe = ("import sys, planqa; r = planqa.load_retriever(); "
             "assert r.invoke('事业编制要精简到多少名？'); "
             "print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers') "
             "if m in sys.modules))")
    env = {**os.environ, "PLANQA_BACKEND": "onnx-int8"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                         text=True, timeout=300, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_onnx_prefault_warms_the_session(backends):
    emb = backends["onnx-int8"]
    size = emb.prefault()
    graph = onnx_backend.onnx_path(Path(emb.model.model_file).parents[1], "onnx-int8")
    weights = graph.with_name(graph.name + ".data")  # external: memory-mapped by the session
    assert size == graph.stat().st_size + weights.stat().st_size
    assert 80 * 2**20 < size < 160 * 2**20  # int8: about a quarter of the fp32 model
    assert emb.encode_queries([]).shape == (0, 384)


def test_onnx_graphs_hold_the_fused_ops(backends, tmp_path):
    """`planqa model` fuses each layer's attention (``Attention``, ``QAttention`` in int8)
    and bias + GELU; residual add + LayerNorm stays apart, in the files and in the int8
    session (onnxruntime's CPU SkipLayerNormalization is the slower way). SLOW_FUSIONS
    must name onnxruntime's own rewrites: it ignores names it does not know."""
    import onnx
    import onnxruntime as ort

    def ops(path: Path) -> Counter:
        return Counter(n.op_type for n in onnx.load(str(path), load_external_data=False)
                       .graph.node)

    model_dir = Path(backends["onnx"].model.model_file).parents[1]
    layers = json.loads((model_dir / "config.json").read_text())["num_hidden_layers"]
    for backend, attention in (("onnx", "Attention"), ("onnx-int8", "QAttention")):
        have = ops(onnx_backend.onnx_path(model_dir, backend))
        assert have[attention] == have["BiasGelu"] == layers, (backend, have)
        assert have["SkipLayerNormalization"] == 0, (backend, have)
    skip_ln = {}
    for name, disabled in (("planqa", onnx_backend.SLOW_FUSIONS), ("all", None)):
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(tmp_path / f"{name}.onnx")
        options.log_severity_level = 3
        ort.InferenceSession(str(onnx_backend.onnx_path(model_dir, "onnx-int8")), options,
                             providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
        skip_ln[name] = ops(tmp_path / f"{name}.onnx")["SkipLayerNormalization"]
    assert skip_ln["planqa"] == 0 < skip_ln["all"], skip_ln


# ---------------------------------------------------------------- export bookkeeping


def _fake_export(calls: list[Path]):
    def export(model_dir: Path, out: Path) -> None:
        calls.append(out)
        out.mkdir(parents=True, exist_ok=True)
        for name in onnx_backend.ONNX_FILES.values():
            (out / name).write_bytes(b"onnx")
            (out / f"{name}.data").write_bytes(b"weights")
    return export


def _model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text("{}")
    (d / "model.safetensors").write_bytes(b"w" * 10)
    return d


def test_ensure_onnx_exports_once_and_again_when_the_model_changes(tmp_path, monkeypatch):
    calls: list[Path] = []
    monkeypatch.setattr(onnx_backend, "export_onnx", _fake_export(calls))
    d = _model_dir(tmp_path)
    out = onnx_backend.ensure_onnx(d)
    assert out == d / "onnx" and len(calls) == 1
    assert onnx_backend.onnx_path(d, "onnx-int8").read_bytes() == b"onnx"
    assert onnx_backend.ensure_onnx(d) == out and len(calls) == 1  # up to date: no work
    (d / "model.safetensors").write_bytes(b"w" * 11)  # other weights: remade
    onnx_backend.ensure_onnx(d)
    assert len(calls) == 2
    (out / "model.onnx.data").unlink()  # a missing file: remade
    onnx_backend.ensure_onnx(d)
    assert len(calls) == 3 and (out / "model.onnx.data").is_file()
    assert [p.name for p in d.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_a_failed_export_is_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch):
    def broken(model_dir: Path, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.onnx").write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(onnx_backend, "export_onnx", broken)
    d = _model_dir(tmp_path)
    with pytest.raises(onnx_backend.OnnxExportError, match="disk full"):
        onnx_backend.ensure_onnx(d)
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "model.safetensors"]
    with pytest.raises(ValueError, match="not an ONNX backend"):
        onnx_backend.onnx_path(d, "torch")


def _tiny_export(path: Path) -> dict[str, np.ndarray]:
    """A stand-in for torch's export: last_hidden_state = input_ids * attention_mask, as
    floats, one feature."""
    import onnx
    from onnx import TensorProto, helper

    dims = ["batch", "tokens"]
    graph = helper.make_graph(
        [helper.make_node("Mul", ["input_ids", "attention_mask"], ["kept"]),
         helper.make_node("Cast", ["kept"], ["kept_f"], to=TensorProto.FLOAT),
         helper.make_node("Unsqueeze", ["kept_f", "axis"], ["last_hidden_state"])],
        "tiny",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, dims),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, dims)],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, None)],
        [helper.make_tensor("axis", TensorProto.INT64, [1], [2])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    ids = np.array([[0, 100, 200, 2]], dtype=np.int64)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}


def test_a_fused_graph_that_differs_or_fails_is_kept_plain(tmp_path, monkeypatch):
    """`_fuse` checks its graph against torch's output and falls back to the plain export,
    with a warning, when it differs or the optimizer fails (another model)."""
    from onnxruntime.transformers import optimizer

    plain, fp32 = tmp_path / "plain.onnx", tmp_path / "model.onnx"
    sample = _tiny_export(plain)
    right = sample["input_ids"].astype(np.float32)[:, :, None]
    config = type("Config", (), {"num_attention_heads": 1, "hidden_size": 1})()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        onnx_backend._fuse(plain, fp32, config, sample, right)  # nothing to fuse, and right
    assert fp32.is_file()
    with pytest.warns(UserWarning, match="differs from torch; keeping it unfused"):
        onnx_backend._fuse(plain, fp32, config, sample, right + 1)
    assert fp32.read_bytes() == plain.read_bytes()

    def broken(*_args, **_kwargs):
        raise RuntimeError("no such pattern")

    fp32.unlink()
    monkeypatch.setattr(optimizer, "optimize_model", broken)
    with pytest.warns(UserWarning, match=r"failed \(no such pattern\); keeping it unfused"):
        onnx_backend._fuse(plain, fp32, config, sample, right)
    assert fp32.read_bytes() == plain.read_bytes()


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_a_vector_does_not_depend_on_its_batch(backends, backend):
    """The web server batches concurrent questions: each must get the vector it gets alone
    (int8 runs one text per pass, since its activation scale is per batch)."""
    emb = backends[backend]
    qs = ["事业编制要精简到多少名？", "科普", "學會治理結構改革有哪些要求？" * 5]
    single = np.vstack([emb.encode_queries([q]) for q in qs])
    assert np.abs(single - emb.encode_queries(qs)).max() < 1e-5


def test_configure_threads_pins_numpys_blas_too():
    """A search's similarities are one numpy product: its BLAS must keep to the setting,
    or each worker's thread pool spins on every core (measured: CPU per answer 22 ms vs 13)."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from planqa.embeddings import configure_threads

    with threadpool_limits(limits=2, user_api="blas"):  # restored after the test
        configure_threads(1)
        blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
        assert blas and all(p["num_threads"] == 1 for p in blas)
