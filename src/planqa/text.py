"""Chinese text utilities shared by the parser, the retriever and the answerer.

Pure functions, besides loading OpenCC and jieba lazily on first use, never at import
time (jieba's dictionary takes about a second; `prime_jieba` reads it from planqa's cache).
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import unicodedata
import zlib
from array import array
from functools import lru_cache
from pathlib import Path

# Sentence ends: 。！？ and semicolons (full or half width) close a quotable unit.
_SENTENCE_END = re.compile(r"(?<=[。！？!?；;])")
_CJK = re.compile(r"[\u3400-\u9fff]")
_CONTROL = re.compile(r"[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\ufeff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_SPACES = re.compile(r"\s+")


@lru_cache(maxsize=1)
def _t2s():
    from opencc import OpenCC

    return OpenCC("t2s")


@lru_cache(maxsize=1)
def _s2t():
    from opencc import OpenCC

    return OpenCC("s2t")


@lru_cache(maxsize=1024)
def to_traditional(text: str) -> str:
    """Simplified → Traditional, for planqa's own framing words only (quotes of the
    plan always come from the source's Traditional text, never from a conversion)."""
    return _s2t().convert(text) if text else text


@lru_cache(maxsize=4096)
def to_simplified(text: str) -> str:
    """Traditional → Simplified (OpenCC t2s); Simplified text passes unchanged."""
    return _t2s().convert(text) if text else text


def is_traditional(text: str) -> bool:
    """True when the text has characters that t2s would change."""
    return to_simplified(text) != text


def has_cjk(text: str) -> bool:
    return bool(_CJK.search(text))


def clean_input(text: str) -> str:
    """Make arbitrary user input safe to process: drop lone surrogates and control
    characters, fold full-width forms to half-width (NFKC) and collapse white space."""
    text = _SURROGATE.sub("", text)
    text = unicodedata.normalize("NFKC", text)
    text = _CONTROL.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def normalize_query(text: str) -> str:
    """What both retrieval channels see: cleaned, half-width, Simplified."""
    return to_simplified(clean_input(text))


def split_sentences(paragraph: str) -> list[str]:
    """Split a paragraph after 。！？； keeping the punctuation; no empty pieces."""
    return [s for s in (p.strip() for p in _SENTENCE_END.split(paragraph)) if s]


@lru_cache(maxsize=1)
def _jieba():
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()  # a no-op once `prime_jieba` has loaded the dictionary
    return jieba


_PREFIX_HEADER = struct.Struct("<qqq")  # entries, jieba's total, CRC-32 of the rest


def _write_prefix(path: Path, freq: dict[str, int], total: int) -> None:
    """The prefix dictionary as plain data: entry count, total and checksum, the counts
    as int64, then the words one a line (jieba's words hold no newline: its dictionary is split on
    whitespace). A dictionary that breaks that is not cached."""
    if any("\n" in word for word in freq):
        return
    counts = array("q", freq.values())
    body = "\n".join(freq).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    payload = counts.tobytes() + body
    tmp.write_bytes(_PREFIX_HEADER.pack(len(counts), total, zlib.crc32(payload)) + payload)
    os.replace(tmp, path)  # readers never see half a file
    for old in path.parent.glob("prefix-*"):  # an older jieba's or format's, never read again
        if old != path:
            old.unlink(missing_ok=True)


def _read_prefix(path: Path) -> tuple[dict[str, int], int]:
    """Read what `_write_prefix` wrote; anything else raises ValueError."""
    data = path.read_bytes()
    n, total, crc = _PREFIX_HEADER.unpack_from(data)
    payload = memoryview(data)[_PREFIX_HEADER.size:]
    if n < 1 or len(payload) < 8 * n or zlib.crc32(payload) != crc:
        raise ValueError("not a prefix dictionary")
    counts = array("q")
    counts.frombytes(payload[:8 * n])
    words = str(payload[8 * n:], "utf-8").split("\n")
    if len(words) != n:
        raise ValueError("not a prefix dictionary")
    return dict(zip(words, counts.tolist(), strict=True)), total


def prime_jieba(cache_dir: Path) -> None:
    """Load jieba's prefix dictionary from planqa's own cache under `cache_dir`, writing
    the cache first if it is missing, stale or unreadable.

    Why: jieba reads its own cache (a marshal file in the system temp folder) in about
    0.8 s, the largest single cost of a cold start; the same dictionary as plain arrays
    (data only, nothing a reader would run) loads in about 0.2 s. The cache is keyed by
    jieba's version and its dictionary file, so the tokens are jieba's own, bit for bit."""
    import logging
    from importlib import metadata

    import jieba

    jieba.setLogLevel(logging.WARNING)
    dt = jieba.dt
    with dt.lock:
        if dt.initialized:
            return
        with dt.get_dict_file() as fh:
            st = os.fstat(fh.fileno())
        path = Path(cache_dir) / "jieba" / (
            f"prefix-{metadata.version('jieba')}-{st.st_size}-{st.st_mtime_ns}.bin")
        try:
            freq, total = _read_prefix(path)
        except (OSError, ValueError, struct.error, UnicodeDecodeError):
            freq, total = dt.gen_pfdict(dt.get_dict_file())
            with contextlib.suppress(OSError):  # a read-only cache costs speed, not answers
                _write_prefix(path, freq, total)
        dt.FREQ, dt.total, dt.initialized = freq, total, True


_TOKEN_OK = re.compile(r"[\w]", re.UNICODE)
# Function words that carry no topic in questions about the plan.
STOPWORDS = frozenset(
    "的 了 和 与 及 是 在 对 为 把 被 将 就 都 也 而 并 或 等 之 其 中 上 下 要 有 吗 呢 吧 啊 "
    "什么 怎么 怎样 如何 哪些 哪个 哪几个 哪 几 多少 是否 为什么 关于 方案 实施方案 规定 提出 "
    "请问 一下 我们 你 我 这 那 个 条 部分 第".split()
)


def tokenizer_signature() -> str:
    """What `tokenize` depends on (jieba's version and the stopwords): tokens stored by
    one tokenizer are reused only by the same one."""
    import hashlib
    from importlib import metadata

    stop = hashlib.sha256(" ".join(sorted(STOPWORDS)).encode()).hexdigest()[:12]
    return f"jieba {metadata.version('jieba')}; search mode, lower-cased; stopwords {stop}"


def word_frequency(word: str) -> int:
    """How often jieba's dictionary has seen `word` (0: not a word it knows)."""
    return int(_jieba().dt.FREQ.get(word) or 0)


def pos_tags(text: str) -> list[tuple[str, str]]:
    """jieba's words of Simplified text with their part-of-speech flags ("n…" nouns)."""
    _jieba()
    import jieba.posseg

    return [(w.word, w.flag) for w in jieba.posseg.lcut(text)]


def tokenize(text: str) -> list[str]:
    """Search-mode jieba tokens of Simplified text, lower-cased, stopwords removed.

    Single CJK characters are kept (except stopwords) because abbreviations such as
    "编" or "会" often carry the topic in short staff questions."""
    jb = _jieba()
    out: list[str] = []
    for tok in jb.lcut_for_search(text.lower()):
        tok = tok.strip()
        if tok and _TOKEN_OK.search(tok) and tok not in STOPWORDS:
            out.append(tok)
    return out


GLOSSARY_PATH = Path(__file__).resolve().parent / "data" / "glossary-en-zh.tsv"
_LATIN = re.compile(r"[A-Za-z]")


def _tsv_pairs(path: Path) -> tuple[tuple[str, str], ...]:
    """A two-column lexicon's (word, terms) lines; "#" starts a comment line."""
    lines = path.read_text(encoding="utf-8").splitlines()
    pairs = (line.split("\t", 1) for line in lines if line.strip() and not line.startswith("#"))
    return tuple((word, terms) for word, terms in pairs)


@lru_cache(maxsize=1)
def _glossary_lines() -> tuple[tuple[str, str], ...]:
    """The glossary's (english, chinese) lines, read once."""
    return _tsv_pairs(GLOSSARY_PATH)


@lru_cache(maxsize=1)
def _glossary() -> tuple[tuple[re.Pattern[str], str], ...]:
    entries = []
    for english, chinese in _glossary_lines():
        words = [re.escape(w) for w in english.lower().split()]
        # "university" is also "universities"
        if re.search(r"[^aeiou]y$", words[-1]):
            words[-1] = words[-1][:-1] + "(?:y|ie)"
        # Whole words, any run of spaces/hyphens between them, optional plural -s.
        rx = re.compile(r"\b" + r"[\s-]+".join(words) + r"(?:s|es)?\b")
        entries.append((len(english), rx, chinese.strip()))
    entries.sort(key=lambda e: -e[0])  # longest phrase first
    return tuple((rx, zh) for _, rx, zh in entries)


#: English words that carry no topic of their own: function words, question words and
#: the verbs of asking ("what does the plan say about …"). Any other word the glossary
#: does not know is a topic the plan has no term for.
ENGLISH_STOPWORDS = frozenset("""
a an the this that these those there here it its it's they them their we our us you your
i i'm i've me my he she his her who whom whose what which when where why how whether if
or and but not no nor so also just only very really actually quite even still already yet
ever again any some all each every both either neither more most much many few lot lots
other another such own same than then too of to in on at by for with from about into onto
over under as up down out off between through during before after within without per via
is are was were be been being am do does did done doing have has had having will would
shall should can could may might must ought get gets got getting go goes going gone want
wants need needs let like know tell say says said saying talk talks mention mentions
mentioned mean means supposed think please exactly anything something everything nothing
thing things stuff kind sort way part bit well right ok okay hey hi thanks now new old plan
plans document reform reforms text paper policy policies anyone someone everyone one ones
s t d ll re ve m don doesn didn isn aren wasn weren won can't cannot
""".split())
_ENGLISH_WORD = re.compile(r"[a-z][a-z'\-]*[a-z]|[a-z]")


@lru_cache(maxsize=1)
def _glossary_words() -> tuple[frozenset[str], dict[str, str]]:
    """The glossary's words, and its longer words with one letter dropped (→ the word)."""
    words = {w for english, _ in _glossary_lines()
             for w in _ENGLISH_WORD.findall(english.lower())}
    dropped = {w[:i] + w[i + 1:]: w for w in words if len(w) >= 7 for i in range(len(w))}
    return frozenset(words), dropped


def _known(word: str, words: frozenset[str]) -> bool:
    """`word` or its stem before a plural or possessive ending is a glossary word."""
    return word in words or any(
        word.endswith(end) and word[: -len(end)] + add in words
        for end, add in (("'s", ""), ("s", ""), ("es", ""), ("ies", "y")))


def _spelled(word: str) -> str | None:
    """The glossary word a mistyped English word stands for: two neighbouring letters
    swapped ("jounrals"); in a longer word, one letter dropped ("goverment") or one
    stray letter added. None when the word is known or is no such slip."""
    words, dropped = _glossary_words()
    # short words swap into other real words (trail, trial): left as typed
    if len(word) < 6 or word in ENGLISH_STOPWORDS or _known(word, words):
        return None
    for i in range(len(word) - 1):
        swapped = word[:i] + word[i + 1] + word[i] + word[i + 2:]
        if _known(swapped, words):
            return swapped
    if word in dropped:
        return dropped[word]
    if len(word) >= 8:
        for i in range(len(word)):
            if _known(shorter := word[:i] + word[i + 1:], words):
                return shorter
    return None


def _read_english(text: str) -> tuple[list[str], str]:
    """The plan's Chinese terms for the English phrases in `text` (longest match wins),
    and what is left of the lower-cased text once they are taken out. A word the
    glossary lacks that is one slip from a glossary word is read as that word."""
    rest = text.lower()
    if not _LATIN.search(text):
        return [], rest
    rest = _ENGLISH_WORD.sub(lambda m: _spelled(m.group()) or m.group(), rest)
    found: list[str] = []
    for rx, zh in _glossary():
        if rx.search(rest):
            found.extend(t for t in zh.split() if t not in found)
            rest = rx.sub(" ", rest)
    return found, rest


COLLOQUIAL_PATH = Path(__file__).resolve().parent / "data" / "colloquial-zh.tsv"


@lru_cache(maxsize=1)
def _colloquial() -> tuple[re.Pattern[str], dict[str, tuple[str, ...]]]:
    """The everyday-words lexicon as one pattern (longest word first) and its terms."""
    table = {word.strip(): tuple(terms.split()) for word, terms in _tsv_pairs(COLLOQUIAL_PATH)}
    words = sorted(table, key=len, reverse=True)
    return re.compile("|".join(map(re.escape, words))), table


def colloquial_terms(text: str) -> list[str]:
    """The plan's terms for the everyday words in Simplified `text` ("年轻人" → 青年,
    "高校" → 高等学校) that the text does not already use."""
    pattern, table = _colloquial()
    found: list[str] = []
    for m in pattern.finditer(text):
        found.extend(t for t in table[m.group()] if t not in text and t not in found)
    return found


def without_colloquial(text: str) -> str:
    """Simplified `text` with its everyday words (those :func:`colloquial_terms` reads)
    blanked out."""
    return _colloquial()[0].sub(" ", text)


def english_terms(text: str) -> list[str]:
    """The plan's Chinese terms for the English phrases in `text` (longest match wins)."""
    return _read_english(text)[0]


def english_reading(text: str) -> tuple[list[str], list[str]]:
    """`english_terms` and `english_unknown` of `text` from one pass over the glossary."""
    found, rest = _read_english(text)
    words = (w.strip("'-") for w in _ENGLISH_WORD.findall(rest))
    return found, [w for w in words if len(w) > 1 and w not in ENGLISH_STOPWORDS]


def english_unknown(text: str) -> list[str]:
    """The English content words of `text` the glossary has no plan term for ("usd",
    "exchange rate" but for "exchange"): topics the plan may not cover at all."""
    return english_reading(text)[1]
