"""Import contract: dependencies point inward only (see docs/architecture.md).

folder                      layer            may import (inside this repo)
meterbill/domain            domain           meterbill.domain only; standard library only
meterbill/ports.py          ports            domain
meterbill/services          services         domain, ports, services
meterbill/integration       integration      domain (the plugin contract: protocols, records, registry)
meterbill/adapters          adapters         domain, ports, services.errors, integration
meterbill/api               entry (HTTP)     services, domain, bootstrap
meterbill/rendering         documents        rendering, config, domain; third-party: jinja2, markupsafe, reportlab, matplotlib
meterbill/bootstrap.py      composition root everything in meterbill
functions/                  entry (Lambda)   meterbill.api, meterbill.bootstrap
integrations/               vendor plugins   meterbill.integration, meterbill.domain; vendor SDKs
meterbill/local, cli        local tooling    anything
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STDLIB = set(sys.stdlib_module_names) | {"__future__"}

RULES: dict[str, tuple[str, ...]] = {
    "meterbill/domain": ("meterbill.domain",),
    "meterbill/ports.py": ("meterbill.domain",),
    # services may use the plugin contract (a port: protocols and records, no SDK)
    "meterbill/services": ("meterbill.domain", "meterbill.ports", "meterbill.services", "meterbill.integration"),
    # the plugin contract: ports-like, no vendor SDK, no boto3
    "meterbill/integration": ("meterbill.domain", "meterbill.integration"),
    "meterbill/adapters": ("meterbill.domain", "meterbill.ports", "meterbill.services.errors",
                           "meterbill.adapters", "meterbill.integration"),
    "meterbill/api": ("meterbill.api", "meterbill.services", "meterbill.domain", "meterbill.bootstrap",
                      "meterbill.ports", "meterbill.__init__", "meterbill"),
    "functions": ("meterbill.api", "meterbill.bootstrap"),
    # vendor plugins see only the contract and the domain: never services, adapters or each other
    "integrations": ("meterbill.integration", "meterbill.domain"),
    # invoice HTML/PDF: a presentation leaf — it reads stored invoice documents (plain dicts),
    # never services, adapters, ports or the API
    "meterbill/rendering": ("meterbill.rendering", "meterbill.config", "meterbill.domain"),
}
THIRD_PARTY_ALLOWED = {
    "meterbill/domain": set(),            # pure: no boto3, no pydantic, no clock, no env
    "meterbill/ports.py": set(),
    "meterbill/integration": set(),       # the core imports no vendor SDK
    "meterbill/services": set(),
    "meterbill/rendering": {"jinja2", "markupsafe", "reportlab", "matplotlib"},   # no boto3, no powertools
}
FORBIDDEN_CALLS_IN_DOMAIN = ("datetime.now", "datetime.utcnow", "time.time", "os.environ", "os.getenv",
                             "date.today", "random.")


def modules(prefix: str) -> list[Path]:
    path = ROOT / prefix
    return [path] if path.suffix == ".py" else sorted(path.rglob("*.py"))


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


CASES = [(prefix, p) for prefix in RULES for p in modules(prefix)]


@pytest.mark.parametrize(("prefix", "path"), CASES, ids=[str(p.relative_to(ROOT)) for _, p in CASES])
def test_imports_point_inward(prefix: str, path: Path) -> None:
    allowed = RULES[prefix]
    for name in imports(path):
        top = name.split(".")[0]
        if top == "integrations" and prefix == "integrations":
            continue  # its own package: test_a_vendor_plugin_imports_no_other_vendor
        if top in ("meterbill", "functions", "infra", "integrations"):
            assert any(name == a or name.startswith(a + ".") for a in allowed), \
                f"{path.relative_to(ROOT)} imports {name}; {prefix} may import only {allowed}"
        elif prefix in THIRD_PARTY_ALLOWED:
            assert top in STDLIB or top in THIRD_PARTY_ALLOWED[prefix], \
                f"{path.relative_to(ROOT)} imports third-party '{name}'; {prefix} may use only " \
                f"{sorted(THIRD_PARTY_ALLOWED[prefix]) or 'the standard library'}"


@pytest.mark.parametrize("path", modules("meterbill/domain") + modules("meterbill/integration"),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_domain_reads_no_clock_and_no_environment(path: Path) -> None:
    text = path.read_text()
    for call in FORBIDDEN_CALLS_IN_DOMAIN:
        assert call not in text, f"{path.name} uses {call}: the domain gets time and config passed in"


@pytest.mark.parametrize("path", modules("integrations"), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_vendor_plugin_imports_no_other_vendor(path: Path) -> None:
    vendor = path.relative_to(ROOT / "integrations").parts[0]
    for name in imports(path):
        if name.split(".")[0] == "integrations":
            assert name.split(".")[1:2] == [vendor], f"{path.relative_to(ROOT)} imports {name}: one vendor per module"


def test_every_charge_model_module_is_registered() -> None:
    from meterbill.domain.charges import REGISTRY

    files = {p.stem for p in (ROOT / "meterbill/domain/charges").glob("*.py") if p.stem != "__init__"}
    assert files == set(REGISTRY), "one charge model per module, each in the registry"
