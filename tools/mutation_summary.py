"""Summarise `mutmut results --all true` output: killed/survived per module and the survivors.

Survival = survived / (killed + survived); mutants no test reaches ("no tests") are counted apart.

Usage: python tools/mutation_summary.py mutation-results.txt
"""

from __future__ import annotations

import collections
import re
import sys

_LINE = re.compile(r"^\s*(?P<name>[\w.]+)__mutmut_(?P<n>\d+): (?P<status>[\w ]+?)\s*$")


def main(path: str) -> int:
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    survivors: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            m = _LINE.match(line)
            if not m:
                continue
            # pilot_proto.wire.header.x_decode_packet -> module pilot_proto.wire.header
            module = m["name"].rsplit(".", 1)[0]
            if "ǁ" in module:  # methods are named module.xǁClassǁmethod
                module = module.split(".xǁ")[0]
            counts[module][m["status"]] += 1
            if m["status"] == "survived":
                survivors.append(f"{m['name']}__mutmut_{m['n']}")
    total = collections.Counter[str]()
    print(f"{'module':40} {'mutants':>7} {'killed':>7} {'survived':>8} {'other':>6} {'survival':>8}")
    for module in sorted(counts):
        c = counts[module]
        total.update(c)
        n = sum(c.values())
        other = n - c["killed"] - c["survived"]
        tested = c["killed"] + c["survived"]
        rate = f"{c['survived'] / tested:8.1%}" if tested else " not run"
        print(f"{module:40} {n:7} {c['killed']:7} {c['survived']:8} {other:6} {rate}")
    n = sum(total.values())
    tested = total["killed"] + total["survived"]
    if not tested:
        print("no mutant was tested: the campaign did not run (see mutmut's output above)")
        return 1
    print(f"{'TOTAL':40} {n:7} {total['killed']:7} {total['survived']:8} "
          f"{n - tested:6} {total['survived'] / tested:8.1%}")  # fmt: skip
    print("\nsurvivors:")
    for s in survivors:
        print("  " + s)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
