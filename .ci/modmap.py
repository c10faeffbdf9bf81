#!/usr/bin/env python3
"""Top-level module import graph of miner-user/src: edges, mutual pairs, SCCs.
Test code is left out: files declared under `#[cfg(test)]` (`mod tests;`,
`mod proptests;`, `mod props;`), files named *tests*, and everything after a
`#[cfg(test)]` line of a file (test modules sit at the end).

Usage: modmap.py [SRC_DIR] [-v]   (from the repository root; default miner-user/src)
"""
import re, sys, os, collections
root = sys.argv[1] if len(sys.argv) > 1 else "miner-user/src"
tops = set()
for n in os.listdir(root):
    if n.endswith(".rs") and n not in ("main.rs", "lib.rs"): tops.add(n[:-3])
    elif os.path.isdir(os.path.join(root, n)): tops.add(n)
edges = collections.defaultdict(set)   # (a,b) -> files
def top_of(path):
    rel = os.path.relpath(path, root).split(os.sep)
    return rel[0][:-3] if len(rel) == 1 else rel[0]
def split_top(s):
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch == "{": depth += 1
        if ch == "}": depth -= 1
        if ch == "," and depth == 0: out.append(cur); cur = ""
        else: cur += ch
    out.append(cur); return [x.strip() for x in out if x.strip()]
test_only = set()
for d, _, files in os.walk(root):
    for f in files:
        if not f.endswith(".rs"): continue
        text = open(os.path.join(d, f)).read()
        here = d if f in ("mod.rs", "lib.rs", "main.rs") else os.path.join(d, f[:-3])
        for m in re.finditer(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", text):
            test_only.add(os.path.join(here, m.group(1) + ".rs"))
            test_only.add(os.path.join(here, m.group(1)))
for d, _, files in os.walk(root):
    for f in files:
        if not f.endswith(".rs"): continue
        p = os.path.join(d, f)
        rel = os.path.relpath(p, root)
        if rel in ("main.rs", "lib.rs") or "tests" in rel: continue
        if p in test_only or any(p.startswith(t + os.sep) for t in test_only): continue
        a = top_of(p)
        text = open(p).read()
        text = text.split("#[cfg(test)]")[0]
        text = "\n".join(l.split("//")[0] for l in text.splitlines())
        names = set(re.findall(r"crate::(\w+)", text))
        for m in re.finditer(r"crate::\{(.*?)\};", text, re.S):
            for part in split_top(m.group(1)):
                names.add(re.match(r"\w+", part).group(0))
        for b in names:
            if b in tops and b != a: edges[(a, b)].add(rel)
graph = collections.defaultdict(set)
for (a, b) in edges: graph[a].add(b)
# Tarjan
idx, low, st, on, sccs, c = {}, {}, [], set(), [], [0]
def sc(v):
    idx[v] = low[v] = c[0]; c[0] += 1; st.append(v); on.add(v)
    for w in graph[v]:
        if w not in idx: sc(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], idx[w])
    if low[v] == idx[v]:
        comp = []
        while True:
            w = st.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: sccs.append(sorted(comp))
for v in sorted(tops):
    if v not in idx: sc(v)
print("edges:", len(edges))
mutual = sorted({tuple(sorted(k)) for k in edges if (k[1], k[0]) in edges})
print("mutual imports (2-cycles):", len(mutual))
for a, b in mutual:
    print(f"  {a} -> {b}: {', '.join(sorted(edges[(a,b)]))}")
    print(f"  {b} -> {a}: {', '.join(sorted(edges[(b,a)]))}")
print("strongly connected components (modules on a common cycle):")
for comp in sccs: print("  ", " ".join(comp))
# Data flow: kernel -> sensor -> event -> process -> detect -> {response, sinks}.
# An import of a module further down the flow runs against it.
RANK = {"defaults": 0, "text": 0, "time": 0, "invalid": 0, "background": 0,
        "event": 1, "sensor": 2, "provenance": 2, "enrich": 2, "process": 3,
        "detect": 4, "recording": 5, "response": 5, "sinks": 6,
        "config": 7, "daemon": 8, "cmd": 9, "cli": 9}
against = sorted(k for k in edges if k[0] in RANK and k[1] in RANK and RANK[k[1]] > RANK[k[0]])
print("imports against the data flow:", len(against))
for a, b in against: print(f"  {a} -> {b}: {', '.join(sorted(edges[(a,b)]))}")
unranked = sorted(t for t in tops if t not in RANK)
if unranked: print("modules without a rank:", " ".join(unranked))
if "-v" in sys.argv:
    for (a, b), fs in sorted(edges.items()): print(f"{a} -> {b}: {', '.join(sorted(fs))}")
