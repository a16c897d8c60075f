"""A simulated fire panel Modbus gateway: a real pymodbus server whose registers come from
the fire panel profile (GB/T 26875.3 point status words and the panel word). Zone
alarms, faults, isolations, supervisory signals, power faults and tests are injected per
point through the methods below; the panel's recall line can drive simulated lifts.

    python -m simulators.fire_panel --port 5040
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path

from drivers.modbus.profile import load_profile
from drivers.modbus.status import PanelStatus
from simulators.modbus_meters import MeterServer, SimulatedMeter

PROFILES = Path(__file__).resolve().parent.parent / "config" / "profiles"


class SimulatedPanel:
    """One panel gateway (one unit). `on_fire(point, on)` is its recall output."""

    def __init__(self, unit: int = 1, profile: str = "fire-panel-gateway",
                 on_fire: Callable[[int, bool], None] | None = None) -> None:
        loaded = load_profile(PROFILES / f"{profile}.yaml")
        if not isinstance(loaded.status, PanelStatus):
            raise ValueError(f"{profile} is not a fire panel profile")
        self.spec: PanelStatus = loaded.status
        self.meter = SimulatedMeter(unit, loaded)
        self._point_bit: dict[str, int] = {n: b for b, n in self.spec.point_bits.items()}
        self._panel_bit: dict[str, int] = {n: b for b, n in self.spec.panel_bits.items()}
        self.on_fire = on_fire
        for metric in self.meter.values:
            self.meter.values[metric] = 0.0

    def _metric(self, point: int) -> str:
        metric = f"{self.spec.points}_{point:03d}"
        if metric not in self.meter.values:
            raise KeyError(f"the panel has no point {point}")
        return metric

    def set_point(self, point: int, bit: str, on: bool = True) -> None:
        metric = self._metric(point)
        word = int(self.meter.values[metric])
        mask = 1 << self._point_bit[bit]
        self.meter.values[metric] = float(word | mask if on else word & ~mask)
        if bit == "fire" and self.on_fire is not None:
            self.on_fire(point, on)

    def bits(self, point: int) -> set[str]:
        word = int(self.meter.values[self._metric(point)])
        return {name for bit, name in self.spec.point_bits.items() if word >> bit & 1}

    # The panel's own vocabulary, for tests and the demo.
    def alarm(self, point: int, on: bool = True) -> None:
        self.set_point(point, "fire", on)

    def fault(self, point: int, on: bool = True) -> None:
        self.set_point(point, "fault", on)

    def isolate(self, point: int, on: bool = True) -> None:
        self.set_point(point, "isolated", on)

    def supervisory(self, point: int, on: bool = True) -> None:
        self.set_point(point, "supervisory", on)

    def point_power_fault(self, point: int, on: bool = True) -> None:
        self.set_point(point, "power_fault", on)

    def test(self, point: int, on: bool = True) -> None:
        self.set_point(point, "test", on)

    def set_panel(self, bit: str, on: bool = True) -> None:
        word = int(self.meter.values[self.spec.panel])
        mask = 1 << self._panel_bit[bit]
        self.meter.values[self.spec.panel] = float(word | mask if on else word & ~mask)

    def reset(self) -> None:
        """The panel's reset key: every point and the panel back to normal."""
        for metric in self.meter.values:
            self.meter.values[metric] = 0.0


async def _serve(args: argparse.Namespace) -> None:
    panel = SimulatedPanel()
    async with MeterServer([panel.meter], host=args.host, port=args.port) as server:
        print(f"fire panel gateway on {args.host}:{server.port}", flush=True)
        await asyncio.Event().wait()  # until interrupted


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5040)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
