"""``nf report``'s analysis of a recorded event stream: resumption rate overall, per offer and per
method, reasons ranked, handshake duration and CPU (median, p95) for full vs resumed handshakes,
tickets per key, cache evictions, and the events the recorder missed (``seq`` gaps)."""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable
from typing import Any

from nf.collectors import GapTracker


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def analyse(records: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The report as plain data (what ``--json`` prints)."""
    gaps = GapTracker()
    topics: collections.Counter[str] = collections.Counter()
    outcomes: collections.Counter[str] = collections.Counter()
    reasons: collections.Counter[str] = collections.Counter()
    offered: collections.Counter[str] = collections.Counter()
    offered_resumed: collections.Counter[str] = collections.Counter()
    methods: collections.Counter[str] = collections.Counter()
    cost: dict[str, dict[str, list[float]]] = {
        k: {"duration_us": [], "cpu_us": []} for k in ("full", "resumed")
    }
    issued: collections.Counter[str] = collections.Counter()
    accepted: collections.Counter[str] = collections.Counter()
    cache: collections.Counter[str] = collections.Counter()
    key_actions: collections.Counter[str] = collections.Counter()
    for topic, event in records:
        topics[topic] += 1
        gaps.see(event)
        if topic == "tls.handshake":
            outcome = str(event.get("outcome"))
            outcomes[outcome] += 1
            if event.get("reason"):
                reasons[str(event["reason"])] += 1
            offer = str(event.get("offered") or "none")
            offered[offer] += 1
            key = event.get("ticket_key")
            if outcome == "resumed":
                offered_resumed[offer] += 1
                method = str(event.get("method"))
                methods[method] += 1
                if method == "ticket" and key:
                    accepted[str(key)] += 1
            n = event.get("tickets_issued")
            if isinstance(n, int) and n > 0 and key:
                issued[str(key)] += n
            if outcome in cost:
                for metric, values in cost[outcome].items():
                    if (v := _num(event.get(metric))) is not None:
                        values.append(v)
        elif topic == "tls.cache":
            cache[str(event.get("action"))] += 1
        elif topic == "tls.tickets":
            key_actions[str(event.get("action"))] += 1
    total = sum(outcomes.values())
    resumed = outcomes["resumed"]
    attempted = total - offered["none"]
    return {
        "events": sum(topics.values()),
        "topics": dict(topics.most_common()),
        "missed_events": gaps.total_missed,
        "handshakes": {
            "total": total,
            "full": outcomes["full"],
            "resumed": resumed,
            "failed": outcomes["failed"],
            "resumption_rate": _rate(resumed, total),
            "attempted": attempted,
            "attempt_success_rate": _rate(resumed, attempted),
        },
        "by_offer": {
            offer: {
                "offered": n,
                "resumed": offered_resumed[offer],
                "rate": _rate(offered_resumed[offer], n),
            }
            for offer, n in offered.most_common()
        },
        "by_method": {
            method: {"resumed": n, "share": _rate(n, total)} for method, n in methods.most_common()
        },
        "reasons": [{"reason": r, "count": n} for r, n in reasons.most_common()],
        "cost": {
            kind: {
                metric: {
                    "n": len(values),
                    "median": median(values),
                    "p95": percentile(values, 95),
                }
                for metric, values in metrics.items()
            }
            for kind, metrics in cost.items()
        },
        "tickets": {
            key: {"issued": issued[key], "accepted": accepted[key]}
            for key in sorted(set(issued) | set(accepted))
        },
        "ticket_key_events": dict(key_actions),
        "cache": {
            "evicted": cache["evicted"],
            "expired": cache["expired"],
            "flushed": cache["flushed"],
        },
    }


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def render(report: dict[str, Any]) -> str:
    """The report as a human-readable table."""
    h = report["handshakes"]
    lines = [
        f"events: {report['events']}  missed (seq gaps): {report['missed_events']}",
        "",
        f"handshakes: {h['total']}  full {h['full']}  resumed {h['resumed']}  failed {h['failed']}",
        f"resumption rate: {_pct(h['resumption_rate'])} overall, "
        f"{_pct(h['attempt_success_rate'])} of {h['attempted']} resumption attempts",
        "",
        f"{'offered':<14}{'count':>8}{'resumed':>9}{'rate':>9}",
    ]
    for offer, row in report["by_offer"].items():
        lines.append(f"{offer:<14}{row['offered']:>8}{row['resumed']:>9}{_pct(row['rate']):>9}")
    lines += ["", f"{'method':<14}{'resumed':>8}{'share':>9}"]
    for method, row in report["by_method"].items():
        lines.append(f"{method:<14}{row['resumed']:>8}{_pct(row['share']):>9}")
    lines += ["", f"{'reason':<22}{'count':>8}"]
    for row in report["reasons"]:
        lines.append(f"{row['reason']:<22}{row['count']:>8}")
    lines += [
        "",
        f"{'cost (µs)':<10}{'kind':<9}{'n':>6}{'median':>12}{'p95':>12}",
    ]
    for kind, metrics in report["cost"].items():
        for metric, row in metrics.items():
            label = "duration" if metric == "duration_us" else "cpu"
            lines.append(
                f"{label:<10}{kind:<9}{row['n']:>6}{_us(row['median']):>12}{_us(row['p95']):>12}"
            )
    lines += ["", f"{'ticket key':<34}{'issued':>8}{'accepted':>10}"]
    for key, row in report["tickets"].items():
        lines.append(f"{key:<34}{row['issued']:>8}{row['accepted']:>10}")
    c = report["cache"]
    lines += [
        "",
        f"cache: evicted {c['evicted']}  expired {c['expired']}  flushed {c['flushed']}",
    ]
    return "\n".join(lines)


__all__ = ["analyse", "median", "percentile", "render"]
