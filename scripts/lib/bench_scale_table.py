"""scripts/bench-scale's tables from its results.tsv: one row per command, one cell per
size (CPU seconds · peak MB · output), the growth exponent between neighbouring sizes, then
the raw rows. Usage: python3 scripts/lib/bench_scale_table.py results.tsv"""

import csv
import math
import sys

# CPU times below this are mostly the clock's resolution (0.01 s): no exponent from them.
MIN_CPU = 0.05


def human(n):
    n = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000


def cell(r):
    if r is None:
        return "–"
    s = f"{float(r['cpu_s']):.2f} s · {r['peak_mb']} MB"
    if r["status"] != "ok":
        return f"**{r['status']}** after {s}"
    if r["out_bytes"] not in ("", "-"):
        s += f" · {human(r['out_bytes'])}"
    if r["series"] not in ("", "-"):
        s += f", {int(r['series']):,} series"
    elif r["max_line"] not in ("", "-", "0"):
        s += f", lines ≤ {int(r['max_line']):,} ch"
    return s


def exponent(a, b):
    """log(CPU ratio) / log(function ratio); a lower bound when b did not finish."""
    if a is None or b is None or a["status"] != "ok":
        return "–"
    t1, t2 = float(a["cpu_s"]), float(b["cpu_s"])
    if t1 < MIN_CPU or t2 <= 0:
        return "–"
    k = math.log(t2 / t1) / math.log(int(b["functions"]) / int(a["functions"]))
    return f"{k:.2f}" if b["status"] == "ok" else f"≥ {k:.2f}"


def main(path):
    rows = list(csv.DictReader(open(path), delimiter="\t"))
    sizes = sorted({int(r["functions"]) for r in rows})
    commands = list(dict.fromkeys(r["command"] for r in rows))
    at = {(r["command"], int(r["functions"])): r for r in rows}
    head = ["command"] + [f"{s:,} functions" for s in sizes]
    head += [f"k {a:,}→{b:,}" for a, b in zip(sizes, sizes[1:])]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for c in commands:
        cells = [f"`{c}`"] + [cell(at.get((c, s))) for s in sizes]
        cells += [exponent(at.get((c, a)), at.get((c, b))) for a, b in zip(sizes, sizes[1:])]
        print("| " + " | ".join(cells) + " |")
    print()
    print("| " + " | ".join(rows[0].keys()) + " |" if rows else "")
    print("|" + "---|" * len(rows[0]) if rows else "")
    for r in rows:
        print("| " + " | ".join(r.values()) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
