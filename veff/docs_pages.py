"""``veff help TOPIC``: the documentation pages shipped with the package.

``veff/docs`` is a link to the repository's ``docs/`` (one source of truth): an editable
install reads the pages through it, and a wheel carries copies (package data
``docs/*.md`` in pyproject.toml, which setuptools collects through the link).
"""

from __future__ import annotations

from importlib import resources


class HelpError(Exception):
    """No such documentation page."""


def _pages():
    root = resources.files("veff") / "docs"
    try:
        return {p.name[:-3]: p for p in root.iterdir() if p.name.endswith(".md")}
    except (FileNotFoundError, NotADirectoryError):
        return {}


def topics() -> list[tuple[str, str]]:
    """(topic, first heading) for every page, sorted by topic."""
    out = []
    for name, p in sorted(_pages().items()):
        first = next((line for line in p.read_text().splitlines() if line.startswith("#")), "")
        out.append((name, first.lstrip("# ").strip()))
    return out


def page(topic: str) -> str:
    pages = _pages()
    key = topic[:-3] if topic.endswith(".md") else topic
    key = key.removeprefix("docs/")
    if key in pages:
        return pages[key].read_text()
    if not pages:
        raise HelpError("this installation of veff has no documentation pages (veff/docs)")
    from veff.cli import did_you_mean

    raise HelpError(f"no help topic {topic!r}; {did_you_mean(key, pages)}topics: {', '.join(sorted(pages))}")
