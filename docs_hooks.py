"""Build-time glue for the docs site (``mkdocs build``; configured in mkdocs.yml).

Two parts, both used only when the site is built:

* MkDocs hooks (``on_files``, ``on_page_markdown``, ``on_page_content``):
  - generate ``reference.md``: one mkdocstrings section for every name in ``smartpool.__all__``,
    grouped under the headings of the hand-written API guide (docs/api.md), so a public name
    added to the package appears in the reference without anyone editing a list; after
    rendering, a name without its section is a warning (an error under ``--strict``);
  - serve files of the repository that a page links to with ``../`` (the benchmark chart in
    ``benchmarks/results/``, an example in ``examples/``): the link keeps working when the
    Markdown is read on its own, and the site gets a copy of the file.
* A griffe extension, ``DocstringDialect``, that reads smartpool's docstrings as they are
  written (Sphinx roles such as ``:class:`Lock```, ``Example:`` sections of doctests,
  ``Example::`` literal blocks, ``#:`` comments on attributes, docstrings given at run time)
  and hands mkdocstrings the Google-style Markdown it renders.
"""

from __future__ import annotations

import importlib
import inspect
import posixpath
import re
from pathlib import Path
from typing import Any

import griffe
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import get_plugin_logger
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

log = get_plugin_logger("smartpool-docs")

REFERENCE = "reference.md"
#: Where copies of repository files linked from pages go in the site.
REPO_FILES = "_repo"

_LINK = re.compile(r"(\]\()((?:\.\./)+[^)\s#]+)")
_SESSION_FENCE = re.compile(r"^([ \t]*)```python[ \t]*\n(?=[ \t]*>>>)", re.MULTILINE)
_GUIDE_HEADING = re.compile(r"^(#{2,3}) +(.*?)\s*$")
_GUIDE_NAME = re.compile(r"^`(?:smartpool\.)?([A-Za-z_]\w*)`$")


def _public_names() -> list[str]:
    return list(importlib.import_module("smartpool").__all__)


def reference_markdown(guide: str, names: list[str]) -> str:
    """The reference page: ``::: smartpool.NAME`` for each of ``names``, grouped as the guide is.

    ``guide`` is docs/api.md: its ``##`` headings name the groups and its ``### `name```
    headings the names in them, in order. Names the guide does not list come last, under
    "Other names", in the order given.
    """
    groups: list[tuple[str, list[str]]] = []
    wanted = set(names)
    placed: set[str] = set()
    for line in guide.splitlines():
        heading = _GUIDE_HEADING.match(line)
        if heading is None:
            continue
        level, title = heading.groups()
        if level == "##":
            groups.append((title, []))
            continue
        name = _GUIDE_NAME.match(title)
        if groups and name and name.group(1) in wanted and name.group(1) not in placed:
            groups[-1][1].append(name.group(1))
            placed.add(name.group(1))
    rest = [name for name in names if name not in placed]
    if rest:
        groups.append(("Other names", rest))
    parts = [
        "# Reference\n",
        "Every public name of `smartpool`, as its docstring describes it. This page is generated",
        "when the site is built, from the docstrings in the source; the [API guide](api.md)",
        "explains the same names with more context, errors and examples.\n",
    ]
    for title, members in groups:
        if members:
            parts.append(f"## {title}\n")
            parts.extend(f"::: smartpool.{name}\n" for name in members)
    return "\n".join(parts)


def on_files(files: Files, *, config: MkDocsConfig) -> Files:
    docs = Path(config.docs_dir)
    if files.get_file_from_path(REFERENCE) is not None:
        log.warning(f"docs/{REFERENCE} exists, but {REFERENCE} is generated: rename the page")
        return files
    guide = docs / "api.md"
    text = guide.read_text(encoding="utf-8") if guide.exists() else ""
    files.append(
        File.generated(config, REFERENCE, content=reference_markdown(text, _public_names()))
    )
    root = docs.parent.resolve()
    for page in list(files.documentation_pages()):
        if page.abs_src_path is None:
            continue
        markdown = Path(page.abs_src_path).read_text(encoding="utf-8")
        for _, target in _LINK.findall(markdown):
            path = _outside_docs(page.src_uri, target, docs, root)
            uri = f"{REPO_FILES}/{path}"
            if path is not None and files.get_file_from_path(uri) is None:
                files.append(File.generated(config, uri, abs_src_path=str(root / path)))
    return files


def _outside_docs(page_uri: str, target: str, docs: Path, root: Path) -> str | None:
    """The repository path of a ``../`` link's target outside the docs, if it is a file."""
    resolved = (docs / posixpath.dirname(page_uri) / target).resolve()
    if resolved.is_relative_to(docs.resolve()) or not resolved.is_relative_to(root):
        return None
    return resolved.relative_to(root).as_posix() if resolved.is_file() else None


def on_page_markdown(markdown: str, *, page: Page, config: MkDocsConfig, files: Files) -> str:
    docs = Path(config.docs_dir)
    root = docs.parent.resolve()
    here = posixpath.dirname(page.file.src_uri)

    def relink(match: re.Match[str]) -> str:
        path = _outside_docs(page.file.src_uri, match.group(2), docs, root)
        if path is None:
            return match.group(0)
        return match.group(1) + posixpath.relpath(f"{REPO_FILES}/{path}", here or ".")

    # Sessions are highlighted as sessions: prompts and output apart from the code.
    return _SESSION_FENCE.sub(r"\1```pycon\n", _LINK.sub(relink, markdown))


def on_page_content(html: str, *, page: Page, config: MkDocsConfig, files: Files) -> str:
    if page.file.src_uri == REFERENCE:
        missing = [name for name in _public_names() if f'id="smartpool.{name}"' not in html]
        if missing:
            log.warning(f"{REFERENCE} has no rendered section for: {', '.join(missing)}")
    return html


# --- griffe: smartpool's docstrings as mkdocstrings reads them -------------------------------

#: Public names that are decorator objects (instances), labelled as such instead of "attribute".
_DECORATORS = frozenset({"auto", "cpu_bound", "io_bound"})
_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|exc|mod|data|obj|const):`(~?)([^`]+)`")
_EXAMPLE_HEADING = re.compile(r"^(\s*)Examples?:\s*$")
_LITERAL_HEADING = re.compile(r"^(\s*)(Examples?)::\s*$")


class DocstringDialect(griffe.Extension):
    """Rewrites smartpool's docstrings into the Google-style Markdown that mkdocstrings renders.

    The source keeps its conventions (Sphinx roles, ``Example:`` doctest sections, ``#:``
    comments), which read well in ``help()`` and in an editor; only the site's copy changes.
    """

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.path != "smartpool":
            return
        runtime = importlib.import_module("smartpool")
        for name in runtime.__all__:
            target = _final(pkg, name)
            doc = getattr(getattr(runtime, name, None), "__doc__", None)
            if target is not None and target.docstring is None and doc:
                # A docstring set at run time (the decorators are instances given their doc):
                # the source's right-hand side, which repeats that text, is not shown.
                target.docstring = griffe.Docstring(inspect.cleandoc(doc), parent=target)
                if isinstance(target, griffe.Attribute):
                    target.value = None
                    target.labels = {"decorator"} if name in _DECORATORS else set()
        self._rewrite(pkg, pkg, set())

    def _rewrite(self, pkg: griffe.Module, obj: griffe.Object, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is None and isinstance(obj, griffe.Attribute):
            comment = _doc_comment(obj)
            if comment:
                obj.docstring = griffe.Docstring(comment, parent=obj)
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value, pkg)
        for member in obj.members.values():
            if not member.is_alias:
                self._rewrite(pkg, member, seen)  # type: ignore[arg-type]


def _final(pkg: griffe.Module, name: str) -> griffe.Object | None:
    try:
        member = pkg[name]
        return member.final_target if member.is_alias else member  # type: ignore[no-any-return]
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None


def _doc_comment(obj: griffe.Attribute) -> str:
    """The ``#:`` comment lines right above an attribute (Sphinx's attribute doc comments)."""
    filepath = obj.filepath
    if not isinstance(filepath, Path) or filepath not in obj.lines_collection or not obj.lineno:
        return ""  # a compiled module, or an attribute found by inspection: no source to read
    lines = obj.lines_collection[filepath]
    found: list[str] = []
    index = (obj.lineno or 0) - 2
    while 0 <= index < len(lines) and lines[index].lstrip().startswith("#:"):
        found.insert(0, lines[index].lstrip()[2:].strip())
        index -= 1
    return " ".join(found)


def markdown_docstring(text: str, pkg: griffe.Module) -> str:
    """``text`` with Sphinx roles as code (linked when public) and Google-style example sections."""
    text = _ROLE.sub(lambda match: _role(match, pkg), text)
    out: list[str] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        literal = _LITERAL_HEADING.match(line)
        if literal:
            # ``Example::`` and an indented block (a sketch): an admonition holding a code block.
            indent = literal.group(1)
            block: list[str] = []
            index += 1
            while index < len(lines) and (
                not lines[index].strip() or _indent(lines[index]) > len(indent)
            ):
                block.append(lines[index])
                index += 1
            while block and not block[-1].strip():
                block.pop()
            code = inspect.cleandoc("\n".join(block)).splitlines()
            inner = indent + "    "
            out.append(f"{indent}{literal.group(2)}:")
            out.append(f"{inner}```python")
            out.extend(f"{inner}{code_line}".rstrip() for code_line in code)
            out.append(f"{inner}```")
            continue
        example = _EXAMPLE_HEADING.match(line)
        out.append(f"{example.group(1)}Examples:" if example else line)
        index += 1
    return "\n".join(out)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _role(match: re.Match[str], pkg: griffe.Module) -> str:
    tilde, target = match.group(1), match.group(2).strip()
    shown = f"`{target.rsplit('.', 1)[-1] if tilde else target}`"
    path = target.removeprefix("smartpool.")
    if path.split(".")[0] not in _public_names():
        return shown
    try:
        obj = pkg[path]
        obj = obj.final_target if obj.is_alias else obj
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return shown
    rendered = "." not in path or (obj.docstring is not None and not obj.name.startswith("_"))
    return f"[{shown}][smartpool.{path}]" if rendered else shown
