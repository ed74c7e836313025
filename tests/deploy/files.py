"""The one reader of each deployment file format the tests parse: YAML (compose, Kubernetes,
workflows) and compose.yaml's services. Every test module reads the files through these."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from harness.processes import ROOT

COMPOSE = ROOT / "compose.yaml"


def yaml_documents(text: str) -> list[dict[str, Any]]:
    """Every non-empty YAML document in `text` (a file may hold several, `---` apart)."""
    return [document for document in yaml.safe_load_all(text) if document]


def yaml_file(path: Path) -> dict[str, Any]:
    """The one YAML document in the file at `path`, anchors resolved."""
    (document,) = yaml_documents(path.read_text())
    return document


def compose_services() -> dict[str, dict[str, Any]]:
    """compose.yaml's services by name."""
    services: dict[str, dict[str, Any]] = yaml_file(COMPOSE)["services"]
    return services
