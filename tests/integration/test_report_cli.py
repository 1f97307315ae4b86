"""`meterbill report …` against the in-process app (its HTTP calls go to the ASGI app, not a
socket): JSON, CSV, table, and the charts it writes (valid PNG/SVG holding the report)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from meterbill import cli
from meterbill.local import report
from meterbill.rendering.charts import SERIES_GID
from tests.integration.test_reports import RANGE, berlin, ledger  # noqa: F401
from tests.integration.test_api import SECRETS, Api, api, catalog  # noqa: F401

SVG = "{http://www.w3.org/2000/svg}"


def in_process(api: Api) -> report.Fetch:
    def fetch(path: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
        resp = api.get(path, key="read", headers=headers)
        return resp.status_code, resp.headers.get("content-type", ""), resp.content
    return fetch


def run(api: Api, *argv: str) -> int:
    return report.main(list(argv), fetch=in_process(api))


def test_json_and_csv_to_stdout(ledger: Api, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(ledger, "revenue", "--from", RANGE["from"], "--to", RANGE["to"], "--group-by", "currency") == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(r["currency"], r["billed"]) for r in doc["rows"]] == [("EUR", "120.00"), ("USD", "440.00")]
    assert run(ledger, "revenue", "--from", RANGE["from"], "--to", RANGE["to"], "--group-by", "currency",
               "--format", "csv") == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["EUR,2,120.00,10.00,0.00,0.00,110.00,0.00",
                                                        "USD,4,440.00,0.00,5.00,100.00,275.00,60.00"]


def test_table(ledger: Api, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(ledger, "aging", "--format", "table") == 0
    out = capsys.readouterr().out
    assert "d90_plus" in out and "110.00" in out and "275.00" in out


def test_revenue_chart_svg_holds_one_bar_per_period_and_amount(ledger: Api, tmp_path: Path) -> None:
    out = tmp_path / "revenue.svg"
    assert run(ledger, "revenue", "--from", RANGE["from"], "--to", RANGE["to"], "--currency", "USD",
               "--out", str(out)) == 0
    root = ET.fromstring(out.read_text())
    assert "Revenue by period (USD)" in "".join(root.itertext())
    bars = [g.get("id") for g in root.iter(f"{SVG}g") if (g.get("id") or "").startswith("bar-")]
    assert len(bars) == 3 * 4   # billed, collected, outstanding × 2026-07, -08, -09, -10


def test_a_chart_never_mixes_currencies(ledger: Api, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--currency"):
        run(ledger, "aging", "--out", str(tmp_path / "aging.png"))
    assert not (tmp_path / "aging.png").exists()
    assert run(ledger, "aging", "--currency", "EUR", "--out", str(tmp_path / "aging.png")) == 0
    assert (tmp_path / "aging.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_customer_usage_chart_has_a_point_per_window(berlin: Api, tmp_path: Path) -> None:
    out = tmp_path / "usage.svg"
    assert run(berlin, "usage", "--customer", "acme", "--meter", "tokens", "--from", "2026-10-12T00:00:00Z",
               "--to", "2026-10-27T00:00:00Z", "--window", "day", "--out", str(out)) == 0
    root = ET.fromstring(out.read_text())
    series = next(g for g in root.iter(f"{SVG}g") if g.get("id") == SERIES_GID)
    assert len(list(series.iter(f"{SVG}use"))) == 4   # the days with usage: 10-18, 10-24, 10-25, 10-26
    assert "tokens — acme (day, Europe/Berlin)" in "".join(root.itertext())


def test_bad_input_is_named(ledger: Api, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="group_by"):
        run(ledger, "revenue", "--group-by", "planet")
    with pytest.raises(SystemExit, match=r"\.png or \.svg"):
        run(ledger, "revenue", "--out", str(tmp_path / "r.pdf"))


def test_meterbill_report_uses_the_api_from_the_environment(ledger: Api, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[tuple[str, str]] = []

    def http_fetch(url: str, key: str) -> report.Fetch:
        seen.append((url, key))
        return in_process(ledger)

    monkeypatch.setenv("METERBILL_API_URL", "http://billing.example:8000")
    monkeypatch.setenv("METERBILL_API_KEY", SECRETS["read"])
    monkeypatch.setattr(report, "http_fetch", http_fetch)
    assert cli.main(["report", "usage", "--group-by", "meter", "--from", RANGE["from"], "--to", RANGE["to"]]) == 0
    assert seen == [("http://billing.example:8000", SECRETS["read"])]
    assert [r["meter"] for r in json.loads(capsys.readouterr().out)["rows"]] == ["calls", "tokens"]

