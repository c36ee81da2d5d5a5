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


def test_the_runner_refuses_shell_fences_and_reads_commands_annotations_and_scope(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n```sh\ncurl x\n```\n\n```bash\nls\n```\n\n```\n$ hidden\n```\n\n"
        "```console\n$ PUBLIC_BASE_URL=http://127.0.0.1:3000 \\\n  make run\n```\n\n"
        "<!-- example: file f.txt -->\n```ini\nk=v\n```\n\n<!-- example: env A=1 B=fake -->\n"
        "```console\n$ echo one \\\n  two\none two\n$ true\n```\n\n## Next\n\n"
        "<!-- example: no-service -->\n```console\n$ true\n```\n\n```console\nstray output\n```\n\n"
        "<!-- example: bogus -->\n```console\n$ true\n```\n")
    found = collect([page])
    errors = [(e.line, e.error) for e in found if e.error]
    assert [line for line, _ in errors] == [3, 7, 11, 40, 44]
    assert "```console" in errors[0][1] and "bare" in errors[2][1] and "before the first" in errors[3][1]
    assert "unknown annotation" in errors[4][1]
    serve, second, third = (e for e in found if not e.error and e.line in (15, 26, 36))
    assert serve.service is None and serve.commands[0].starts_service
    assert [(c.text, c.expected) for c in second.commands] == [("echo one \\\n  two", "one two"), ("true", "")]
    assert second.service == ["PUBLIC_BASE_URL=http://127.0.0.1:3000 \\\n  make run"]
    assert second.env == {"A": "1", "B": "fake"} and second.files == {"f.txt": "k=v\n"}
    assert third.service is None


def test_masking_hides_ids_times_and_secrets_only():
    shown = mask('{"dateEvent":"2026-11-25T14:04:22.706Z","sid":"CO44d2","status":"queued"}\n'
                 "X-Request-Id: abc123\nwebhook-signature: v1,K5oZ+/=\n?token=s3cr3t whsec_MfKQ\n")
    assert shown == ('{"dateEvent":"<time>","sid":"<id>","status":"queued"}\nX-Request-Id: <id>\n'
                     "webhook-signature: v1,<signature>\n?token=<secret> whsec_<secret>")
    assert mask('{"status":"queued"}') != mask('{"status":"sent"}')
