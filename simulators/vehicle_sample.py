"""The synthetic vehicle registry shipped in `config/vehicles.csv`: 2,042 made-up plates
(a seeded generator, no real vehicle) in the compound's classes and parking rules.

    python -m simulators.vehicle_sample config/vehicles.csv
"""

from __future__ import annotations

import csv
import io
import random
import sys
from pathlib import Path

from gateway.vehicles.plates import classify, is_valid
from gateway.vehicles.registry import CSV_FIELDS

SEED = 20160826
# (class, how many, gates, zones): official cars park on floor 1 and B1, SUVs north of the
# canteen; staff cars pass only the compound's own gates.
PLAN: tuple[tuple[str, int, str, str], ...] = (
    ("official", 160, "*", "main-parking-f1;main-parking-b1"),
    ("staff", 1540, "gate-main-in;gate-main-out", "*"),
    ("suv", 240, "gate-main-in;gate-main-out;gate-suv-lot", "suv-lot-north"),
    ("visitor", 70, "gate-main-in;gate-main-out", "*"),
    ("barred", 32, "*", "*"),
)
UNITS = ("区委办公室", "区政府办公室", "区人大办", "区政协办", "区纪委监委", "区财政局",
         "区发改局", "区公安分局", "区卫健局", "区人武部", "区机关事务中心", "区城管局")
_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
_SERIAL = _LETTERS + "0123456789"


def _plate(rng: random.Random) -> str:
    authority = rng.choice("AAAAAAAABCDEFG")
    roll = rng.random()
    if roll < 0.12:  # small new-energy car
        return "湘" + authority + rng.choice("DF") + rng.choice(_SERIAL) + _digits(rng, 4)
    if roll < 0.14:  # large new-energy vehicle
        return "湘" + authority + _digits(rng, 5) + rng.choice("DF")
    serial = "".join(rng.choice(_SERIAL) for _ in range(5))
    return "湘" + authority + serial


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def sample(seed: int = SEED) -> list[dict[str, str]]:
    rng = random.Random(seed)
    seen: set[str] = set()
    rows: list[dict[str, str]] = []
    for vclass, count, gates, zones in PLAN:
        for n in range(count):
            plate = _plate(rng)
            while plate in seen or not is_valid(plate):
                plate = _plate(rng)
            seen.add(plate)
            start = until = ""
            if vclass == "visitor":
                # Passes around the sample's date; a few have already run out.
                start = f"2026-{1 + n % 12:02d}-01"
                until = f"2026-{1 + n % 12:02d}-28" if n % 7 else "2026-12-31"
            rows.append({
                "plate": plate,
                "owner_unit": rng.choice(UNITS) if vclass != "visitor" else "来访单位",
                "class": vclass, "gates": gates, "zones": zones,
                "valid_from": start, "valid_until": until,
                "note": classify(plate).value if vclass != "barred" else "blacklisted by security",
            })
    return rows


def to_csv(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0] if args else "config/vehicles.csv")
    target.write_text(to_csv(sample()), encoding="utf-8")
    print(f"{target}: {sum(n for _, n, _, _ in PLAN)} synthetic vehicles")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
