#!/usr/bin/env python3
# Run by bash too (`bash .ci/walls.py`): the next three lines are a no-op and an exec of
# python3 for bash, and one string for Python.
""":"
exec python3 "$0" "$@"
":"""
"""The walls between the daemon's stages, checked from the source (stdlib only).

    .ci/walls [SRC_DIR]     check the tree (default: src/ beside this script's parent)
    .ci/walls --self-test   plant one wrong-way import per rule in a copy of src/ and
                            show that each is caught

Rules (README, "Code map"):
  sql        only src/store/ runs SQL: no `sqlx` anywhere else
  hubspot    src/hubspot/ imports nothing else of the crate
  rows       the scheduler, limiter, sender, clock and reconciler never import store/
  pure       the reconciler does no I/O (no async, tokio, sqlx, reqwest, std::fs/net/io,
             tracing, store, runtime)
  cli        nothing but main.rs uses cli; the library does not declare it
  size       no production file over 500 lines (lines before the first #[cfg(test)];
             files named tests.rs are test code)
  cycle      no import cycle between top-level modules, nor between the files or folders
             of one module

Imports are read from `crate::` and `super::` paths, with `{...}` groups expanded. Each
broken rule prints `walls: RULE: FILE: what`; the exit code is 1 if any broke.
"""

import os
import re
import shutil
import sys
import tempfile

MAX_LINES = 500

IO_WORDS = [
    r"\basync\s+fn\b", r"\.await\b", r"\btokio::", r"\bsqlx::", r"\breqwest::",
    r"\bstd::fs\b", r"\bstd::net\b", r"\bstd::io\b", r"\btracing::",
    r"\bcrate::store\b", r"\bcrate::runtime\b",
]


def rust_files(src):
    for root, _dirs, files in os.walk(src):
        for f in sorted(files):
            if f.endswith(".rs"):
                yield os.path.join(root, f)


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def expand(path):
    """`a::{b::c, d}` -> ["a::b::c", "a::d"] (nested groups too)."""
    m = re.match(r"^(.*?)\{(.*)\}$", path.strip(), flags=re.S)
    if not m:
        return [path.strip()]
    prefix, inner = m.group(1), m.group(2)
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    out = []
    for p in parts:
        p = p.strip()
        if p:
            out.extend(expand(prefix + p))
    return out


def import_paths(code):
    """Every `crate::...` and `super::...` path the code names, expanded."""
    paths = []
    for m in re.finditer(r"\buse\s+([^;]+);", code):
        paths.extend(p for p in expand(m.group(1)) if p.startswith(("crate::", "super::")))
    for m in re.finditer(r"(?<![:\w])((?:crate|super)(?:::\w+)+)", code):
        paths.append(m.group(1))
    return paths


def rel(src, path):
    return os.path.relpath(path, src).replace(os.sep, "/")


def production_lines(text):
    """Lines before the first `#[cfg(test)]` that opens a test module (`mod ...`)."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.strip().startswith("#[cfg(test)]"):
            rest = [l.strip() for l in lines[i + 1:] if l.strip()]
            if rest and rest[0].startswith(("mod ", "pub mod ")):
                return i
    return len(lines)


def unit_of(relpath):
    """(top-level module, its part) a file belongs to: `dispatch/limiter.rs` ->
    ("dispatch", "limiter"); `dispatch/reconciler/matching.rs` -> ("dispatch",
    "reconciler"); `dispatch/mod.rs` -> ("dispatch", "mod"); `app.rs` -> ("app", "mod")."""
    parts = relpath[:-3].split("/")
    if len(parts) == 1:
        return parts[0], "mod"
    return parts[0], parts[1]


def resolve(src, relpath, path):
    """The (module, part) an import path points into, or None outside the crate."""
    segs = [s for s in path.split("::") if s]
    here = relpath[:-3].split("/")
    if segs[0] == "super":
        # The file's own module: `a/b.rs` is a::b, `a/mod.rs` is a, `a/b/c.rs` is a::b::c.
        mod = here[:-1] if here[-1] == "mod" else here
        while segs and segs[0] == "super":
            mod = mod[:-1]
            segs = segs[1:]
        full = mod + segs
    else:
        full = segs[1:]
    if not full:
        return None
    top = full[0]
    if not (os.path.isdir(os.path.join(src, top)) or os.path.isfile(os.path.join(src, top + ".rs"))):
        return None
    if len(full) > 1 and os.path.isdir(os.path.join(src, top)):
        sub = full[1]
        if os.path.isfile(os.path.join(src, top, sub + ".rs")) or os.path.isdir(os.path.join(src, top, sub)):
            return top, sub
    return top, "mod"


def find_cycle(edges):
    """One cycle in a graph {node: set(nodes)}, as a list, or None."""
    color, stack = {}, []

    def visit(n):
        color[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if color.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in color:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        color[n] = 2
        return None

    for n in sorted(edges):
        if n not in color:
            found = visit(n)
            if found:
                return found
    return None


def check(src):
    broken = []

    def fail(rule, path, what):
        broken.append(f"walls: {rule}: {path}: {what}")

    top_edges, part_edges = {}, {}
    for path in rust_files(src):
        r = rel(src, path)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        code = strip_comments(text)
        # Imports are read from production code: an inline test module's `super` is the
        # file itself, and test files may reach anywhere.
        prod = "\n".join(code.split("\n")[: production_lines(code)])
        if r != "main.rs" and r != "cli.rs":
            if r.startswith("store/") is False and re.search(r"\bsqlx\b", code):
                fail("sql", r, "uses sqlx outside src/store/")
            if re.search(r"\bcrate::cli\b|\bhubspot_outbox::cli\b", code):
                fail("cli", r, "imports cli, which belongs to main alone")
        if r == "lib.rs" and re.search(r"\bmod\s+cli\b", code):
            fail("cli", r, "declares cli; only main.rs may")
        paths = import_paths(code)
        prod_paths = import_paths(prod)
        # Rules about where imports lead read the resolved module, however the path is
        # spelled (`crate::`, or `super::` as many times as it takes).
        targets = [(p, resolve(src, r, p)) for p in prod_paths]
        if r.startswith("hubspot/"):
            for p, there in targets:
                if there is not None and there[0] != "hubspot":
                    fail("hubspot", r, f"imports `{p}`; hubspot/ imports nothing else of the crate")
        if re.match(r"dispatch/(scheduler|limiter|sender|clock)\.rs$|dispatch/reconciler/", r):
            for p, there in targets:
                if there is not None and there[0] == "store":
                    fail("rows", r, f"imports `{p}`; dispatch stages see rows as model types")
        if r.startswith("dispatch/reconciler/") and not r.endswith("tests.rs"):
            for p, there in targets:
                if there is not None and there[0] in ("store", "runtime"):
                    fail("pure", r, f"imports `{p}`; the reconciler's decision does no I/O")
        if r.startswith("dispatch/reconciler/") and not r.endswith("tests.rs"):
            for word in IO_WORDS:
                m = re.search(word, prod)
                if m:
                    fail("pure", r, f"`{m.group(0)}`: the reconciler's decision does no I/O")
        if not r.endswith("tests.rs"):
            n = production_lines(text)
            if n > MAX_LINES:
                fail("size", r, f"{n} production lines (at most {MAX_LINES})")
        if r in ("main.rs", "cli.rs") or r.endswith("tests.rs"):
            continue
        here = unit_of(r)
        for p in prod_paths:
            there = resolve(src, r, p)
            if there is None:
                continue
            if there[0] != here[0]:
                top_edges.setdefault(here[0], set()).add(there[0])
            elif there != here:
                part_edges.setdefault(here, set()).add(there)

    cycle = find_cycle(top_edges)
    if cycle:
        fail("cycle", "src", "modules import each other: " + " -> ".join(cycle))
    # Within a module: mod.rs declares its parts; its imports of them are not cycles, but
    # a part importing mod.rs and mod.rs importing that part is.
    cycle = find_cycle(part_edges)
    if cycle:
        fail("cycle", "src/" + cycle[0][0], "parts import each other: "
             + " -> ".join(f"{t}::{p}" for t, p in cycle))
    return broken


# One planted breach per rule: (rule, file to append to, text appended).
PLANTS = [
    ("sql", "dispatch/scheduler.rs", "\nfn planted() { let _ = sqlx::query(\"SELECT 1\"); }\n"),
    ("hubspot", "hubspot/mod.rs", "\n#[allow(unused_imports)]\nuse crate::model::ClaimedRow;\n"),
    ("rows", "dispatch/clock.rs", "\n#[allow(unused_imports)]\nuse crate::store::claim::DueType;\n"),
    ("pure", "dispatch/reconciler/matching.rs", "\npub async fn planted() {}\n"),
    ("cli", "operator/mod.rs", "\n#[allow(unused_imports)]\nuse crate::cli::Cli;\n"),
    ("size", "dispatch/shared.rs", "\n" + "// planted\nconst _: () = ();\n" * 260),
    ("cycle", "model/batch.rs", "\n#[allow(unused_imports)]\nuse crate::ingest::group::Accepted;\n"),
    ("cycle", "dispatch/clock.rs", "\n#[allow(unused_imports)]\nuse super::dispatcher::Tick;\n"),
    ("rows", "dispatch/reconciler/matching.rs",
     "\n#[allow(unused_imports)]\nuse super::super::super::store::Store;\n"),
    ("hubspot", "hubspot/mod.rs", "\n#[allow(unused_imports)]\nuse super::model::ClaimedRow;\n"),
    ("size", "dispatch/shared.rs",
     "\n#[cfg(test)]\nfn planted() {}\n" + "// planted\nconst _: () = ();\n" * 260),
]


def self_test(src):
    if check(src):
        print("walls: self-test: the tree itself breaks a wall; fix that first", file=sys.stderr)
        return 1
    failures = 0
    for rule, target, text in PLANTS:
        with tempfile.TemporaryDirectory() as tmp:
            copy = os.path.join(tmp, "src")
            shutil.copytree(src, copy)
            with open(os.path.join(copy, target), "a", encoding="utf-8") as f:
                f.write(text)
            caught = [b for b in check(copy) if b.startswith(f"walls: {rule}:")]
            if caught:
                print(f"walls: self-test: planted {rule} breach in {target}: caught ({caught[0]})")
            else:
                print(f"walls: self-test: planted {rule} breach in {target}: NOT caught", file=sys.stderr)
                failures += 1
    return 1 if failures else 0


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default_src = os.path.join(os.path.dirname(here), "src")
    args = sys.argv[1:]
    if args[:1] == ["--self-test"]:
        return self_test(args[1] if len(args) > 1 else default_src)
    src = args[0] if args else default_src
    broken = check(src)
    for b in broken:
        print(b, file=sys.stderr)
    if not broken:
        print(f"walls: ok ({sum(1 for _ in rust_files(src))} files)")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
