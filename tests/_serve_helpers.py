"""Helpers for the service tests: a free port, a JSON client on urllib, uvicorn in a thread or a subprocess,
and the small real fixtures (AG News rows from ../shared/data, MRPC dev pairs)."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Reply:
    """Status, headers and the parsed JSON (or text) of one HTTP answer."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.raw = status, body
        self.headers = {name.lower(): value for name, value in headers.items()}  # HTTP names are case-blind
        self.text = body.decode("utf-8", "replace")
        try:
            self.json: Any = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.text[:300]!r})"


def request(
    base: str,
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    method: str | None = None,
    content_type: str | None = "application/json",
    timeout: float = 60.0,
    headers: dict[str, str] | None = None,
) -> Reply:
    """POST ``body`` as JSON (or ``raw`` bytes) to ``base + path``; GET when neither is given.
    ``headers``: more request headers (``Authorization``)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    sent = {"Content-Type": content_type} if data is not None and content_type else {}
    sent.update(headers or {})
    req = urllib.request.Request(base + path, data=data, headers=sent, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return Reply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, dict(error.headers), error.read())


def wait_healthy(base: str, timeout: float = 90.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"server exited with {process.returncode}: {process.stderr.read() if process.stderr else ''}"
            )
        try:
            if request(base, "/health", timeout=5).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{base} did not become healthy in {timeout} s")


class ThreadServer:
    """uvicorn serving ``app`` on a thread (no signal handlers there); ``stop`` is its graceful shutdown."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        import uvicorn

        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        wait_healthy(self.base)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(60)


class ProcessServer:
    """``python -m textsiamese.cli serve ARGS`` in a subprocess on a free port; ``terminate`` sends SIGTERM.

    ``env``: extra environment variables; ``stdout`` holds what the server printed once it has ended."""

    def __init__(self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.stdout = ""
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            **(env or {}),
        }
        command = [sys.executable, "-m", "textsiamese.cli", "serve", "--port", str(self.port), *args]
        self.process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def __enter__(self) -> ProcessServer:
        try:
            wait_healthy(self.base, process=self.process)
        except BaseException:
            self.kill()
            raise
        return self

    def terminate(self, timeout: float = 60.0) -> tuple[int, str]:
        """SIGTERM, wait for the exit; (exit status, stderr)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.stdout, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, err

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate(timeout=30)

    def __exit__(self, *exc: object) -> None:
        self.kill()


def agnews_rows(shared_data: Path, start: int, count: int) -> list[dict[str, str]]:
    """Rows ``start`` to ``start + count`` of the AG News title/description file (label, title, description)."""
    with open(
        shared_data / "agnews" / "agnews-title-description-train.csv", encoding="utf-8", newline=""
    ) as f:
        rows = list(csv.DictReader(f))
    return rows[start : start + count]


def mrpc_pairs(shared_data: Path, count: int) -> tuple[list[str], list[str], list[int]]:
    """The first ``count`` MRPC pairs: sentence 1, sentence 2, label (1 = paraphrase)."""
    first, second, labels = [], [], []
    with open(shared_data / "mrpc" / "msr_paraphrase_train.txt", encoding="utf-8-sig") as f:
        next(f)
        for line in f:
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) < 5:
                continue
            labels.append(int(parts[0]))
            first.append(parts[3])
            second.append(parts[4])
            if len(labels) == count:
                break
    return first, second, labels
