"""Benchmark results: per-round samples, ratios and their min/median/max, the table and JSON.

Every figure ``nf bench`` reports is a *ratio measured in one run*: tapnf and its reference
(nginx, the kernel, a minimal responder, the bare crypto floor) are measured alternately in the
same process run, round after round, and each round yields one ratio. A :class:`Row` keeps the
raw samples of both sides and the per-round ratios; the table prints medians of the absolute
figures (for orientation only: machines are shared and noisy) and min/median/max of the ratio.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Spread:
    """min / median / max of a list of samples."""

    min: float
    median: float
    max: float

    @classmethod
    def of(cls, samples: list[float]) -> Spread:
        if not samples:
            nan = float("nan")
            return cls(nan, nan, nan)
        return cls(min(samples), statistics.median(samples), max(samples))

    def as_dict(self) -> dict[str, float]:
        return {"min": self.min, "median": self.median, "max": self.max}


@dataclass
class Row:
    """One case: tapnf's samples, the reference's samples, one ratio per round.

    ``better`` says which direction is good for the ratio: ``"higher"`` (rates: tapnf/ref ≥ 1
    wins) or ``"lower"`` (costs: tapnf/ref ≤ 1 wins). ``target`` is the issue's goal for the
    median ratio, None when there is none.
    """

    bench: str
    case: str
    unit: str
    reference: str
    better: str = "higher"
    target: float | None = None
    ours: list[float] = field(default_factory=list)
    ref: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    note: str = ""

    def add(self, ours: float, ref: float) -> None:
        """Record one round (both sides measured back to back)."""
        self.ours.append(ours)
        self.ref.append(ref)
        self.ratios.append(ours / ref if ref else float("inf"))

    def ratio(self) -> Spread:
        return Spread.of(self.ratios)

    def meets_target(self) -> bool | None:
        if self.target is None or not self.ratios:
            return None
        med = self.ratio().median
        return med >= self.target if self.better == "higher" else med <= self.target

    def as_dict(self) -> dict[str, Any]:
        return {
            "bench": self.bench,
            "case": self.case,
            "unit": self.unit,
            "reference": self.reference,
            "better": self.better,
            "target": self.target,
            "rounds": len(self.ratios),
            "ours": self.ours,
            "ref": self.ref,
            "ours_median": Spread.of(self.ours).median,
            "ref_median": Spread.of(self.ref).median,
            "ratio": self.ratio().as_dict(),
            "meets_target": self.meets_target(),
            "note": self.note,
        }


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def row(self, bench: str, case: str, unit: str, reference: str, **kw: Any) -> Row:
        r = Row(bench, case, unit, reference, **kw)
        self.rows.append(r)
        return r

    def as_dict(self) -> dict[str, Any]:
        return {
            "info": self.info,
            "rows": [r.as_dict() for r in self.rows],
            "skipped": self.skipped,
        }

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.as_dict(), indent=2, sort_keys=True) + "\n")

    def table(self) -> str:
        head = (
            f"{'bench':<10}{'case':<28}{'unit':<14}{'tapnf':>10}{'reference':>22}"
            f"{'ratio min/med/max':>22}  {'target':<10}"
        )
        lines = [head, "-" * len(head)]
        for r in self.rows:
            if not r.ratios:
                lines.append(f"{r.bench:<10}{r.case:<28}(no samples) {r.note}")
                continue
            s = r.ratio()
            ref = f"{_num(Spread.of(r.ref).median)} {r.reference}"
            tgt = ""
            if r.target is not None:
                mark = "ok" if r.meets_target() else "MISS"
                tgt = f"{'≥' if r.better == 'higher' else '≤'}{r.target:.3g} {mark}"
            lines.append(
                f"{r.bench:<10}{r.case:<28}{r.unit:<14}{_num(Spread.of(r.ours).median):>10}"
                f"{ref:>22}{f'{s.min:.2f}/{s.median:.2f}/{s.max:.2f}':>22}  {tgt:<10}"
                + (f"  {r.note}" if r.note else "")
            )
        for bench, why in self.skipped.items():
            lines.append(f"{bench:<10}skipped: {why}")
        return "\n".join(lines)


def _num(x: float) -> str:
    if x != x:
        return "nan"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


__all__ = ["Report", "Row", "Spread"]
