"""planqa.text: loading jieba's dictionary from planqa's own cache."""

from __future__ import annotations

import struct

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
    (path,) = (cache_dir / "jieba").glob("prefix-*.bin")
    return path


def test_primed_dictionary_is_jiebas_own(tmp_path, fresh, reference):
    stale = tmp_path / "jieba" / "prefix-0.41-1-1.pickle"  # an older jieba's, or format's
    stale.parent.mkdir()
    stale.write_bytes(b"old")
    prime_jieba(tmp_path)
    assert not stale.exists()
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


def _truncated(path):
    return path.read_bytes()[:-3]


def _miscounted(path):
    data = bytearray(path.read_bytes())
    struct.pack_into("<q", data, 0, struct.unpack_from("<q", data)[0] + 1)
    return bytes(data)


def _flipped(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # one word changed, every count intact
    return bytes(data)


@pytest.mark.parametrize("damage", [
    lambda path: b"not a prefix dictionary at all",
    lambda path: b"",
    _truncated,
    _miscounted,
    _flipped,
], ids=["garbage", "empty", "truncated", "miscounted", "flipped"])
def test_bad_cache_file_is_rebuilt_not_trusted(tmp_path, monkeypatch, reference, damage):
    monkeypatch.setattr(jieba, "dt", jieba.Tokenizer())
    prime_jieba(tmp_path)
    path = _cache_file(tmp_path)
    path.write_bytes(damage(path))
    tk = jieba.Tokenizer()
    monkeypatch.setattr(jieba, "dt", tk)
    prime_jieba(tmp_path)
    assert tk.initialized and tk.FREQ == reference.FREQ and tk.total == reference.total
    again = jieba.Tokenizer()  # written again, whole: the next start reads it
    monkeypatch.setattr(jieba, "dt", again)
    monkeypatch.setattr(again, "gen_pfdict", lambda f: pytest.fail("rebuilt twice"))
    prime_jieba(tmp_path)
    assert again.FREQ == reference.FREQ


def test_unwritable_cache_costs_speed_not_tokens(tmp_path, fresh, reference):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    prime_jieba(blocker)
    assert fresh.initialized and fresh.FREQ == reference.FREQ


def test_everyday_words_read_as_the_plans_terms():
    from planqa.text import colloquial_terms

    assert colloquial_terms("我们年轻人在大会上没啥存在感") == ["青年"]
    assert colloquial_terms("高校和公司的人能不能进理事会") == ["高等学校", "企业"]
    # a term the question already uses is not added twice
    assert colloquial_terms("年轻人,也就是青年科技工作者") == []
    assert colloquial_terms("事业编制要精简到多少名") == []


def test_everyday_words_give_way_to_the_plans_terms(searcher):
    """An everyday word read as the plan's terms is no term of its own: it would count
    against every passage's share of the question."""
    from planqa.text import without_colloquial

    assert without_colloquial("科协有衙门作风").strip() == "科协有"
    terms = searcher.query_terms("科协有衙门作风吗")
    assert {"机关作风", "机关化"} <= set(terms) and not {"衙门", "衙门作风"} & set(terms)
    assert searcher.query_terms("事业编制要精简到多少名")[:2] == ["事业", "编制"]


def test_the_everyday_lexicon_names_only_the_plans_terms(plan):
    """A lexicon term the plan never uses would only count against every passage."""
    from planqa.text import _colloquial

    _, table = _colloquial()
    assert len(table) >= 300
    missing = {t for terms in table.values() for t in terms if t not in plan.text_simplified}
    assert missing == set()
    # an everyday word the plan itself uses is the plan's own: it needs no entry (a word
    # of the plan, as jieba cuts it: 大学 stands in the plan only inside 大学生 and 扩大学会)
    from planqa.text import pos_tags

    words = {w for w, _ in pos_tags(plan.text_simplified)}
    assert {w for w in table if w in words} == set()
    assert {"大学", "大学会"} <= {w for w in table if w in plan.text_simplified}
