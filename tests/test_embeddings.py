"""The embedding model as loaded: LangChain face, and weights made resident on demand."""

from pathlib import Path

from planqa.config import Settings


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


def test_prefault_makes_the_mapped_weights_resident(searcher):
    emb = searcher.embeddings
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
