# Copyright (c) mmstop contributors. All rights reserved.
"""The repository is self-contained: its text points only inside itself.

* No tracked file cites the design documents that live outside the
  repository (the ``shared/spec`` pages, "spec stop.md section ...", the
  golden-data READMEs under ``shared/parity``). What the code relies on is in
  ``docs/stop.md``, ``docs/ssp.md`` and ``docs/parity.md``. Paths to the
  golden *data* directory (``$MMSTOP_PARITY_DIR``, ``../shared/parity``) are
  fine: tests and CI read data there.
* Every ``docs/<page>.md#<anchor>`` written in code, configs or docs, and every
  relative markdown link, names an existing file and, for a markdown file, an
  existing heading (GitHub's anchor rules).
"""
import os.path as osp
import re
import subprocess
import unicodedata
from functools import lru_cache

import pytest
from helpers import REPO_ROOT

THIS_FILE = osp.relpath(osp.abspath(__file__), REPO_ROOT)
TEXT_SUFFIXES = ('.py', '.md', '.ini', '.cfg', '.sh', '.yml', '.yaml', '.txt',
                 '.toml')

# citations of documents that are not in the repository
FORBIDDEN = [
    (re.compile(r'shared/spec'), 'the shared/spec design documents'),
    (re.compile(r'\bspec\W{0,4}(stop|ssp)\.md',
                re.I), 'spec stop.md / ssp.md'),
    (re.compile(r'\b(stop|ssp)\.md\W{0,4}(§|sections?\s+\d)',
                re.I), 'a numbered section of stop.md / ssp.md'),
    (re.compile(r'\bspec\W{0,4}(§|sections?\s+\d)',
                re.I), 'a numbered spec section'),
    (re.compile(r'shared/parity/[\w./-]*README',
                re.I), 'a golden-data README under shared/parity'),
    (re.compile(r'\bREADME\W{0,4}sections?\s+\d',
                re.I), 'a numbered README section (the golden-data READMEs)'),
    (re.compile(r'golden[ -]data README|golden README|README recipe',
                re.I), 'a golden-data README'),
    # the numbering style of those documents ("§2.9", "section 2.9"); the
    # docs pages are referred to by file and anchor instead
    (re.compile(r'§\s*\d'), 'a numbered section (§) of an outside document'),
    (re.compile(r'\bsections?\s+\d+\.\d+',
                re.I), 'a dotted section number of an outside document'),
]

# docs/<page>.md with an optional #anchor, not part of a longer path
DOCS_REF = re.compile(r'(?<![\w./-])docs/([\w.-]+\.md)(?:#([\w-]+))?')
MD_LINK = re.compile(r'\]\(([^)\s]+)\)')
FENCE = re.compile(r'^\s*(```|~~~)')
HEADING = re.compile(r'^(#{1,6})\s+(.*?)\s*#*\s*$')


@lru_cache(maxsize=None)
def tracked_text_files():
    try:
        out = subprocess.run(['git', 'ls-files', '-z'],
                             cwd=REPO_ROOT,
                             capture_output=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f'not a git checkout ({exc}): no list of tracked files')
    files = {}
    for name in out.decode().split('\0'):
        if not name or not osp.isfile(osp.join(REPO_ROOT, name)):
            continue  # deleted in the work tree
        base = osp.basename(name)
        if not (name.endswith(TEXT_SUFFIXES) or '.' not in base):
            continue
        try:
            with open(osp.join(REPO_ROOT, name), encoding='utf-8') as f:
                files[name] = f.read()
        except UnicodeDecodeError:
            continue
    return files


def without_fences(text):
    """Lines of markdown ``text`` outside fenced code blocks."""
    inside = False
    for lineno, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            inside = not inside
            continue
        if not inside:
            yield lineno, line


def github_slug(heading):
    """GitHub's anchor of a heading: markup and punctuation dropped (except
    ``-`` and ``_``), lower case, spaces to hyphens."""
    text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', heading)  # links
    text = text.strip().lower()
    text = ''.join(c for c in text
                   if c in ' -_' or unicodedata.category(c)[0] in 'LNM')
    return text.replace(' ', '-')


@lru_cache(maxsize=None)
def anchors(relpath):
    """Anchors of the headings of the markdown file ``relpath``."""
    with open(osp.join(REPO_ROOT, relpath), encoding='utf-8') as f:
        text = f.read()
    seen, out = {}, set()
    for _, line in without_fences(text):
        m = HEADING.match(line)
        if not m:
            continue
        slug = github_slug(m.group(2))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f'{slug}-{n}')
    return frozenset(out)


def check_target(relpath, anchor):
    """Problem with a link to ``relpath#anchor`` (repository-relative), or
    None."""
    if not osp.exists(osp.join(REPO_ROOT, relpath)):
        return f'{relpath} does not exist'
    if anchor and relpath.endswith('.md') and anchor not in anchors(relpath):
        return f'{relpath} has no heading with anchor #{anchor}'
    return None


def test_slug_rules():
    assert github_slug('Batch coupling: entropy_max') == \
        'batch-coupling-entropy_max'
    assert github_slug('### What `fast` does, and what was tried'.lstrip(
        '# ')) == 'what-fast-does-and-what-was-tried'
    assert github_slug('Intra-frame prompts (official code)') == \
        'intra-frame-prompts-official-code'
    assert github_slug('1. Recipes') == '1-recipes'


def test_no_citation_of_documents_outside_the_repository():
    problems = []
    for name, text in tracked_text_files().items():
        if name == THIS_FILE:
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            for pattern, what in FORBIDDEN:
                if pattern.search(line):
                    problems.append(f'{name}:{lineno}: cites {what}: '
                                    f'{line.strip()[:120]}')
    assert not problems, (
        'references to documents outside the repository (point at '
        'docs/stop.md, docs/ssp.md or docs/parity.md instead):\n' +
        '\n'.join(problems))


def test_docs_references_resolve():
    problems = []
    for name, text in tracked_text_files().items():
        for lineno, line in enumerate(text.splitlines(), 1):
            for m in DOCS_REF.finditer(line):
                problem = check_target('docs/' + m.group(1), m.group(2))
                if problem:
                    problems.append(f'{name}:{lineno}: {m.group(0)}: '
                                    f'{problem}')
    assert not problems, '\n'.join(problems)


def test_markdown_links_resolve():
    problems = []
    for name, text in tracked_text_files().items():
        if not name.endswith('.md'):
            continue
        for lineno, line in without_fences(text):
            for m in MD_LINK.finditer(line):
                target = m.group(1)
                if re.match(r'[a-z][a-z0-9+.-]*:', target, re.I):
                    continue  # http:, https:, mailto:, ...
                path, _, anchor = target.partition('#')
                relpath = name if not path else osp.normpath(
                    osp.join(osp.dirname(name), path))
                problem = check_target(relpath, anchor)
                if problem:
                    problems.append(f'{name}:{lineno}: ({target}): {problem}')
    assert not problems, '\n'.join(problems)
