"""Turn benchmark rows into results.csv, results.md and a plot."""

import csv

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

COLUMNS = [
    "config",
    "kind",
    "concurrency",
    "req_per_s",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "max_ms",
    "errors",
    "vs_flask",
    "vs_nginx",
    "load_avg_1m",
]


def add_ratios(rows):
    """Each row's req/s relative to the best Flask configuration and to nginx at
    the same concurrency (None when that reference was not run)."""
    best_flask, nginx = {}, {}
    for row in rows:
        c = row["concurrency"]
        if row["kind"] == "flask":
            best_flask[c] = max(best_flask.get(c, 0), row["req_per_s"])
        elif row["kind"] == "nginx":
            nginx[c] = row["req_per_s"]
    for row in rows:
        c = row["concurrency"]
        row["vs_flask"] = row["req_per_s"] / best_flask[c] if best_flask.get(c) else None
        row["vs_nginx"] = row["req_per_s"] / nginx[c] if nginx.get(c) else None
    return rows


def peaks(rows):
    """Per configuration, its row with the most req/s."""
    best = {}
    for row in rows:
        if row["config"] not in best or row["req_per_s"] > best[row["config"]]["req_per_s"]:
            best[row["config"]] = row
    return list(best.values())


def write_csv(rows, path):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in row.items()})


def _ratio(value, as_percent=False):
    if value is None:
        return "–"
    return f"{value * 100:.0f}%" if as_percent else f"{value:.2f}×"


def _table(rows):
    lines = [
        "| configuration | c | req/s | p50 ms | p90 ms | p99 ms | errors | vs Flask best | of nginx |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['config']} | {row['concurrency']} | {row['req_per_s']:,.0f} | {row['p50_ms']:.2f} | "
            f"{row['p90_ms']:.2f} | {row['p99_ms']:.2f} | {row['errors']} | {_ratio(row['vs_flask'])} | "
            f"{_ratio(row['vs_nginx'], as_percent=True)} |"
        )
    return "\n".join(lines)


def write_markdown(path, title, notes, machine, settings, rows, handler_markdown, failures, plot_name):
    parts = [f"# {title}", ""]
    parts += [f"> {note}" for note in notes] + [""]
    parts += ["## Machine", ""] + [f"- **{k}**: {v}" for k, v in machine] + [""]
    parts += ["## Settings", ""] + [f"- {line}" for line in settings] + [""]
    parts += [
        "## Peak req/s per configuration",
        "",
        "Each configuration's best concurrency; ratios are against the best Flask/gunicorn "
        "worker class and the fixed-reply nginx at that same concurrency.",
        "",
        _table(sorted(peaks(rows), key=lambda r: -r["req_per_s"])),
        "",
    ]
    parts += ["## Every point", "", _table(rows), ""]
    if failures:
        parts += ["## Failed configurations", ""] + [f"- **{name}**: {error}" for name, error in failures] + [""]
    parts += [f"![req/s and p99 latency vs concurrency]({plot_name})", ""]
    if handler_markdown:
        parts += ["## Handler cost inside one worker (bench/bench_handler.py)", "", handler_markdown.strip(), ""]
    path.write_text("\n".join(parts))


# bench/adaptive.py's three routings through the front door.
FRONT_STYLES = {
    "front-batched": {"color": plt.cm.Greens(0.8), "marker": "D"},
    "front-single": {"color": plt.cm.Greys(0.6), "marker": "o"},
    "front-adaptive": {"color": "tab:purple", "marker": "*", "linewidth": 3, "markersize": 11},
}

# MMS families by batch size: one colour map and marker each, darker = longer delay.
MMS_FAMILIES = [("mms-b1-", plt.cm.Greys, "o"), ("mms-b8-", plt.cm.Blues, "s"), ("mms-b16-", plt.cm.Greens, "D")]


def _style(config, kind, index, count):
    shade = 0.45 + 0.5 * index / max(count - 1, 1)
    if config in FRONT_STYLES:
        return FRONT_STYLES[config]
    if kind == "nginx":
        return {"color": "black", "linestyle": "--", "marker": "x"}
    if kind == "flask":
        return {"color": plt.cm.autumn(0.1 + 0.5 * index / max(count - 1, 1)), "marker": "^", "linewidth": 2.5}
    for prefix, colours, marker in MMS_FAMILIES:
        if config.startswith(prefix):
            return {"color": colours(shade), "marker": marker}
    return {"color": plt.cm.Purples(shade), "marker": "v"}


def _ceiling_text(rows):
    points = sorted((r["concurrency"], r["req_per_s"]) for r in rows if r["kind"] == "nginx")
    if not points:
        return None
    figures = ", ".join(f"{rps / 1000:,.0f}k at c={c}" for c, rps in points)
    return f"nginx fixed reply (the HTTP ceiling, left off this scale), req/s: {figures}"


def plot(rows, path, title):
    """Left: req/s of the model servers (nginx would flatten them; its figures
    go in the caption). Right: p99 latency of everything, log scale."""
    configs = list(dict.fromkeys(row["config"] for row in rows))
    levels = sorted({row["concurrency"] for row in rows})
    kinds = {row["config"]: row["kind"] for row in rows}
    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 6))
    drawn = set()
    families = ["front-"] + [prefix for prefix, _, _ in MMS_FAMILIES] + ["mms", "flask", "nginx"]
    for family in families:
        group = [c for c in configs if c.startswith(family) and c not in drawn]
        drawn.update(group)
        for index, config in enumerate(group):
            points = sorted((r["concurrency"], r["req_per_s"], r["p99_ms"]) for r in rows if r["config"] == config)
            xs = [levels.index(p[0]) for p in points]
            kind = kinds[config]
            style = _style(config, kind, index, len(group))
            if kind != "nginx":
                left.plot(xs, [p[1] for p in points], label=config, **style)
            right.plot(xs, [p[2] for p in points], label=config, **style)
    for axis, ylabel in ((left, "requests per second (2xx)"), (right, "p99 latency, ms (log scale)")):
        axis.set_xticks(range(len(levels)), [str(c) for c in levels])
        axis.set_xlabel("concurrent connections (wrk -c)")
        axis.set_ylabel(ylabel)
        axis.grid(True, alpha=0.3)
    left.set_ylim(bottom=0)
    left.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    left.set_title("throughput of the model servers")
    right.set_yscale("log")
    right.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    right.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    right.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    right.set_title("tail latency")
    handles, labels = right.get_legend_handles_labels()
    figure.legend(handles, labels, loc="center right", fontsize=9, frameon=False)
    figure.suptitle(title)
    caption = _ceiling_text(rows)
    if caption:
        figure.text(0.01, 0.01, caption, fontsize=9)
    figure.tight_layout(rect=(0, 0.03, 0.88, 0.95))
    figure.savefig(path, dpi=110)
    plt.close(figure)
