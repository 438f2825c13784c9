"""Markdown tables from a bench_peers.py JSON file, for benchmarks/README.md.

    python benchmarks/tables.py samples/bench_cpu.json                    # print the tables
    python benchmarks/tables.py samples/bench_cpu.json --into benchmarks/README.md --marker cpu
    python benchmarks/tables.py samples/bench_cuda.json --into benchmarks/README.md --marker gpu --date 2026-11-27
    python benchmarks/tables.py --batches samples/bench_cuda_roofline_b*.json   # one line per file and batch
    python benchmarks/tables.py samples/bench_photos.json --into benchmarks/README.md --marker photos  # bench_photos

With --into, the text between the lines ``<!-- table: MARKER -->`` and ``<!-- /table: MARKER -->`` of that file is
replaced by the tables; nothing else in the file changes. --date gives the date for a JSON file that does not
record one.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

LABELS = {"roofline": "roofline (uint8 -> float32 copy)"}
TITLES = {"cifar": "CIFAR", "imagenet": "ImageNet", "cifar-policy": "CIFAR policy",
          "imagenet-policy": "ImageNet policy"}
PHOTO_PIECES = {"read_image": "decode: augpipe.read_image (PIL)", "pil_decode": "decode: PIL open + convert RGB",
                "cv2_decode": "decode: cv2.imread + BGR to RGB", "albumentations": "albumentations recipe",
                "pil_recipe": "PIL recipe", "resize_256": "PIL resize to 256 x 256 (kornia's workers)",
                "kornia": "kornia batch call / batch", "augpipe-eager-aa": "augpipe eager, antialias: call / batch",
                "augpipe-eager": "augpipe eager, no antialias: call / batch",
                "augpipe-compiled-aa": "augpipe compiled, antialias: call / batch",
                "augpipe-compiled": "augpipe compiled, no antialias: call / batch"}
VERSION_NAMES = (("kornia", "kornia"), ("albumentations", "albumentations"), ("torchvision", "torchvision"),
                 ("numpy", "numpy"), ("cv2", "OpenCV"), ("PIL", "Pillow"), ("augpipe", "augpipe"))


def _num(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def _times(x: float) -> str:
    return f"{x:.{2 if x < 10 else 1 if x < 100 else 0}f}x"


def _fraction(x: float) -> str:
    return f"{x:.3f}" if x >= 0.01 else f"{x:.2g}"


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return _num(ms, 3 if ms < 0.1 else 2)


def machine_line(report: dict, date: str | None) -> str:
    """One sentence: the machine, the versions, the threads and the date of a run."""
    m = report["machine"]
    v = m["versions"]
    if m["device"].startswith("cuda"):
        where = f"{m.get('gpu', 'a CUDA GPU')} (CUDA {m.get('cuda')}), host {m['cpu']} with {m['usable_cores']} cores"
    else:
        where = f"{m['cpu']}, {m['usable_cores']} usable cores, torch on {m['torch_threads']} threads"
    libs = ", ".join(f"{name} {v[key]}" for key, name in VERSION_NAMES if v.get(key))
    missing = [name for key, name in VERSION_NAMES if key in v and not v[key] and key != "augpipe"]
    when = date or m.get("date")
    return (f"{where}; Python {m['python']}, torch {v['torch']}, {libs}"
            + (f" ({', '.join(missing)} not installed)" if missing else "")
            + (f"; {when}" if when else "") + ".")


def recipe_table(recipe: dict, cpu: bool) -> str:
    """The table of one recipe, then a line for the fresh-process row and one for the rows that did not run."""
    head = ["implementation"] + (["cores"] if cpu else []) + ["ms / batch", "images/s"] \
        + (["us / image / core"] if cpu else []) + ["augpipe compiled is", "of roofline", "peak / output",
                                                      "peak + kept / output"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    skipped, fresh = [], None
    for row in recipe["rows"]:
        if "skipped" in row:
            skipped.append(f"{row['label']}: {row['skipped']}")
            continue
        if row["key"] == "augpipe-compiled-fresh":
            fresh = row
        roofline = row["key"] == "roofline"
        peak = row.get("peak_over_output")
        cells = [LABELS.get(row["key"], row["label"])]
        if cpu:
            cells.append(str(row.get("cores_used", "–")))
        cells += [_ms(row["s_per_call"]), _num(row["images_per_s"], 0)]
        if cpu:
            cells.append(_num(row["us_per_image_per_core"], 2) if "us_per_image_per_core" in row else "–")
        cells += ["–" if roofline or "compiled_x" not in row else _times(row["compiled_x"]),
                  _fraction(row["roofline_fraction"]) if "roofline_fraction" in row else "–",
                  "–" if roofline or peak is None else _num(peak, 2),
                  "–" if roofline or peak is None else _num(row["peak_and_kept_over_output"], 2)]
        lines.append("| " + " | ".join(cells) + " |")
    if fresh is not None:
        lines.append("")
        lines.append(f"Fresh process: {_ms(fresh['s_per_call'])} ms a call, {fresh['fresh_over_in_process']:.2f}x "
                     f"the in-process {_ms(fresh['in_process_s_per_call'])} ms (timed again right after the fresh "
                     f"process: {_ms(fresh['in_process_after_s_per_call'])} ms).")
    if skipped:
        lines.append("")
        lines.append("Not run: " + "; ".join(skipped) + ".")
    return "\n".join(lines)


def targets_line(targets: list[dict]) -> str:
    """One sentence: each target of a policy recipe (bench_peers.POLICY_TARGETS), what was measured, and whether
    it holds."""
    said = []
    for t in targets:
        if t["kind"] == "faster":
            what = (f"at least as fast as {t['row']}" if t["bound"] == 1
                    else f"at least {t['bound']:g}x faster than {t['row']}")
        else:
            what = f"at most {t['bound']:g}x the call of {t['row']}"
        if t["value"] is None:
            said.append(f"{what}: not measured")
            continue
        core = f", {_times(t['per_core_ratio'])} per image per core" if "per_core_ratio" in t else ""
        said.append(f"{what}: {_times(t['value'])}{core}, {'holds' if t['holds'] else 'does not hold'}")
    return "Targets of augpipe compiled: " + "; ".join(said) + "."


def render(report: dict, date: str | None = None) -> str:
    cpu = not report["machine"]["device"].startswith("cuda")
    parts = [machine_line(report, date)]
    for name, recipe in report["recipes"].items():
        title = TITLES.get(name.split("_")[0], name)
        shape = " x ".join(map(str, recipe["input"]))
        out = recipe["output"][-1]
        parts.append(f"{title} recipe, batch {recipe['batch']}: {shape} uint8"
                     + (f" -> {out} x {out}" if out != recipe["input"][-1] else "")
                     + f"; {recipe['ops']}; {recipe['classes']} classes.")
        parts.append(recipe_table(recipe, cpu))
        if recipe.get("targets"):
            parts.append(targets_line(recipe["targets"]))
    return "\n\n".join(parts) + "\n"


def batches_table(reports: list[dict]) -> str:
    """One line per recipe and batch size over several runs: roofline, augpipe compiled and eager, in ms."""
    lines = ["| recipe | batch | roofline (ms) | augpipe compiled (ms) | of roofline | augpipe eager (ms) |",
             "|---|---|---|---|---|---|"]
    found = []
    for report in reports:
        for name, recipe in report["recipes"].items():
            rows = {row["key"]: row for row in recipe["rows"] if "skipped" not in row}
            if "roofline" in rows and "augpipe-compiled" in rows:
                found.append((name.split("_")[0], recipe["batch"], rows))
    for name, batch, rows in sorted(found, key=lambda f: (f[0], f[1])):
        eager = rows.get("augpipe-eager")
        lines.append(f"| {name} | {batch:,} | {_ms(rows['roofline']['s_per_call'])} | "
                     f"{_ms(rows['augpipe-compiled']['s_per_call'])} | "
                     f"{_fraction(rows['augpipe-compiled']['roofline_fraction'])} | "
                     f"{_ms(eager['s_per_call']) if eager else '–'} |")
    return "\n".join(lines) + "\n"


def render_photos(report: dict, date: str | None = None) -> str:
    """The tables of a bench_photos.py JSON file: end to end, then the cost per image per core."""
    m, s = report["machine"], report["settings"]
    load, after = report.get("load_average_before"), report.get("load_average_after")
    parts = [machine_line(report, date)[:-1] + (f"; load average {load[0]:.2f} when it started" if load else "")
             + (f", {after[0]:.2f} when it ended (its own processes included)" if after else "") + "."]
    parts.append(f"End to end: {s['images']} JPEGs, batches of {s['batch']} from {s['workers']} DataLoader workers, "
                 f"{s['batches']} timed batches after {s['skip']}, median of {s['runs']} runs; the main process on "
                 f"{s['threads']} torch threads.")
    lines = ["| row | ms / batch | images/s | us / image / core | of decode only | vs albumentations |",
             "|---|---|---|---|---|---|"]
    skipped, cpu = [], not m["device"].startswith("cuda")
    for row in report["end_to_end"]:
        if "skipped" in row:
            skipped.append(f"{row['label']}: {row['skipped']}")
            continue
        cells = [row["label"], _num(row["s_per_batch"] * 1e3, 1), _num(row["images_per_s"], 0),
                 _num(row["us_per_image_per_core"], 0) if cpu else "–",
                 f"{row['of_decode_only']:.3f}" if "of_decode_only" in row else "–",
                 _times(row["vs_albumentations"]) if "vs_albumentations" in row else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    if skipped:
        lines += ["", "Not run: " + "; ".join(skipped) + "."]
    parts.append("\n".join(lines))
    per_core = report.get("per_core")
    if per_core and "sets" in per_core:
        names = list(per_core["sets"])
        first = per_core["sets"][names[0]]
        described = "; ".join(f"{n}: {per_core['sets'][n]['images']} images of "
                              f"{per_core['sets'][n]['mean_pixels']:,.0f} pixels on average" for n in names)
        parts.append(f"Cost per image per core (one thread, no workers), ms an image ({described}):")
        lines = ["| piece | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for key, value in first.items():
            if isinstance(value, dict):
                lines.append(f"| {PHOTO_PIECES.get(key, key)} | "
                             + " | ".join(_num(per_core["sets"][n][key]["ms_per_image"], 3) for n in names) + " |")
        for way in per_core["totals"][names[0]]:
            lines.append(f"| decode + augment: {way} | "
                         + " | ".join(_num(per_core["totals"][n][way], 3) if way in per_core["totals"][n] else "–"
                                      for n in names) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def replace_between_markers(text: str, marker: str, body: str) -> str:
    """text with what lies between ``<!-- table: marker -->`` and ``<!-- /table: marker -->`` replaced by body."""
    pattern = re.compile(rf"(<!-- table: {re.escape(marker)} -->\n).*?(<!-- /table: {re.escape(marker)} -->)", re.S)
    if not pattern.search(text):
        raise ValueError(f"tables: no '<!-- table: {marker} -->' ... '<!-- /table: {marker} -->' pair in the file")
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), text, count=1)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("json", type=Path, nargs="+", help="a file written by bench_peers.py --json (several with "
                                                       "--batches)")
    ap.add_argument("--batches", action="store_true",
                    help="one compact table of roofline and augpipe times over every file and batch size")
    ap.add_argument("--into", type=Path, default=None, help="a Markdown file with the marker pair to fill")
    ap.add_argument("--marker", default=None, help="the marker name, e.g. cpu or gpu (with --into)")
    ap.add_argument("--date", default=None, help="the run's date, where the JSON file does not record one")
    args = ap.parse_args(argv)
    reports = [json.loads(path.read_text()) for path in args.json]
    if args.batches:
        body = batches_table(reports)
    elif len(reports) == 1:
        body = (render_photos if "end_to_end" in reports[0] else render)(reports[0], args.date)
    else:
        ap.error("several JSON files need --batches")
    if args.into is None:
        print(body, end="")
        return
    if not args.marker:
        ap.error("--into needs --marker")
    args.into.write_text(replace_between_markers(args.into.read_text(), args.marker, body))
    print(f"tables: filled '{args.marker}' in {args.into}")


if __name__ == "__main__":
    main()
