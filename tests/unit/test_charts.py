"""Charts: valid SVG / PNG holding the series; matplotlib never on a Lambda cold path."""

from __future__ import annotations

import ast
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from meterbill.rendering.charts import SERIES_GID, bar_chart_png, bar_chart_svg, usage_chart_png, usage_chart_svg

ROOT = Path(__file__).resolve().parents[2]
SVG = "{http://www.w3.org/2000/svg}"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BERLIN = ZoneInfo("Europe/Berlin")
POINTS = [(datetime(2026, 10, 20, tzinfo=BERLIN) + timedelta(days=i), Decimal(i * 3) + Decimal("0.5"))
          for i in range(14)]


def test_usage_svg_is_an_svg_document_with_the_title_and_one_marker_per_point() -> None:
    svg = usage_chart_svg(POINTS, "api_calls — acme", "calls")
    root = ET.fromstring(svg)  # well-formed XML, inline-able (no declaration before <svg)
    assert root.tag == f"{SVG}svg" and svg.startswith("<svg")
    texts = "".join(root.itertext())
    assert "api_calls — acme" in texts and "calls" in texts  # text stays text (svg.fonttype none)
    series = next(g for g in root.iter(f"{SVG}g") if g.get("id") == SERIES_GID)
    assert len(list(series.iter(f"{SVG}use"))) == len(POINTS)


def test_svg_is_deterministic() -> None:
    assert usage_chart_svg(POINTS, "t", "u") == usage_chart_svg(POINTS, "t", "u")


def test_usage_png_is_a_png() -> None:
    png = usage_chart_png(POINTS, "api_calls", "calls")
    assert png.startswith(PNG_SIGNATURE) and len(png) > 5_000
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (800, 360)


def test_an_empty_series_still_draws_a_chart_saying_so() -> None:
    root = ET.fromstring(usage_chart_svg([], "nothing", "calls"))
    assert "no usage in this range" in "".join(root.itertext())


def test_bar_chart_has_one_bar_per_category_and_series() -> None:
    svg = bar_chart_svg(["2026-09", "2026-10", "2026-11"],
                        {"billed": [Decimal("10.00"), Decimal("20.00"), Decimal("5.50")],
                         "collected": [Decimal("10.00"), Decimal("0"), Decimal("0")]}, "Revenue EUR", "EUR")
    root = ET.fromstring(svg)
    for i in range(2):
        assert len([g for g in root.iter(f"{SVG}g") if (g.get("id") or "").startswith(f"bar-{i}-")]) == 3
    assert {"billed", "collected", "2026-10"} <= set(root.itertext())
    assert bar_chart_png(["a"], {"x": [Decimal(1)]}, "t", "u").startswith(PNG_SIGNATURE)


def _top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in tree.body:  # module level only: imports inside functions are lazy
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("path", sorted((ROOT / "meterbill").rglob("*.py")) + sorted((ROOT / "functions").glob("*.py")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_imports_matplotlib_at_import_time(path: Path) -> None:
    assert "matplotlib" not in _top_level_imports(path), "matplotlib is imported lazily, by the chart functions only"


def test_the_api_function_cold_path_loads_no_matplotlib() -> None:
    code = ("import sys, functions.api, functions.ingest, meterbill.rendering.charts; "
            "functions.api.default_container().reports; "  # built as the first invocation builds it
            "print([m for m in sys.modules if m.split('.')[0] == 'matplotlib'])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"AWS_DEFAULT_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "testing",
                              "AWS_SECRET_ACCESS_KEY": "testing", "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]"


def test_a_single_point_is_drawn_on_a_day_not_across_years() -> None:
    """One bucket (the first hours of a period): the axis spans the day around it; matplotlib's own
    default for a single date is several years (a dot lost in 2025–2029 on the portal)."""
    svg = usage_chart_svg([(datetime(2026, 12, 1, 6, tzinfo=BERLIN), Decimal("2345"))], "tokens", "tokens")
    texts = "".join(ET.fromstring(svg).itertext())
    assert "2025" not in texts and "2029" not in texts
    assert any(f"{h:02d}:00" in texts for h in range(24)), texts
