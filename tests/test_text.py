"""planqa.text: loading jieba's dictionary from planqa's own cache."""

from __future__ import annotations

import pickle

import jieba
import pytest

from planqa.text import prime_jieba

QUESTION = "科协所属学会要去行政化，理事会换届怎么弄"


@pytest.fixture(scope="module")
def reference() -> jieba.Tokenizer:
    """jieba as it loads itself."""
    tk = jieba.Tokenizer()
    tk.initialize()
    return tk


@pytest.fixture
def fresh(monkeypatch) -> jieba.Tokenizer:
    """A not yet initialized jieba in place of the global one."""
    tk = jieba.Tokenizer()
    monkeypatch.setattr(jieba, "dt", tk)
    return tk


def _cache_file(cache_dir):
    (path,) = (cache_dir / "jieba").glob("prefix-*.pickle")
    return path


def test_primed_dictionary_is_jiebas_own(tmp_path, fresh, reference):
    prime_jieba(tmp_path)
    assert fresh.initialized and _cache_file(tmp_path).stat().st_size > 0
    assert fresh.total == reference.total and fresh.FREQ == reference.FREQ
    assert fresh.lcut(QUESTION) == reference.lcut(QUESTION)


def test_second_start_reads_the_cache_without_rebuilding(tmp_path, monkeypatch, reference):
    first = jieba.Tokenizer()
    monkeypatch.setattr(jieba, "dt", first)
    prime_jieba(tmp_path)
    second = jieba.Tokenizer()
    monkeypatch.setattr(jieba, "dt", second)
    monkeypatch.setattr(second, "gen_pfdict", lambda f: pytest.fail("rebuilt"))
    prime_jieba(tmp_path)
    assert second.initialized and second.FREQ == reference.FREQ


class _Exploit:
    def __reduce__(self):
        return (pytest.fail, ("a cache file ran code",))


@pytest.mark.parametrize("content", [
    b"not a pickle at all",
    b"",
    pickle.dumps(["a", "list"]),
    pickle.dumps(_Exploit()),  # names a function: refused, never called
], ids=["garbage", "empty", "wrong-shape", "names-a-function"])
def test_bad_cache_file_is_rebuilt_not_trusted(tmp_path, monkeypatch, reference, content):
    monkeypatch.setattr(jieba, "dt", jieba.Tokenizer())
    prime_jieba(tmp_path)
    path = _cache_file(tmp_path)
    path.write_bytes(content)
    tk = jieba.Tokenizer()
    monkeypatch.setattr(jieba, "dt", tk)
    prime_jieba(tmp_path)
    assert tk.initialized and tk.FREQ == reference.FREQ
    with open(path, "rb") as fh:
        assert pickle.load(fh)[1] == reference.total  # written again, whole


def test_unwritable_cache_costs_speed_not_tokens(tmp_path, fresh, reference):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    prime_jieba(blocker)
    assert fresh.initialized and fresh.FREQ == reference.FREQ
