"""Cold start of every Lambda function in template.yaml: in a fresh interpreter, import the
handler module and build the container its first invocation builds, with the environment Lambda
gives it (the template's variables, table names, a region, a dummy DynamoDB endpoint). Building
calls no AWS API (clients are only created). Interpreter start-up itself is not included."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench import FAKE_AWS, report

REPO = Path(__file__).resolve().parent.parent
RUNS = 5
TARGET_MS = {"IngestFunction": "<= 250"}
TABLE_NAMES = {"EventsTable": "meterbill-events", "BillingTable": "meterbill-billing"}

# Runs in the child: the handler module, then whichever container provider it uses (the lean
# ingest container or the full one), built as the first invocation builds it.
CHILD = """
import importlib, json, sys, time
wall, cpu = time.perf_counter(), time.process_time()
module = importlib.import_module(sys.argv[1])
handler = getattr(module, sys.argv[2])
assert callable(handler)
imported = time.perf_counter()
for provider in ("ingest_container", "default_container"):
    if callable(getattr(module, provider, None)):
        getattr(module, provider)()
        break
else:
    raise SystemExit(f"{sys.argv[1]} names no container provider")
done = time.perf_counter()
print(json.dumps({"ms": (done - wall) * 1000, "import_ms": (imported - wall) * 1000,
                  "cpu_ms": (time.process_time() - cpu) * 1000, "provider": provider}))
"""


def lambda_env(variables: dict[str, Any], parameters: dict[str, Any]) -> dict[str, str]:
    """The function's environment as Lambda would set it: Refs to tables become table names,
    Refs to parameters their defaults."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO), **FAKE_AWS,
           "METERBILL_DYNAMODB_ENDPOINT": "http://127.0.0.1:9"}  # never AWS; nothing is sent anyway
    for name, value in variables.items():
        resolved = _resolve(value, parameters)
        if resolved is not None:
            env[name] = str(resolved)
    return env


def _resolve(value: Any, parameters: dict[str, Any]) -> Any:
    """The few intrinsics the template's environments use, as a default deployment resolves them:
    Ref (tables, parameter defaults, other resources as a placeholder), Fn::If (every condition is
    false by default: integrations are disabled), Fn::Join; AWS::NoValue drops the value."""
    if not isinstance(value, dict):
        return value
    if "Ref" in value:
        ref = value["Ref"]
        if ref == "AWS::NoValue":
            return None
        if ref in TABLE_NAMES:
            return TABLE_NAMES[ref]
        return (parameters.get(ref) or {}).get("Default", f"https://example.invalid/{ref}")
    if "Fn::If" in value:
        return _resolve(value["Fn::If"][2], parameters)
    if "Fn::Join" in value:
        sep, items = value["Fn::Join"]
        return sep.join(str(r) for r in (_resolve(i, parameters) for i in items) if r is not None)
    return ""


def measure(handler: str, env: dict[str, str]) -> dict[str, Any]:
    module, _, attr = handler.rpartition(".")
    out = subprocess.run([sys.executable, "-c", CHILD, module, attr], cwd=REPO, env=env, capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{handler}: {out.stderr[-1500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def dominant(handler: str, env: dict[str, str], top: int = 4) -> str:
    """Self import time by top-level package (``python -X importtime``), largest first."""
    module, _, attr = handler.rpartition(".")
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", CHILD, module, attr], cwd=REPO, env=env,
                         capture_output=True, text=True, check=True)
    by_package: Counter[str] = Counter()
    for line in out.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "self [us]" not in line:
            self_us, _, name = (part.strip() for part in line[len("import time:"):].split("|"))
            package = name.split(".")[0]
            by_package["boto3+botocore" if package in ("boto3", "botocore", "s3transfer", "urllib3", "jmespath",
                                                       "dateutil") else package] += int(self_us)
    total = sum(by_package.values())
    return ", ".join(f"{p} {us / 1000:.0f} ms" for p, us in by_package.most_common(top)) + \
        f" of {total / 1000:.0f} ms imports"


def run() -> None:
    from infra.template import function_environment, function_handlers, load_template

    template = load_template()
    environments = function_environment(template)
    parameters = template.get("Parameters") or {}
    for function, handler in function_handlers(template).items():
        env = lambda_env(environments[function], parameters)
        runs = [measure(handler, env) for _ in range(RUNS)]
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", function.removesuffix("Function")).lower()  # close_periods
        report(f"cold_start_ms_{name}", statistics.median(r["ms"] for r in runs), "ms", TARGET_MS.get(function),
               note=f"{handler}: import {statistics.median(r['import_ms'] for r in runs):.0f} ms + "
                    f"{runs[0]['provider']}(); CPU {statistics.median(r['cpu_ms'] for r in runs):.0f} ms; "
                    f"median of {RUNS} fresh interpreters, range {min(r['ms'] for r in runs):.0f}-"
                    f"{max(r['ms'] for r in runs):.0f} ms; top imports: {dominant(handler, env)}")
