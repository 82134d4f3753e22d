"""`python -m lib data`: raw data -> clean, fixed test/dev sets and nested train subsets.

    python -m lib data --profile paper --raw-dir data/raw --out data/processed/paper --sizes 10k 20k 40k 60k
    python -m lib data --profile demo --raw-dir data/raw --out data/processed/demo --sizes 250 500 1k 2k
    python -m lib data --profile paper --set data.source=path/to/file.jsonl --out data/processed/paper
    make data [PROFILE=demo] [SOURCE=path] [SIZES="1k 2k"] [TEST_SIZE=300] [DEV_SIZE=200] [SEED=7]

Stages: (1) the raw file: the hub sample (lib.data.hub), the generated data (lib.data.synthetic)
or a local file; (2) read it into examples (lib.data.sources); (3) clean (lib.data.clean);
(4) cut and write the splits (lib.data.splits). Written under --out: test.jsonl, dev.jsonl,
train-<size>.jsonl, cleaning_report.json and .md, and manifest.json last (its presence means the
step finished). Files whose content did not change are left untouched.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lib.arguments import add_config_arguments, config_from_args
from lib.config import Config, DataConfig, load_grid
from lib.data import id_prefix, source_license, write_if_changed
from lib.data.clean import CleanResult, clean, token_counter
from lib.data.sources import ReadResult, read_examples
from lib.data.splits import Splits, check_sizes, cut, write_splits
from lib.errors import UserError
from lib.io import exclusive, json_bytes, provenance, sha256_file, shown, write_json

HUB_HELP = (
    "data.source=hub downloads with huggingface_hub, which honours HF_ENDPOINT (e.g. "
    "HF_ENDPOINT=https://hf-mirror.com in mainland China), HF_HOME and HF_TOKEN; nothing here overrides them."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, method=False)
    parser.add_argument("--raw-dir", default="data/raw", help="raw downloads and generated data (default: data/raw)")
    parser.add_argument("--out", default=None, help="output folder (default: data/processed/<profile>)")
    parser.add_argument("--sizes", nargs="+", default=None, metavar="SIZE",
                        help="train subset sizes such as 10k 20k or 250 (default: the profile's grid)")
    parser.add_argument("--tokenizer", default=None,
                        help="tokenizer (path or hub id) for the cleaning.max_example_tokens rule")
    parser.epilog = HUB_HELP


def run(args: argparse.Namespace) -> None:
    config = config_from_args(args)
    sizes = args.sizes or list(load_grid(args.profile).sizes)
    out_dir = Path(args.out or f"data/processed/{args.profile}")
    with exclusive(out_dir / ".data.lock", "preparing the data"):
        prepared = prepare(config, args.raw_dir, out_dir, sizes, tokenizer=args.tokenizer)
    print(summary(prepared, out_dir))


# --- the raw file ------------------------------------------------------------------------------


@dataclass
class RawSource:
    path: Path
    name: str  # the "source" of every record, e.g. shibing624/medical
    short: str  # the prefix of record ids, e.g. medical
    manifest: dict


def raw_source(data: DataConfig, raw_dir: str | Path) -> RawSource:
    if data.source == "hub":
        from lib.data import hub

        path, manifest = hub.fetch_sample(data, raw_dir)
        return RawSource(path, data.hub_repo, id_prefix(data.hub_repo.split("/")[-1]), manifest)
    if data.source == "synthetic":
        from lib.data import synthetic

        path, manifest = synthetic.write_raw(raw_dir, data.synthetic_size, data.seed)
        return RawSource(path, "synthetic", "syn", manifest)
    path = Path(data.source)
    if not path.is_file():
        raise UserError(f"data.source: {data.source!r} is not hub, synthetic or an existing file")
    manifest = {"type": "local", "path": shown(path), "sha256": sha256_file(path)}
    return RawSource(path, path.name, id_prefix(path.name.split(".")[0]), manifest)


# --- the pipeline ------------------------------------------------------------------------------


@dataclass
class Prepared:
    manifest: dict
    report: dict
    files: dict[str, dict]  # name -> {"count", "sha256", "written"}
    timings: dict[str, float]  # seconds per stage: source, read, clean, split


def prepare(config: Config, raw_dir: str | Path, out_dir: str | Path, sizes: list[str],
            tokenizer: str | None = None) -> Prepared:
    """Run the four stages and write every output under out_dir (manifest.json last)."""
    out_dir = Path(out_dir)
    timings = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = now - clock
        clock = now

    source = raw_source(config.data, raw_dir)
    lap("source")
    read = read_examples(source.path, source.name, config.data.max_bad_fraction, config.data.columns)
    lap("read")
    cleaned = clean(read.examples, config.cleaning, tokens_rule(config, tokenizer), total=len(read.examples))
    lap("clean")
    splits = cut(cleaned.kept, cleaned.fingerprints, config.data, config.cleaning)
    counts = check_sizes(sizes, splits)
    files = write_splits(out_dir, splits, counts, source.short, config.data.system_prompt)
    report = cleaning_report(read, cleaned, splits)
    write_if_changed(out_dir / "cleaning_report.json", json_bytes(report))
    write_if_changed(out_dir / "cleaning_report.md", report_markdown(report, source).encode("utf-8"))
    settings = {"data": dataclasses.asdict(config.data), "cleaning": dataclasses.asdict(config.cleaning)}
    manifest = {
        "source": {**source.manifest, "shape": read.shape, "columns": config.data.columns, "encoding": read.encoding,
                   "license": source_license(config.data.source, config.data.hub_repo, config.data.hub_license)},
        "config": settings,
        "clean_records": report["kept"],
        "files": {name: {"count": f["count"], "sha256": f["sha256"]} for name, f in files.items()},
        "sizes": counts,
        "provenance": provenance(settings, config.data.seed),
    }
    write_json(out_dir / "manifest.json", manifest)
    lap("split")
    warn_stale(out_dir, files)
    return Prepared(manifest, report, files, timings)


def tokens_rule(config: Config, tokenizer: str | None):
    """The token counter for cleaning.max_example_tokens, or None when the rule is off."""
    limit = config.cleaning.max_example_tokens
    if limit is None:
        if tokenizer is not None:
            print("note: --tokenizer is unused while cleaning.max_example_tokens is not set", file=sys.stderr)
        return None
    if tokenizer is None:
        print(f"note: cleaning.max_example_tokens={limit} needs --tokenizer; the token rule is off", file=sys.stderr)
        return None
    return token_counter(tokenizer, config.data.system_prompt)


def warn_stale(out_dir: Path, files: dict) -> None:
    stale = sorted(p.name for p in out_dir.glob("train-*.jsonl") if p.name not in files)
    if stale:
        print(f"note: {shown(out_dir)} also holds {', '.join(stale)} from an earlier run with other sizes; "
              "manifest.json lists the current files", file=sys.stderr)


# --- the cleaning report -----------------------------------------------------------------------


def cleaning_report(read: ReadResult, cleaned: CleanResult, splits: Splits) -> dict:
    """Records in, malformed lines, each rule's drops with examples, records kept (after splitting)."""
    return {
        "input_records": len(read.examples),
        "malformed_lines": len(read.malformed),
        "malformed_examples": read.malformed_examples(),
        "rules": [r.to_dict() for r in [*cleaned.reports, splits.overlaps]],
        "kept": len(splits.test) + len(splits.dev) + len(splits.train),
    }


def report_markdown(report: dict, source: RawSource) -> str:
    """The report for people: one table of counts, then the first examples each rule dropped."""
    n = report["input_records"]
    lines = [
        "# Cleaning report",
        "",
        f"Source: `{source.manifest.get('path', source.name)}` ({source.name}). {n} records read"
        f" ({report['malformed_lines']} malformed lines skipped before cleaning). Rules apply in this order; "
        "a record is counted under the first rule it fails, so records read minus all drops = kept.",
        "",
        "| rule | dropped | % of read | description |",
        "|---|---:|---:|---|",
    ]
    for rule in report["rules"]:
        dropped = rule["dropped"] if "changed" not in rule else f"0 ({rule['changed']} changed)"
        share = 100 * rule["dropped"] / n if n else 0.0
        lines.append(f"| {rule['rule']} | {dropped} | {share:.1f} | {rule['description']} |")
    lines += [f"| **kept** | **{report['kept']}** | {100 * report['kept'] / n:.1f} | |", ""]
    for line, why in ((m["line"], m["why"]) for m in report["malformed_examples"]):
        lines.append(f"- malformed line {line}: {why}")
    for rule in report["rules"]:
        if rule["examples"]:
            lines += ["", f"## {rule['rule']}", ""]
            lines += [f"- {markdown_example(example)}" for example in rule["examples"]]
    return "\n".join(lines) + "\n"


def markdown_example(example: dict) -> str:
    def quoted(text: str) -> str:
        return "`" + text.replace("`", "'").replace("\n", "⏎") + "`"

    if "before" in example:
        return f"line {example['line']} ({example['field']}): {quoted(example['before'])} → {quoted(example['after'])}"
    return f"line {example['line']} ({example['why']}): Q {quoted(example['question'])} A {quoted(example['answer'])}"


def summary(prepared: Prepared, out_dir: Path) -> str:
    report, manifest = prepared.report, prepared.manifest
    written = [name for name, f in prepared.files.items() if f["written"]]
    unchanged = [name for name, f in prepared.files.items() if not f["written"]]
    counts = ", ".join(f"{name} {f['count']}" for name, f in prepared.files.items())
    return "\n".join([
        f"data: {report['input_records']} records read from {manifest['source']['path']} "
        f"({manifest['source']['shape']}, {manifest['source']['encoding']}), {report['kept']} kept after cleaning "
        f"(see {shown(out_dir / 'cleaning_report.md')})",
        f"data: {counts}",
        f"data: wrote {', '.join(written) or 'nothing'}; unchanged {', '.join(unchanged) or 'nothing'}",
        f"data: licence: {manifest['source']['license']}",
    ])
