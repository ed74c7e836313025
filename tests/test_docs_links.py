"""The README and the pages of docs/ hold together: every relative link names a file of the
repository and every anchor a heading of its target, by GitHub's anchor rules; external
links are well-formed (never fetched); the README stays short enough to read in ten
minutes, with its picture of the architecture; and it links every page."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from harness.processes import ROOT

README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
EACH_PAGE = [pytest.param(page, id=str(page.relative_to(ROOT))) for page in PAGES]
MAX_README_LINES = 260
# What the README's Mermaid picture must show, each named as it is in the picture.
PICTURED = ["nginx", "gunicorn", "PostgreSQL", "SQLite", "scheduler", "metrics listener"]

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
CODE_SPAN = re.compile(r"(`+)((?:(?!\n\n).)+?)\1", re.DOTALL)
# [text](target "title") and ![alt](target); the text may span lines, not hold brackets.
INLINE_LINK = re.compile(r"!?\[([^\[\]]*)\]\(\s*<?([^\s<>()]*)>?(?:\s+\"[^\"]*\")?\s*\)")
AUTOLINK = re.compile(r"<((?:https?|mailto):[^<>\s]*)>")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.MULTILINE)
HTML_ANCHOR = re.compile(r"<a\s[^>]*\b(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)
# GitHub's anchors for lines of a file that is not rendered as Markdown: #L12, #L12-L20.
LINE_ANCHOR = re.compile(r"L\d+(-L\d+)?")


def unfenced(text: str) -> str:
    """`text` with its fenced code blocks blanked, keeping the line count."""
    lines, fence = [], ""
    for line in text.splitlines():
        opened = FENCE.match(line)
        if fence:
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = ""
            lines.append("")
        elif opened:
            fence = opened.group(1)
            lines.append("")
        else:
            lines.append(line)
    return "\n".join(lines)


def prose(text: str) -> str:
    """`text` without code: fenced blocks blanked, code spans removed."""
    return CODE_SPAN.sub("", unfenced(text))


def fenced_blocks(text: str, language: str) -> list[str]:
    """The bodies of the fenced code blocks of `text` whose info string is `language`."""
    blocks: list[str] = []
    body: list[str] = []
    fence = fence_language = ""
    for line in text.splitlines():
        opened = FENCE.match(line)
        if fence:
            if opened and opened.group(1)[0] == fence[0] and not opened.group(2).strip():
                if fence_language == language:
                    blocks.append("\n".join(body))
                fence, body = "", []
            else:
                body.append(line)
        elif opened:
            fence, fence_language = opened.group(1), opened.group(2).strip().split(" ")[0]
    return blocks


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text as rendered (link text, no code or emphasis
    marks), lower-cased, punctuation other than hyphens and underscores removed, each space
    a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    text = re.sub(r"[*]+|(?<!\w)_+|_+(?!\w)", "", text)
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor a Markdown page offers: its headings' (a repeated one gets -1, -2...)
    and explicit HTML anchors."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    text = page.read_text()
    for line in unfenced(text).splitlines():
        heading = HEADING.match(line)
        if heading is None:
            continue
        base = slug(heading.group(2))
        found.add(base if base not in seen else f"{base}-{seen[base]}")
        seen[base] = seen.get(base, 0) + 1
    return found | set(HTML_ANCHOR.findall(text))


def links(page: Path) -> list[str]:
    """Every link target of a Markdown page, outside code, in order."""
    text = prose(page.read_text())
    found = [target for _, target in INLINE_LINK.findall(text)]
    return found + AUTOLINK.findall(text) + REFERENCE.findall(text)


def broken(page: Path, target: str) -> str | None:
    """Why `target`, a link on `page`, leads nowhere; None when it is sound."""
    parts = urlsplit(target)
    if parts.scheme in ("http", "https"):
        try:
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            port_ok = False
        well_formed = bool(parts.hostname) and port_ok and not re.search(r"\s", target)
        return None if well_formed else "not a well-formed URL"
    if parts.scheme == "mailto":
        return None if re.fullmatch(r"[^@\s]+@[^@\s]+", parts.path) else "not an address"
    if parts.scheme or parts.netloc:
        return f"unexpected scheme {parts.scheme!r}"
    if not parts.path:
        destination = page
    elif parts.path.startswith("/"):
        destination = ROOT / unquote(parts.path).lstrip("/")
    else:
        destination = page.parent / unquote(parts.path)
    destination = destination.resolve()
    if not destination.is_relative_to(ROOT):
        return "outside the repository"
    if not destination.exists():
        return "no such file"
    if not parts.fragment:
        return None
    fragment = unquote(parts.fragment)
    if destination.suffix == ".md":
        return None if fragment in anchors(destination) else "no such heading"
    if destination.is_file() and LINE_ANCHOR.fullmatch(fragment):
        return None
    return "an anchor into a file that has no headings"


def test_there_are_docs_pages() -> None:
    """The topics live in docs/: the README is not the only page."""
    assert len(PAGES) > 1


@pytest.mark.parametrize("page", EACH_PAGE)
def test_every_link_leads_to_a_file_and_heading(page: Path) -> None:
    """Each relative link names a file of the repository and, with an anchor, one of its
    headings; each http(s) link is a well-formed URL."""
    failures = [f"{target}: {why}" for target in links(page) if (why := broken(page, target))]
    assert failures == []


def test_the_readme_is_read_in_ten_minutes() -> None:
    """The README stays short: its topics live in docs/."""
    assert len(README.read_text().splitlines()) <= MAX_README_LINES


def test_the_readme_pictures_the_architecture() -> None:
    """The README has a Mermaid picture naming the way in, the servers, the databases, the
    scheduler and the metrics listener."""
    pictures = fenced_blocks(README.read_text(), "mermaid")
    assert len(pictures) == 1
    missing = [name for name in PICTURED if name.lower() not in pictures[0].lower()]
    assert missing == []


def test_the_readme_links_every_docs_page() -> None:
    """Each page of docs/ is reachable from the README."""
    linked = {(README.parent / urlsplit(target).path).resolve() for target in links(README)}
    assert [page.name for page in PAGES[1:] if page.resolve() not in linked] == []


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        pytest.param("Quick start", "quick-start", id="spaces"),
        pytest.param("A single host: systemd or supervisor, with nginx",
                     "a-single-host-systemd-or-supervisor-with-nginx", id="punctuation"),
        pytest.param("Serving with `gevent` alone", "serving-with-gevent-alone", id="code"),
        pytest.param("The [API](api.md) document", "the-api-document", id="link"),
        pytest.param("kit / bare, sync_worker - 2", "kit--bare-sync_worker---2", id="hyphens"),
    ],
)  # fmt: skip
def test_anchors_follow_githubs_rules(heading: str, anchor: str) -> None:
    """A heading's anchor is what GitHub makes of it."""
    assert slug(heading) == anchor
