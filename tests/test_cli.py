"""The `planqa` command: a thin skin over the library, usable from a pipe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_chat_reads_piped_questions_line_by_line():
    """Each piped line is one question (a blank line does not end the chat), and each
    answer stands on its own lines after the question it answers; follow-ups resolve."""
    stdin = "事业编制要精简到多少名？\n\n什么时候完成？\n"
    run = subprocess.run([sys.executable, "-m", "planqa", "chat"], input=stdin, cwd=REPO,
                         env={**os.environ, "PLANQA_LLM_BASE_URL": ""},
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "问>" not in out  # no prompts when the input is not a terminal
    first, second = out.index("问：事业编制要精简到多少名？"), out.index("问：什么时候完成？")
    assert first < out.index("1120名", first) < second
    assert "2016年年底前" in out[second:] and "二、2" in out[second:]
    assert out.splitlines()[0] == "问：事业编制要精简到多少名？"
