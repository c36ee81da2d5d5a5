"""Every shell example of README.md and docs/*.md runs against a served instance and prints what it shows."""

from __future__ import annotations

import re

import pytest
from support.doc_examples import ROOT, collect, mask, run
from support.fake_provider import FakeProvider
from support.ports import free_port

EXAMPLES = collect()


@pytest.mark.e2e
@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_the_example_prints_what_the_doc_shows(example):
    assert example.error is None, f"{example.id}: {example.error}"
    fake = FakeProvider().start() if any(v == "fake" for v in example.env.values()) else None
    try:
        ports = {port: free_port() for port in (3000, 8000, 8080, 8081)}
        outcome = run(example, ports, fake.url if fake else None)
    finally:
        if fake:
            fake.stop()
    shown = [mask(c.expected) for c in example.commands]
    printed = [mask(o) for o in outcome.outputs[:len(example.commands)]]
    report = "\n".join(
        f"$ {c.text}\n--- the doc shows:\n{s}\n--- it printed:\n{p}\n"
        for c, s, p in zip(example.commands, shown, printed) if s != p)
    assert len(outcome.outputs) == len(example.commands), f"{example.id}: {outcome.outputs[-1]}\n{outcome.logs[-3000:]}"
    assert printed == shown, f"{example.id}:\n{report}\nlogs (end):\n{outcome.logs[-3000:]}"


def test_the_runner_finds_the_quick_start():
    readme = [e for e in EXAMPLES if e.id.startswith("README.md:")]
    assert readme and any("/send" in c.text for e in readme for c in e.commands)


def _slug(heading: str) -> str:
    """The anchor MkDocs (Python-Markdown's toc) gives a heading."""
    text = re.sub(r"[^\w\s-]", "", heading.replace("`", "")).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def test_the_readme_links_to_docs_pages_and_headings_that_exist():
    # mkdocs --strict checks the links inside docs/; the README is outside it.
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\((docs/[^)#]+)(?:#([^)]+))?\)", readme)
    assert links
    for target, anchor in links:
        path = ROOT / target
        assert path.is_file(), target
        if anchor:
            headings = [_slug(h) for h in re.findall(r"^#+ (.+)$", path.read_text(), re.M)]
            assert anchor in headings, f"{target}#{anchor}"
