#!/usr/bin/env python3
"""File-level import graph inside the given module folders of src/, and any cycles."""
import re, sys, os, itertools
root = sys.argv[1]
mods = sys.argv[2:]
def files(mod):
    d = os.path.join(root, 'src', mod)
    out = {}
    for dp, _, fs in os.walk(d):
        for f in fs:
            if f.endswith('.rs'):
                p = os.path.join(dp, f)
                rel = os.path.relpath(p, os.path.join(root, 'src'))
                name = rel[:-3].replace('/mod', '').replace('/', '::')
                out[name] = p
    return out
for mod in mods:
    fs = files(mod)
    names = set(fs)
    edges = {n: set() for n in names}
    for n, p in fs.items():
        src = open(p).read()
        # drop #[cfg(test)] modules roughly: not needed for graph
        parent = n.rsplit('::', 1)[0] if '::' in n else ''
        is_mod_file = p.endswith('mod.rs')
        base = n if is_mod_file else parent   # what `super` means for items in this file... 
        sup = parent if not is_mod_file else (n.rsplit('::',1)[0] if '::' in n else '')
        # resolve super:: and crate:: paths
        for m in re.finditer(r'\b(super(?:::super)*|crate)::([A-Za-z_][\w:]*)', src):
            head, rest = m.group(1), m.group(2)
            if head == 'crate':
                full = rest
            else:
                levels = head.count('super')
                cur = n if is_mod_file else n  # file module path
                # file module `a::b` -> super = `a`
                parts = cur.split('::')
                parts = parts[:len(parts)-levels]
                full = '::'.join(parts + [rest]) if parts else rest
            # longest prefix that is a file module
            segs = full.split('::')
            for k in range(len(segs), 0, -1):
                cand = '::'.join(segs[:k])
                if cand in names and cand != n:
                    edges[n].add(cand); break
        # `use super::{a, b}` groups
        for m in re.finditer(r'use super::\{([^}]*)\}', src):
            parts = n.split('::')[:-1]
            for item in re.split(r',\s*', m.group(1)):
                seg = item.strip().split('::')[0]
                cand = '::'.join(parts + [seg])
                if cand in names and cand != n:
                    edges[n].add(cand)
    # parent mod.rs re-exports are edges too (mod -> child); children referencing parent items via super::X where X is an item in mod.rs -> edge child->mod
    print(f'## {mod}')
    for n in sorted(edges):
        print(f'  {n} -> {", ".join(sorted(edges[n])) or "-"}')
    # cycles (ignoring parent<->child re-export edges where mod.rs only declares)
    sccs = []
    index = {}; low = {}; stack = []; on = set(); i = [0]
    def strong(v):
        index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
        for w in edges[v]:
            if w not in index: strong(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: sccs.append(comp)
    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index: strong(v)
    print('  cycles:', sccs or 'none')
