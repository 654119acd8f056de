"""The benchmark's results as plain-text tables."""

from __future__ import annotations

from typing import Any

from bench import evaluation

TARGET_RATIO = 0.70


def _cpu(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def table(results: dict[str, Any]) -> str:
    s = results["settings"]
    main = results["main"]
    lines = [
        "",
        f"Token endpoint vs floor on {results['database']}: gunicorn {s['workers']} workers, "
        f"{s['load_generator']}, {s['pairs']} alternating pairs of {s['seconds']:g} s runs "
        f"(medians), {results['machine']['cpus']} CPUs",
        f"{'':22}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'CPU us/req':>12}{'requests':>10}"
        f"{'errors':>8}",
    ]
    for label, key in (("floor (ready JWT)", "floor"), ("GET /oauth2/token", "endpoint")):
        row = main[key]
        lines.append(
            f"{label:22}{row['rps']:>8.0f}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}"
            f"{_cpu(row['server_cpu_us']):>12}{row['requests']:>10}{row['errors']:>8}"
        )
    verdict = "meets" if main["ratio"] >= TARGET_RATIO else "MISSES"
    lines.append(
        f"endpoint/floor: {main['ratio']:.1%} of the floor's req/s (median of pairs; {verdict} "
        f"the {TARGET_RATIO:.0%} target); server CPU per request ratio {_ratio(main['cpu_ratio'])}"
    )
    lines += [
        "",
        f"Endpoint vs tokens in the database ({s['sweep_pairs']} pairs of {s['sweep_seconds']:g} s "
        "per row, floor alongside)",
        f"{'tokens':>8}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'CPU us/req':>12}{'floor':>8}"
        f"{'ratio':>8}{'CPU ratio':>11}{'errors':>8}",
    ]
    rows = [(f"{row['tokens']}", row) for row in results["token_sweep"]]
    large = results["large_map"]
    rows.append((f"{large['tokens']}*", large))
    for label, row in rows:
        e = row["endpoint"]
        lines.append(
            f"{label:>8}{e['rps']:>8.0f}{e['p50_ms']:>9.2f}{e['p99_ms']:>9.2f}"
            f"{_cpu(e['server_cpu_us']):>12}{row['floor']['rps']:>8.0f}{row['ratio']:>8.1%}"
            f"{_ratio(row['cpu_ratio']):>11}{e['errors']:>8}"
        )
    lines += [
        f"* the same, with the token's scope map grown to {large['entries']} entries",
        "",
        "Rule evaluation, pure fleet.domain.evaluation (ns per evaluate() call, best of 7)",
        f"{'rules':>6}{'compile us':>12}" + "".join(f"{p[:26]:>28}" for p in evaluation.PROBES),
    ]
    for row in results["evaluation"]:
        lines.append(
            f"{row['rules']:>6}{row['compile_us']:>12.0f}"
            + "".join(f"{row['evaluate_ns'][p]:>28.0f}" for p in evaluation.PROBES)
        )
    return "\n".join(lines)
