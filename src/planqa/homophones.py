"""Homophone typos from pinyin input: "事业编治要精减到多少" means 编制 and 精简.

Staff type with a pinyin IME and pick the wrong character of the right sound. A run of
the question that the plan never uses, but that sounds exactly like one of the plan's
own words (toneless pinyin, character by character), is read as that word. Only the
plan's vocabulary can come out, and only where the typed text is neither the plan's
nor a common word: a question in the plan's words, or in everyday ones, is never changed.
"""

from __future__ import annotations

import itertools
import re
from functools import lru_cache
from pathlib import Path

from planqa.text import _jieba, word_frequency

PINYIN_TABLE = Path(__file__).resolve().parent / "data" / "pinyin.tsv"
_CJK_RUN = re.compile(r"[\u4e00-\u9fff]+")
#: Words of this many characters are matched: one character alone has too many homophones.
MIN_CHARS, MAX_CHARS = 2, 4
#: A polyphonic word spells at most this many pinyin keys (readings multiply).
MAX_KEYS = 16
#: A typed word jieba's dictionary has seen this often is a word, not a typo (之前 is not
#: 之间, 省级 not 升级); rare variants such as 精减 (12) still read as the plan's 精简.
COMMON_WORD = 50
#: A typed word holding a question word or a this/that is what the user means, not a
#: typo (在哪 and 在那 are not the plan's 在内, 是几 is not 事迹).
_ASKING = frozenset("几哪谁啥吗呢么这那")


@lru_cache(maxsize=1)
def readings() -> dict[str, tuple[str, ...]]:
    """character → its toneless readings (tools/pinyin_table.py writes the table)."""
    out: dict[str, list[str]] = {}
    for line in PINYIN_TABLE.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            reading, chars = line.split("\t", 1)
            for ch in chars:
                out.setdefault(ch, []).append(reading)
    return {ch: tuple(r) for ch, r in out.items()}


def keys(word: str) -> list[tuple[str, ...]]:
    """Every way the word can be spelt in toneless pinyin (capped at MAX_KEYS)."""
    table = readings()
    per_char = [table.get(ch, (ch,)) for ch in word]
    return list(itertools.islice(itertools.product(*per_char), MAX_KEYS))


class Homophones:
    """The plan's words by sound, and the correction of a question against them."""

    def __init__(self, text: str) -> None:
        self.text = text
        by_key: dict[tuple[str, ...], set[str]] = {}
        words = {w for run in _CJK_RUN.findall(text) for w in _jieba().lcut(run)
                 if MIN_CHARS <= len(w) <= MAX_CHARS}
        for word in words:
            for key in keys(word):
                by_key.setdefault(key, set()).add(word)
        # A sound that spells two of the plan's words names neither.
        self._by_key = {k: next(iter(v)) for k, v in by_key.items() if len(v) == 1}

    def correct(self, question: str) -> str:
        """`question` (Simplified) with its homophone typos replaced by the plan's words;
        unchanged when it has none. Longest runs first, left to right."""
        out = []
        for piece in re.split(f"({_CJK_RUN.pattern})", question):
            out.append(self._correct_run(piece) if _CJK_RUN.fullmatch(piece) else piece)
        return "".join(out)

    def _correct_run(self, run: str) -> str:
        # Only whole words of the question are candidates: a window across a word
        # boundary ("是什|么") is two words that happen to sound like a third.
        # (jieba with and without its guesser: unknown typos come out either whole or
        # as single characters)
        bounds = {0} | {b for hmm in (True, False) for b in itertools.accumulate(
            len(w) for w in _jieba().lcut(run, HMM=hmm))}
        i, out = 0, []
        while i < len(run):
            for n in range(min(MAX_CHARS, len(run) - i), MIN_CHARS - 1, -1):
                typed = run[i:i + n]
                if (i not in bounds or i + n not in bounds or typed in self.text
                        or word_frequency(typed) >= COMMON_WORD or _ASKING & set(typed)):
                    continue
                word = next((self._by_key[k] for k in keys(typed) if k in self._by_key), None)
                # A mistyped word keeps a character of the meant one (编治 for 编制); one
                # sharing none matches on rare readings only (尾号 "yi xiao" for 有效).
                if word and word != typed and set(word) & set(typed):
                    out.append(word)
                    i += n
                    break
            else:
                out.append(run[i])
                i += 1
        return "".join(out)


__all__ = ["Homophones", "keys", "readings"]
