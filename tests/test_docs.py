"""The documentation holds together: the files and sections the code cites exist, relative links in the Markdown
resolve (anchors included), and the Markdown describes the product rather than how it was made.

A citation of a section reads ``docs/references.md, "Dropout"``: the quoted text is a heading of that file. Links
and anchors follow GitHub's rendering, which is where a reader follows them. The checkers are plain functions of
a text or a path, tested first on small made-up files whose answers are known.
"""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE_DIRS = ("augpipe", "training", "tests", "benchmarks")
# The Markdown a user reads: the top-level files (README, CONTRIBUTING, CHANGELOG) and the documents beside the code.
DOC_GLOBS = ("*.md", "docs/*.md", "training/*.md", "benchmarks/*.md")
REFERENCES = "docs/references.md"

# Words that tell how or when the work was done (work sessions, machines leased, lent or borrowed for it, issue
# numbers, numbered work periods) rather than what the product does. A reader can act on none of them and they are
# stale the day they are written; measurements carry the machine, versions and date instead. Matched
# case-insensitively as whole words, with an optional plural "s".
PROCESS_WORDS = ("session", "lease", "lent", "borrowed", "issue #", "work period")

MARKDOWN_PATH = re.compile(r"(?<![\w./:-])(?:[\w.-]+/)*[\w.-]*\w\.md\b")  # not inside a URL
CITATION = re.compile(r"(docs/[\w.-]+\.md),\s*\"([^\"]+)\"")
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.I)
INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.S)
INLINE_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*(<[^>]*>|[^\s)]+)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
LINK_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)", re.M)
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.I)


# ------------------------------------------------------------------------------------------------ the checkers
def line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def without_code(text: str) -> str:
    """The text with fenced blocks and inline code blanked out (line numbers kept): links and headings there are
    examples, not part of the document."""
    lines, fence = text.split("\n"), None
    for i, line in enumerate(lines):
        m = FENCE.match(line)
        if fence is None and not m:
            continue
        if fence is None:
            fence = m.group(1)
        elif set(line.strip()) == {fence[0]} and len(line.strip()) >= len(fence):
            fence = None
        lines[i] = ""
    return INLINE_CODE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), "\n".join(lines))


def headings(text: str) -> list[str]:
    return [m.group(1) for line in without_code(text).split("\n") if (m := HEADING.match(line))]


def github_anchor(heading: str) -> str:
    """GitHub's rule: the rendered text, lowercased, every character but letters, digits, spaces, hyphens and
    underscores dropped, spaces turned into hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link shows its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor a Markdown file offers; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    out = set(HTML_ANCHOR.findall(text))
    for heading in headings(text):
        base = github_anchor(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(text: str) -> list[tuple[int, str]]:
    """(line, target) of every inline link, image and link definition outside code."""
    text = without_code(text)
    found = [(m.start(), m.group(1)) for pattern in (INLINE_LINK, LINK_DEFINITION) for m in pattern.finditer(text)]
    return sorted((line_of(text, at), target.strip("<>")) for at, target in found)


def inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def link_problems(md: Path, root: Path) -> list[str]:
    """What is wrong with the relative links of one Markdown file: targets that are missing or outside the
    repository, and anchors that name no heading of the Markdown file they point into."""
    text, problems = md.read_text(encoding="utf-8"), []
    name = md.relative_to(root).as_posix()
    for line, target in links(text):
        if EXTERNAL.match(target):
            continue
        path, _, anchor = target.partition("#")
        path = unquote(path)
        dest = md if not path else (root / path.lstrip("/") if path.startswith("/") else md.parent / path)
        if not inside(dest, root) or not dest.exists():
            problems.append(f"{name}:{line}: link {target!r}: no file {path!r} in the repository")
        elif anchor and dest.suffix == ".md" and unquote(anchor).lower() not in anchors(dest.read_text("utf-8")):
            problems.append(f"{name}:{line}: link {target!r}: {dest.name} has no heading with anchor #{anchor}")
    return problems


def process_words(text: str) -> list[tuple[int, str]]:
    """(line, word) of every word of PROCESS_WORDS in the text, code included."""
    hits = []
    for word in PROCESS_WORDS:
        end = r"s?(?!\w)" if word[-1].isalnum() else ""
        pattern = re.compile(r"(?<!\w)" + re.escape(word).replace(r"\ ", r"\s+") + end, re.I)
        hits += [(line_of(text, m.start()), m.group(0)) for m in pattern.finditer(text)]
    return sorted(hits)


def markdown_paths(text: str) -> list[tuple[int, str]]:
    return [(line_of(text, m.start()), m.group(0)) for m in MARKDOWN_PATH.finditer(text)]


def path_problems(source: Path, root: Path) -> list[str]:
    """Markdown files named in a source file that are not in the repository, read from the repository root or
    from the file's own folder."""
    name = source.relative_to(root).as_posix()
    return [f"{name}:{line}: names {path!r}, which is not a file in the repository"
            for line, path in markdown_paths(source.read_text(encoding="utf-8"))
            if not any(inside(base / path, root) and (base / path).is_file() for base in (root, source.parent))]


def citation_problems(source: Path, root: Path) -> list[str]:
    """Citations of a section of a file in docs/ (``docs/design.md, "Stages"``) whose section is not one of its
    headings."""
    text, name = source.read_text(encoding="utf-8"), source.relative_to(root).as_posix()
    problems = []
    for m in CITATION.finditer(text):
        target = root / m.group(1)
        if m.group(2) not in (headings(target.read_text(encoding="utf-8")) if target.is_file() else []):
            problems.append(f"{name}:{line_of(text, m.start())}: cites section {m.group(2)!r}, which is no heading "
                            f"of {m.group(1)}")
    return problems


def code_files(root: Path) -> list[Path]:
    return sorted(p for d in CODE_DIRS for p in (root / d).rglob("*.py"))


def doc_files(root: Path) -> list[Path]:
    return sorted({p for pattern in DOC_GLOBS for p in root.glob(pattern) if p.is_file()})


# ------------------------------------------------------------------------------------------------ the checkers, tested
def test_github_anchor_rule():
    assert github_anchor("Fractional max pooling") == "fractional-max-pooling"
    assert github_anchor("`compile=True`: costs") == "compiletrue-costs"
    assert github_anchor("Masks, boxes & keypoints") == "masks-boxes--keypoints"
    assert github_anchor("Label_smoothing (eps) and [CutMix](x.py)") == "label_smoothing-eps-and-cutmix"
    assert anchors("# A\n## A\n```\n# not a heading\n```\n## B ##\n") == {"a", "a-1", "b"}


def test_link_checker_finds_missing_files_and_anchors(tmp_path):
    md = ".md"  # spelled apart so that the made-up names below are not read as paths this file names
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / f"guide{md}").write_text("# Guide\n## Two words\n")
    (tmp_path / "README.md").write_text(
        f"[ok](docs/guide{md}#two-words) [self](#top) [web](https://example.com/a{md})\n"
        f"[gone](docs/gone{md}) [bad anchor](docs/guide{md}#three-words)\n"
        f"```\n[in code](nowhere{md})\n```\n`[inline](nowhere{md})` ![img](docs/)\n"
        f"[out](../outside{md})\n\n[def]: docs/guide{md}#guide\n# Top\n")
    problems = link_problems(tmp_path / "README.md", tmp_path)
    assert len(problems) == 3, problems
    assert f"README.md:2: link 'docs/gone{md}'" in problems[0]
    assert f"README.md:2: link 'docs/guide{md}#three-words'" in problems[1]
    assert f"README.md:7: link '../outside{md}'" in problems[2]


def test_process_word_check_is_case_insensitive_and_whole_word():
    text = "Sessions end.\nA LEASE and a lent GPU.\nfixed in Issue #12, work\nperiods\nreleased, equivalent, relentless"
    assert process_words(text) == [(1, "Sessions"), (2, "LEASE"), (2, "lent"), (3, "Issue #"), (3, "work\nperiods")]


def test_path_and_citation_checkers(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / REFERENCES).write_text("# References\n## Dropout\n")
    missing = "notes" + ".md"
    source = tmp_path / "mod.py"
    source.write_text(f'"""See {REFERENCES}, "Dropout", {REFERENCES}, "Droput" and {missing}; '
                      f'https://github.com/x/y/blob/main/{missing}."""\n')
    assert [p.split(": ", 1)[1] for p in path_problems(source, tmp_path)] == [
        f"names {missing!r}, which is not a file in the repository"]
    assert [p.split(": ", 1)[1] for p in citation_problems(source, tmp_path)] == [
        f"cites section 'Droput', which is no heading of {REFERENCES}"]


# ------------------------------------------------------------------------------------------------ the repository
def test_markdown_files_named_in_code_exist():
    problems = [p for f in code_files(ROOT) for p in path_problems(f, ROOT)]
    assert not problems, "\n".join(problems)


def test_citations_name_sections_of_the_references():
    assert (ROOT / REFERENCES).is_file()
    problems = [p for f in code_files(ROOT) + doc_files(ROOT) for p in citation_problems(f, ROOT)]
    assert not problems, "\n".join(problems)


def test_the_references_have_the_cited_sections():
    # Guards the collection below: an empty glob would make the per-document tests pass vacuously.
    assert ROOT / REFERENCES in doc_files(ROOT)
    assert {"Initialization", "Dropout", "Activations", "Cutout", "CutMix"} <= set(headings(
        (ROOT / REFERENCES).read_text(encoding="utf-8")))


@pytest.mark.parametrize("doc", doc_files(ROOT), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(doc):
    problems = link_problems(doc, ROOT)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc", doc_files(ROOT), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_docs_do_not_tell_how_the_work_was_done(doc):
    hits = process_words(doc.read_text(encoding="utf-8"))
    name = doc.relative_to(ROOT).as_posix()
    assert not hits, "\n".join(f"{name}:{line}: {word!r}" for line, word in hits)
