"""Faults: a broken index, a feedback log that stops being writable, an LLM that is down.

Each fault gets its own test. The index faults are made on a temporary copy of index/:
the CLI (`python -m planqa ask`, a real subprocess) must exit non-zero with one line
naming `make index` and no traceback; the web app started on the same index must serve
its page with the Chinese notice and answer /api/ask with 503 JSON.

Covered elsewhere, not repeated here: an empty index directory in the web app
(test_webapp::test_missing_index_is_explained_not_crashed), a feedback log unwritable
from the start (test_webapp::test_unwritable_feedback_log_does_not_break_answering),
slow / erroring / invalid LLM replies with a fake server (test_llm).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from planqa.config import Settings

# `run_app` (an in-process app with other settings, and a client on it) and `shared_qa`
pytest_plugins = ["web_fixtures"]

REPO = Path(__file__).resolve().parent.parent
INDEX = REPO / "index"
Q_STAFF = "事业编制要精简到多少名？"


# ---------------------------------------------------------------- the faults


def _missing_all(d: Path) -> None:
    for f in d.iterdir():
        f.unlink()


def _missing_faiss(d: Path) -> None:
    (d / "plan.faiss").unlink()


def _truncated_faiss(d: Path) -> None:
    data = (d / "plan.faiss").read_bytes()
    (d / "plan.faiss").write_bytes(data[: len(data) // 2])


def _other_model(d: Path) -> None:
    manifest = json.loads((d / "manifest.json").read_text("utf-8"))
    manifest["model"], manifest["model_fingerprint"] = "BAAI/bge-small-zh-v1.5", "0123456789abcdef"
    (d / "manifest.json").write_text(json.dumps(manifest), "utf-8")


def _units_cut(d: Path) -> None:
    text = (d / "units.json").read_text("utf-8")
    (d / "units.json").write_text(text[: len(text) // 3], "utf-8")  # JSON cut mid-way


def _units_foreign(d: Path) -> None:
    # valid JSON, the right count, but a passage the plan does not have
    units = json.loads((d / "units.json").read_text("utf-8"))
    units[7]["passage_id"] = "九.9"
    (d / "units.json").write_text(json.dumps(units, ensure_ascii=False), "utf-8")


def _manifest_not_object(d: Path) -> None:
    (d / "manifest.json").write_text("[]\n", "utf-8")  # was an AttributeError traceback


FAULTS: dict[str, Callable[[Path], None]] = {
    "missing-all-files": _missing_all,
    "missing-plan-faiss": _missing_faiss,
    "plan-faiss-cut-in-half": _truncated_faiss,
    "manifest-from-another-model": _other_model,
    "units-json-cut": _units_cut,
    "units-json-foreign-passage": _units_foreign,
    "manifest-not-an-object": _manifest_not_object,
}


#: The CLI runs a subprocess per fault (~6 s of CPU each): the faults that reach its
#: error path differently. All of them are checked against load_index directly below.
CLI_FAULTS = ("missing-plan-faiss", "plan-faiss-cut-in-half", "manifest-from-another-model",
              "units-json-cut", "manifest-not-an-object")


def broken_copy(root: Path, fault: str) -> Path:
    """A copy of the committed index with one fault applied."""
    d = root / fault
    shutil.copytree(INDEX, d)
    FAULTS[fault](d)
    return d


# ---------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess]:
    """`python -m planqa ask 编制` once per fault, a few at a time: each run loads torch
    and the model (~6 s of CPU), so running them side by side saves wall time."""
    root = tmp_path_factory.mktemp("faults-cli")
    dirs = {fault: broken_copy(root, fault) for fault in CLI_FAULTS}

    def run(fault: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "PLANQA_INDEX_DIR": str(dirs[fault]),
               "PLANQA_LLM_BASE_URL": ""}
        return subprocess.run([sys.executable, "-m", "planqa", "ask", "编制"], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=180)

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip(CLI_FAULTS, pool.map(run, CLI_FAULTS), strict=True))


@pytest.mark.parametrize("fault", FAULTS)
def test_load_index_refuses_a_broken_index(searcher, tmp_path: Path, fault: str) -> None:
    from planqa.index import IndexUnavailable, load_index

    with pytest.raises(IndexUnavailable, match="make index"):
        load_index(broken_copy(tmp_path, fault), searcher.plan, searcher.embeddings)


@pytest.mark.parametrize("fault", CLI_FAULTS)
def test_cli_refuses_a_broken_index_in_one_line(cli_runs, fault: str) -> None:
    proc = cli_runs[fault]
    assert proc.returncode != 0, proc.stdout
    assert proc.stdout == ""  # no answer from an index that cannot be trusted
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("planqa: ") and "make index" in lines[0], lines[0]


# ---------------------------------------------------------------- the web app


@pytest.mark.parametrize("fault", ["plan-faiss-cut-in-half", "manifest-from-another-model",
                                   "units-json-cut"])
def test_web_app_on_a_broken_index_explains_and_503s(run_app, tmp_path: Path,
                                                     fault: str) -> None:
    from planqa.chain import PlanQA
    from planqa.web.api import without_paths

    index_dir = broken_copy(tmp_path, fault)
    settings = Settings.from_env().replace(index_dir=index_dir, llm_base_url="")
    with run_app(PlanQA(settings), tmp_path, index_dir=index_dir) as client:
        page = client.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        config = json.dumps(client.get("/config").json(), ensure_ascii=False)
        assert "问答服务暂不可用" in config and "make index" in config
        assert "Traceback" not in config
        r = client.post("/api/ask", json={"question": Q_STAFF})
        assert r.status_code == 503, r.text
        assert r.headers["content-type"].startswith("application/json")
        error = client.service.startup_error
        assert "make index" in error and r.json() == {"error": error, "hint": "make index"}
        health = client.get("/api/health")  # answers without a login: no paths in it
        assert health.status_code == 503 and health.json() == {
            "status": "unavailable", "error": without_paths(error), "hint": "make index"}
        assert str(tmp_path) not in health.text and "/" not in health.json()["error"]


# ---------------------------------------------------------------- feedback log


def test_feedback_log_lost_while_running_does_not_stop_answers(
        shared_qa, run_app, tmp_path: Path) -> None:
    """The log's directory disappears after start-up (a cleaned-up disk, a lost mount):
    feedback gets 503 and the health check says so; answers go on."""
    log_dir = tmp_path / "logs"
    with run_app(shared_qa, tmp_path, feedback_log=log_dir / "feedback.jsonl") as client:
        vote = {"question": Q_STAFF, "answer": "a", "vote": "useful"}
        assert client.post("/api/feedback", json=vote).status_code == 200
        shutil.rmtree(log_dir)
        log_dir.write_text("a file where the log's directory was")  # mkdir fails, even as root
        r = client.post("/api/feedback", json=vote)
        assert (r.status_code, r.json()) == (503, {
            "error": "feedback log is not writable; the answer service is unaffected"})
        answer = client.post("/api/ask", json={"question": Q_STAFF})
        assert answer.status_code == 200 and answer.json()["citations"][0]["ref"] == "二、2"
        health = client.get("/api/health").json()
        assert health["status"] == "ok" and health["feedback_log_writable"] is False


def _lines(path: Path) -> list[dict]:
    """Every line of a JSONL file, parsed (a torn or mixed line fails the test)."""
    return [json.loads(x) for x in path.read_text("utf-8").splitlines()]


def _record(i: int, text: str = "") -> dict:
    return {"time": "t", "id": f"r{i}", "question": f"问题{i}", "answer": text or "答",
            "found": True, "citations": [], "vote": "useful", "comment": ""}


#: Run in a child process: a file-size limit (RLIMIT_FSIZE) plays the full disk.
_FULL_DISK = """
import json, resource, signal, sys
from pathlib import Path
from planqa.web.feedback import FeedbackLog
log = FeedbackLog(Path(sys.argv[1]))
rec = lambda i, n: {"id": f"r{i}", "question": "q", "answer": "答" * n, "vote": "useful"}
assert log.append(rec(0, 10))
size = Path(sys.argv[1]).stat().st_size
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a killed process
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 3500, size + 3500))
big = log.append(rec(1, 2000))       # about 6 KB: the disk fills part-way through
small = log.append(rec(2, 10))       # fits: must be a line of its own
print(json.dumps([big, small, log.error is not None]))
"""


def test_full_disk_feedback_write_is_whole_or_nothing(tmp_path: Path) -> None:
    """A write the disk cannot take is cut back: the record is not there at all, and
    the next one (answered "saved") is a valid line of its own. It was appended to a
    3.5 KB fragment, and lost."""
    log = tmp_path / "feedback.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", _FULL_DISK, str(log)], env=env,
                         capture_output=True, text=True, timeout=60, check=True)
    big, small, error_seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert (big, small, error_seen) == (False, True, False)  # error cleared by the save
    assert [r["id"] for r in _lines(log)] == ["r0", "r2"]


def test_torn_last_line_is_quarantined_at_start_up(tmp_path: Path) -> None:
    from planqa.web.feedback import FeedbackLog

    log = tmp_path / "feedback.jsonl"
    whole = json.dumps(_record(0), ensure_ascii=False) + "\n"
    log.write_text(whole + '{"id": "r1", "question": "被截断', "utf-8")  # a crash mid-write
    feedback = FeedbackLog(log)
    assert feedback.check()
    assert log.read_text("utf-8") == whole
    assert "被截断" in (tmp_path / "feedback.jsonl.torn").read_text("utf-8")
    assert feedback.append(_record(2))
    assert [r["id"] for r in _lines(log)] == ["r0", "r2"]
    feedback.check()  # a whole log is left alone
    assert [r["id"] for r in _lines(log)] == ["r0", "r2"]


def test_feedback_log_rotates_and_caps_fields(tmp_path: Path) -> None:
    from planqa.web.feedback import FIELD_CHARS, KEEP, FeedbackLog, feedback_record

    log = tmp_path / "feedback.jsonl"
    feedback = FeedbackLog(log, max_bytes=8192)
    for i in range(60):
        assert feedback.append(_record(i, "答" * 300))  # about 1 KB a line
    files = [log, *(log.with_name(f"feedback.jsonl.{n}") for n in range(1, KEEP + 1))]
    assert all(f.is_file() and 0 < f.stat().st_size <= 8192 for f in files)
    assert not log.with_name(f"feedback.jsonl.{KEEP + 1}").exists()
    ids = [r["id"] for f in reversed(files) for r in _lines(f)]
    assert ids == [f"r{i}" for i in range(60 - len(ids), 60)]  # newest kept, in order
    huge = "编" * 1_000_000
    turn = {"id": "x" * 500, "question": huge,
            "answer": {"answer": huge, "found": True,
                       "citations": [{"ref": huge, "title": huge, "quote": huge}] * 500}}
    assert FeedbackLog(tmp_path / "big.jsonl").append(feedback_record(turn, "useful", huge))
    (rec,) = _lines(tmp_path / "big.jsonl")
    assert len(rec["question"]) == FIELD_CHARS["question"]
    assert len(rec["answer"]) == FIELD_CHARS["answer"] and len(rec["citations"]) == 10
    assert (tmp_path / "big.jsonl").stat().st_size < 100_000  # was 64 KB per request and up


_WRITER = """
import sys
from pathlib import Path
from planqa.web.feedback import FeedbackLog
log = FeedbackLog(Path(sys.argv[1]), max_bytes=32 * 1024)
for i in range(100):
    assert log.append({"id": f"{sys.argv[2]}-{i}", "question": "问" * 40, "vote": "useful"})
"""


def test_writer_processes_rotating_together_lose_no_record(tmp_path: Path) -> None:
    """Four processes append 100 records each while the log rotates under them: every
    line is whole, and every record is in exactly one file."""
    log = tmp_path / "feedback.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(log), f"w{n}"], env=env)
             for n in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 4
    files = sorted(tmp_path.glob("feedback.jsonl*"))
    assert len(files) > 1  # it did rotate
    ids = [r["id"] for f in files for r in _lines(f)]
    assert sorted(ids) == sorted(f"w{n}-{i}" for n in range(4) for i in range(100))


# ---------------------------------------------------------------- LLM down


@pytest.fixture
def llm_down(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings from the environment with PLANQA_LLM_BASE_URL on a closed loopback port."""
    from web_fixtures import free_port

    port = free_port()  # free: nobody listens there, so connecting is refused at once
    monkeypatch.setenv("PLANQA_LLM_BASE_URL", f"http://127.0.0.1:{port}/v1")
    monkeypatch.setenv("PLANQA_LLM_MODEL", "any-model")
    monkeypatch.setenv("PLANQA_LLM_TIMEOUT", "5")
    for var in ("NO_PROXY", "no_proxy"):  # loopback never goes through a proxy
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    return Settings.from_env()


def test_llm_down_gives_the_extractive_answer(llm_down: Settings, searcher,
                                              caplog: pytest.LogCaptureFixture) -> None:
    from planqa.chain import PlanQA

    qa = PlanQA(llm_down, searcher=searcher)
    caplog.set_level(logging.WARNING, logger="planqa")
    t0 = time.monotonic()
    answer = qa.ask(Q_STAFF)
    assert time.monotonic() - t0 < 10  # refused at once; no retries
    assert answer.found and answer.source == "extractive"
    assert answer.citations[0].ref == "二、2" and "1120" in answer.text
    assert any("LLM call failed" in r.getMessage() for r in caplog.records)


def test_llm_down_web_app_still_answers(llm_down: Settings, shared_qa, run_app,
                                       tmp_path: Path) -> None:
    from planqa.chain import PlanQA

    qa = PlanQA(llm_down, searcher=shared_qa.searcher)
    with run_app(qa, tmp_path, llm_base_url=llm_down.llm_base_url) as client:
        r = client.post("/api/ask", json={"question": Q_STAFF})
        assert r.status_code == 200, r.text
        data = r.json()
        assert data["source"] == "extractive" and data["citations"][0]["ref"] == "二、2"
        assert client.get("/api/health").status_code == 200
