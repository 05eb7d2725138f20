#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Every hand-written page and every public header is reachable from the docs.

A page docs/X.md (other than mainpage.md) must be linked or named in
README.md or docs/mainpage.md (as `docs/X.md` or `X.md`). A public header
(under include/ or transports/*/include/, *.hpp or *.cuh, not under detail/)
must be named there by its path (`sketchsgd/optim/state/checkpoint.hpp` or
`optim/state/checkpoint.hpp`), or by its file name in a list item, table row or
paragraph that also names its directory (`optim/`: `checkpoint.hpp`, ...).
Names of pages and headers that do not exist are reported too, so the pages
do not go stale the other way.

    python3 tests/docs/docs_reachable.py SOURCE_DIR
Exit status 0 when everything is reachable, 1 otherwise (listing what is not).
"""

import pathlib
import re
import sys

PATH_TOKEN = re.compile(r"[\w./-]+\.(?:md|hpp|cuh)\b")
DIR_TOKEN = re.compile(r"`([\w./-]+/)`")
BLOCK_START = re.compile(r"^\s*(?:[-*+]\s|\d+\.\s|\||#)")


def blocks(text):
    """Paragraphs, list items and table rows: the context a file name is read in."""
    out, current = [], []
    for line in text.splitlines():
        if not line.strip() or BLOCK_START.match(line):
            if current:
                out.append("\n".join(current))
            current = [line] if line.strip() else []
        else:
            current.append(line)
    if current:
        out.append("\n".join(current))
    return out


def short_dir(path):
    """`include/sketchsgd/optim/` and `sketchsgd/optim/` -> `optim/`; the top level -> ``."""
    path = path.removeprefix("include/").removeprefix("sketchsgd/")
    return "" if path in ("", "sketchsgd/") else path


def main(root):
    root = pathlib.Path(root)
    sources = {name: (root / name).read_text(encoding="utf-8") for name in ("README.md", "docs/mainpage.md")}

    pages = sorted(p.name for p in (root / "docs").glob("*.md") if p.name != "mainpage.md")
    headers = {}  # relative to its include directory, e.g. sketchsgd/optim/state/checkpoint.hpp -> its repository path
    for include in [root / "include", *sorted((root / "transports").glob("*/include"))]:
        for h in sorted(include.rglob("*")):
            if h.suffix in (".hpp", ".cuh") and "detail" not in h.relative_to(include).parts:
                headers[h.relative_to(include).as_posix()] = h.relative_to(root).as_posix()

    named_paths = set()  # every path token, as written
    named_in_dir = set()  # (short directory, file name) pairs named in one block
    for text in sources.values():
        for block in blocks(text):
            tokens = PATH_TOKEN.findall(block)
            named_paths.update(tokens)
            dirs = {short_dir(d) for d in DIR_TOKEN.findall(block)}
            dirs |= {short_dir(t.rsplit("/", 1)[0] + "/") for t in tokens if "/" in t}
            for t in tokens:
                if "/" not in t:
                    named_in_dir.update((d, t) for d in dirs)

    missing = []
    for page in pages:
        if page not in named_paths and f"docs/{page}" not in named_paths:
            missing.append(f"docs/{page}")
    for rel, repo_path in headers.items():
        short = rel.removeprefix("sketchsgd/")
        directory, _, name = short.rpartition("/")
        directory = directory + "/" if directory else ""
        if not ({rel, short, f"include/{rel}", repo_path} & named_paths) and (directory, name) not in named_in_dir:
            missing.append(repo_path)

    known = set(pages) | {f"docs/{p}" for p in pages} | {"docs/mainpage.md"}
    for rel, repo_path in headers.items():
        known |= {rel, rel.removeprefix("sketchsgd/"), f"include/{rel}", repo_path, rel.rsplit("/", 1)[-1]}
    stale = sorted(t for t in named_paths if t not in known and not (root / t).exists())

    for m in missing:
        print(f"docs_reachable: {m} is named neither in README.md nor in docs/mainpage.md")
    for s in stale:
        print(f"docs_reachable: README.md or docs/mainpage.md names {s}, which does not exist")
    if missing or stale:
        return 1
    print(f"docs_reachable: {len(pages)} pages and {len(headers)} public headers, all named")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
