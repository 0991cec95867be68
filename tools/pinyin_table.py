"""Write src/planqa/data/pinyin.tsv: the toneless readings of the common CJK characters.

planqa reads homophone typos ("编治" for 编制) with this table instead of importing
pypinyin at run time (its phrase dictionaries cost ~56 MB per process). The facts come
from pypinyin's character dictionary (a test dependency); run again after upgrading it:

    python -m tools.pinyin_table
"""

from __future__ import annotations

import argparse
import unicodedata
from collections import defaultdict
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "src" / "planqa" / "data" / "pinyin.tsv"
#: CJK Unified Ideographs: every character a Chinese question realistically holds.
FIRST, LAST = 0x4E00, 0x9FFF


def toneless(reading: str) -> str:
    """"biān" → "bian", "lǜ" → "lv"."""
    reading = reading.replace("ü", "v").replace("ǖ", "v").replace("ǘ", "v")
    reading = reading.replace("ǚ", "v").replace("ǜ", "v")
    return "".join(c for c in unicodedata.normalize("NFD", reading)
                   if not unicodedata.combining(c))


def build() -> dict[str, list[str]]:
    """reading → the characters that have it, in code point order."""
    from pypinyin.pinyin_dict import pinyin_dict

    by_reading: dict[str, list[str]] = defaultdict(list)
    for cp in range(FIRST, LAST + 1):
        for reading in dict.fromkeys(toneless(r) for r in pinyin_dict.get(cp, "").split(",")
                                     if r):
            by_reading[reading].append(chr(cp))
    return dict(sorted(by_reading.items()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    table = build()
    lines = ["# toneless pinyin<TAB>characters; written by `python -m tools.pinyin_table` "
             "from pypinyin's character dictionary"]
    lines += [f"{reading}\t{''.join(chars)}" for reading, chars in table.items()]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(table)} readings of {sum(map(len, table.values()))} characters "
          f"to {args.out}")


if __name__ == "__main__":
    main()
