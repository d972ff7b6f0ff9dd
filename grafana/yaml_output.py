"""Deterministic YAML for the generated ops files: block style, indented lists, literal ``|`` blocks for
multi-line strings (PromQL), keys in the order the code writes them, comments where the code puts them."""

from __future__ import annotations

from typing import Any

import yaml


class _BlockDumper(yaml.SafeDumper):  # type: ignore[misc]  # PyYAML ships no type stubs here
    """Indents list items under their key (``rules:\\n  - ...``), as kubectl and promtool users write them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_BlockDumper.add_representer(str, _string)


def dump(value: Any, indent: int = 0) -> list[str]:
    """``value`` as YAML lines, each prefixed with ``indent`` spaces (no trailing whitespace)."""
    text = yaml.dump(value, Dumper=_BlockDumper, sort_keys=False, width=1_000_000, allow_unicode=True)
    return [(" " * indent + line).rstrip() for line in text.splitlines()]


def comment(text: str, indent: int = 0) -> list[str]:
    """``text`` as YAML comment lines at ``indent``."""
    return [(" " * indent + ("# " + line if line else "#")).rstrip() for line in text.splitlines()]
