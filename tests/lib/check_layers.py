#!/usr/bin/env python3
"""tests/lib/check_layers.py - no cycle among the core modules.

A core module is a core/NAME.c with its core/NAME.h (or a header alone,
such as core/step.h). Two graphs are built and each must be acyclic:

  calls     from `nm` of BUILD/core/*.o: module A -> module B when A.o
            leaves undefined a symbol that B.o defines;
  includes  from the `#include "x.h"` lines of core/*.c and core/*.h:
            module A -> module x (a module's own header is not an edge).

The module order of README's Layout section is the order these graphs
allow. A cycle is named module by module ("FAIL calls: engine -> pipeline
-> engine").

Usage: BUILD=build python3 tests/lib/check_layers.py [ROOT]
Prints one ok/FAIL line per graph, then "N passed, N failed"; exits 1 on
any failure.
"""
import os
import re
import subprocess
import sys

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                       os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("BUILD", "build")
if not os.path.isabs(BUILD):
    BUILD = os.path.join(ROOT, BUILD)
CORE = os.path.join(ROOT, "core")
OBJ = os.path.join(BUILD, "core")


def module_of(filename):
    return os.path.splitext(os.path.basename(filename))[0]


def call_graph():
    """module -> set of modules it calls, from nm of the objects."""
    defined = {}
    undefined = {}
    objs = sorted(f for f in os.listdir(OBJ) if f.endswith(".o"))
    if not objs:
        raise RuntimeError("no objects in %s (build first)" % OBJ)
    for f in objs:
        mod = module_of(f)
        out = subprocess.run(["nm", os.path.join(OBJ, f)], check=True,
                             capture_output=True, text=True).stdout
        undefined[mod] = set()
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "U":
                undefined[mod].add(parts[1])
            elif len(parts) == 3 and parts[1] in "TDBRGSVW":
                defined.setdefault(parts[2], mod)
    graph = {m: set() for m in undefined}
    for mod, syms in undefined.items():
        for s in syms:
            other = defined.get(s)
            if other and other != mod:
                graph[mod].add(other)
    return graph


INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def include_graph():
    """module -> set of modules whose header it includes."""
    graph = {}
    for f in sorted(os.listdir(CORE)):
        if not f.endswith((".c", ".h")):
            continue
        mod = module_of(f)
        graph.setdefault(mod, set())
        with open(os.path.join(CORE, f), encoding="utf-8") as fh:
            for line in fh:
                m = INCLUDE.match(line)
                if not m:
                    continue
                other = module_of(m.group(1))
                if other != mod:
                    graph[mod].add(other)
                    graph.setdefault(other, set())
    return graph


def find_cycle(graph):
    """A list of modules forming a cycle (first == last), or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = {m: WHITE for m in graph}
    stack = []

    def visit(m):
        color[m] = GREY
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if color.get(n, WHITE) == GREY:
                return stack[stack.index(n):] + [n]
            if color.get(n, WHITE) == WHITE:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        color[m] = BLACK
        return None

    for m in sorted(graph):
        if color[m] == WHITE:
            found = visit(m)
            if found:
                return found
    return None


def main():
    passed = failed = 0
    for name, build in (("calls", call_graph), ("includes", include_graph)):
        try:
            graph = build()
        except (OSError, RuntimeError, subprocess.CalledProcessError) as e:
            print("FAIL %s: %s" % (name, e))
            failed += 1
            continue
        cycle = find_cycle(graph)
        if cycle:
            print("FAIL %s: cycle among core modules: %s"
                  % (name, " -> ".join(cycle)))
            failed += 1
        else:
            print("ok   %s: no cycle among %d core modules"
                  % (name, len(graph)))
            passed += 1
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
