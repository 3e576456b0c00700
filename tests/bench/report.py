#!/usr/bin/env python3
"""tests/bench/report.py — the report of `make bench`: reads
OUT/results.csv (written by the sections through benchlib.record) and
OUT/machine.txt, prints the table, and writes OUT/results.md (the machine,
then one table per section with each figure, its target and whether it is
met) and OUT/chart.png (gnuplot, when installed: one panel per section).

    python3 tests/bench/report.py build/bench
"""

import csv
import os
import re
import subprocess
import sys

ORDER = ["intake", "batches", "webhooks", "renditions", "pipeline", "memory", "latency", "prune"]
TARGET_RE = re.compile(r"^\s*(>=|<=|>|<)\s*([0-9.]+)\s*$")


def verdict(value, target):
    """'met' or 'missed' when target is an operator and a number, else ''."""
    m = TARGET_RE.match(target or "")
    if not m:
        return ""
    op, bound = m.group(1), float(m.group(2))
    v = float(value)
    ok = {">=": v >= bound, "<=": v <= bound, ">": v > bound, "<": v < bound}[op]
    return "met" if ok else "missed"


def fmt(value):
    v = float(value)
    if v >= 100 or v == int(v):
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def load(out):
    with open(os.path.join(out, "results.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["verdict"] = verdict(r["value"], r["target"])
    rank = {s: i for i, s in enumerate(ORDER)}
    rows.sort(key=lambda r: rank.get(r["section"], len(ORDER)))  # stable
    return rows


def markdown(rows, machine):
    lines = ["# darkroom benchmark", ""]
    if machine:
        lines += ["Machine: " + "; ".join(machine), ""]
    section = None
    for r in rows:
        if r["section"] != section:
            section = r["section"]
            lines += ["", f"## {section}", "",
                      "| what | value | unit | target | | note |",
                      "|---|---:|---|---|---|---|"]
        lines.append(f"| {r['what']} | {fmt(r['value'])} | {r['unit']} | {r['target']} "
                     f"| {r['verdict']} | {r['note']} |")
    return "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"


def text_table(rows):
    width = max(len(r["what"]) for r in rows)
    out = []
    for r in rows:
        out.append(f"{r['section']:10} {r['what']:{width}} {fmt(r['value']):>10} {r['unit']:10}"
                   f" {r['target']:10} {r['verdict']}")
    return "\n".join(out)


def short(text, limit=44):
    text = text.replace('"', "'")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def bars_panel(data, mine):
    """Plain bars, one per row, darkroom's own in green."""
    with open(data, "w") as f:
        for j, r in enumerate(mine):
            colour = 0x2E7D32 if r["what"].startswith("darkroom") else 0x8A9BB0
            f.write(f'{j} {float(r["value"])} "{short(r["what"])}" {colour}\n')
    return ["unset key", "set style data boxes", "set xtics rotate by -20 font 'sans,7'",
            f"plot '{data}' using 1:2:4:xtic(3) with boxes lc rgb variable, "
            "'' using 1:2:($2 >= 100 ? sprintf('%.0f', $2) : sprintf('%.3g', $2)) "
            "with labels offset 0,0.7"]


def cluster_panel(data, groups, tools, cells):
    """Clustered bars: one cluster per group (an image), one bar per tool."""
    with open(data, "w") as f:
        f.write("group " + " ".join(f'"{short(t, 30)}"' for t in tools) + "\n")
        for g in groups:
            f.write(f'"{g}" ' + " ".join(str(cells.get((t, g), "-")) for t in tools) + "\n")
    colours = []
    grey = ["#8A9BB0", "#B0A58A", "#A58AB0", "#8AB0A5", "#B08A8A", "#7F7F7F"]
    for t in tools:
        colours.append("#2E7D32" if t.startswith("darkroom") else grey[len(colours) % len(grey)])
    plots = ", ".join(f"'{data}' using {k + 2}:xtic(1) title columnhead({k + 2}) lc rgb '{c}'"
                      for k, c in enumerate(colours))
    return ["set key top left font 'sans,7'", "set style data histogram",
            "set style histogram cluster gap 1", "set xtics norotate",
            "set datafile missing '-'", f"plot {plots}"]


def chart(rows, out):
    """One panel per section in ORDER that has figures, of the rows in the
    unit of its first row: clustered bars when their names
    read "TOOL, SUBJECT" for several subjects (renditions per image),
    plain bars otherwise; darkroom's own in green."""
    panels = []
    for s in ORDER:
        mine = [r for r in rows if r["section"] == s]
        if not mine:
            continue
        unit = mine[0]["unit"]
        panels.append((s, unit, [r for r in mine if r["unit"] == unit]))
    if not panels:
        return None
    cols = 2 if len(panels) > 1 else 1
    nrows = (len(panels) + cols - 1) // cols
    script = [f"set terminal pngcairo size {600 * cols},{340 * nrows} font 'sans,8'",
              f"set output '{os.path.join(out, 'chart.png')}'",
              f"set multiplot layout {nrows},{cols}",
              "set style fill solid 0.8 border -1", "set boxwidth 0.7",
              "set grid ytics", "set yrange [0:*]", "set bmargin 9",
              "set termoption noenhanced"]
    for s, unit, mine in panels:
        data = os.path.join(out, f"chart-{s}.dat")
        split = [r["what"].rsplit(", ", 1) for r in mine]
        groups = list(dict.fromkeys(p[1] for p in split if len(p) == 2))
        script += [f"set title '{s} ({unit})'"]
        if len(groups) >= 2 and all(len(p) == 2 for p in split):
            tools = list(dict.fromkeys(p[0] for p in split))
            cells = {(p[0], p[1]): float(r["value"]) for p, r in zip(split, mine)}
            script += ["set offsets 0, 0, graph 0.25, 0"] + cluster_panel(data, groups, tools, cells)
        else:
            script += ["set offsets 0.5, 0.5, graph 0.12, 0"] + bars_panel(data, mine)
    script.append("unset multiplot")
    try:
        subprocess.run(["gnuplot"], input="\n".join(script), text=True, check=True,
                       capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"report: no chart: {getattr(e, 'stderr', '') or e}", file=sys.stderr)
        return None
    return os.path.join(out, "chart.png")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "build/bench"
    rows = load(out)
    machine = []
    try:
        with open(os.path.join(out, "machine.txt")) as f:
            machine = [line.strip() for line in f if line.strip()]
    except OSError:
        pass
    print(text_table(rows))
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(markdown(rows, machine))
    png = chart(rows, out)
    print(f"report: {os.path.join(out, 'results.md')}, {os.path.join(out, 'results.csv')}"
          + (f", {png}" if png else ""))
    missed = sum(1 for r in rows if r["verdict"] == "missed")
    met = sum(1 for r in rows if r["verdict"] == "met")
    print(f"report: {met} targets met, {missed} missed")


if __name__ == "__main__":
    main()
