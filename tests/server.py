"""Start the real web app as staff would, for the web tests and `python -m tools.load`.

`start_server()` runs `python app.py --host 127.0.0.1 --port N` as a subprocess (its
feedback log in a temporary folder) and yields once the app printed "ready at";
`free_port()` finds a free loopback port. No shell is involved.

Test modules import it as `server` (tests/ is on sys.path under pytest); tools.load,
run from the repository root, as `tests.server`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: The checkout's app.py (tests always run in a checkout).
APP_PY = REPO / "app.py"
#: Loading torch, the model and the index on a busy 2-core machine can take a while.
STARTUP_TIMEOUT = 240.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A server started here: its URL, process id and the lines it printed."""

    url: str
    pid: int | None
    output: list[str] = field(default_factory=list)


def _drain(stream, sink: list[str], ready: threading.Event) -> None:
    # A thread reads the output so the server never blocks on a full pipe.
    for line in stream:
        sink.append(line)
        if line.startswith("ready at "):
            ready.set()


@contextlib.contextmanager
def start_server(port: int = 0, env: dict[str, str] | None = None,
                 timeout: float = STARTUP_TIMEOUT, app: Path = APP_PY) -> Iterator[Server]:
    """`python app.py --host 127.0.0.1 --port N` (N free when 0), run in app's folder;
    yields once it printed "ready at", stops it on exit. Without that file (planqa
    installed from a wheel), `planqa.web.app.serve()` instead. The argument list is fixed:
    no shell is involved."""
    port = port or free_port()
    app = app.resolve()
    with tempfile.TemporaryDirectory(prefix="planqa-load-") as tmp:
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1",
                    # the run must not add lines to the staff's real feedback log
                    "PLANQA_FEEDBACK_LOG": str(Path(tmp) / "feedback.jsonl"), **(env or {})}
        if app.is_file():
            cmd = [sys.executable, str(app), "--host", "127.0.0.1", "--port", str(port)]
        else:  # an installed wheel has no app.py
            full_env.update(PLANQA_HOST="127.0.0.1", PLANQA_PORT=str(port))
            cmd = [sys.executable, "-c", "from planqa.web.app import serve; serve()"]
        proc = subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True,
                                cwd=app.parent if app.is_file() else None)
        output: list[str] = []
        ready = threading.Event()
        threading.Thread(target=_drain, args=(proc.stdout, output, ready), daemon=True).start()
        try:
            deadline = time.monotonic() + timeout
            while not ready.wait(0.2):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the server did not become ready:\n"
                                       + "".join(output[-40:]))
            yield Server(url=f"http://127.0.0.1:{port}", pid=proc.pid, output=output)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
