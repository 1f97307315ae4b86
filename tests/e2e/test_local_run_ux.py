"""`meterbill run` as a newcomer meets it: a second start on a busy port stops before it starts or
writes anything (the running stack's `.meterbill/local.json` is left alone)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.stack import child_env

pytestmark = pytest.mark.e2e



def test_second_run_on_a_busy_port_exits_and_leaves_local_json_alone(tmp_path: Path) -> None:
    running = {"api_url": "http://127.0.0.1:1", "dynamodb_endpoint": "http://127.0.0.1:2", "admin_key": "mb_running"}
    state = tmp_path / ".meterbill" / "local.json"
    state.parent.mkdir()
    state.write_text(json.dumps(running))
    with socket.socket() as busy:  # the first stack's API port
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        res = subprocess.run([sys.executable, "-m", "meterbill.cli", "run"], cwd=tmp_path,
                             env=child_env(METERBILL_PORT=str(port)), capture_output=True, text=True, timeout=60)
        took = time.monotonic() - started
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert f"port {port} is already in use" in res.stderr, out
    assert "running" not in res.stdout and "admin API key" not in out, out
    assert json.loads(state.read_text()) == running, "the running stack's local.json was overwritten"
    assert took < 15, f"took {took:.1f} s: something was started before the port was checked"
