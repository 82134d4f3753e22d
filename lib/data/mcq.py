"""Multiple-choice questions of the two tracks, in one normalised shape: medical exam questions
(the knowledge track, eval.mcq_*) and general-knowledge ones (the general-ability track, eval.general_*).

    python -m lib mcq-data --profile paper --out data/processed/paper/mcq.jsonl      (CMB, from the hub)
    python -m lib mcq-data --profile demo --out data/processed/demo/mcq.jsonl        (generated items)
    python -m lib mcq-data --profile paper --set eval.mcq_source=path/to/items.json --out ...
    make data MCQ_SOURCE=path/to/items.json
    python -m lib mcq-data --profile paper --track general --out data/processed/paper/general.jsonl
                                                               (CMMLU's non-medical subjects, from the hub)
    make data GENERAL_SOURCE=path/to/items.csv

The general track reads its items exactly as the knowledge track does; only where they come from
differs: from the hub, eval.general_hub_file is a zip (CMMLU v1.0.1) of which the file of each
subject of eval.general_subjects (eval.general_hub_member, e.g. test/{subject}.csv) is read, the
subject being its items' source; `synthetic` is lib.data.general_facts.generate_general_mcq, the
facts the demo's tiny base was pretrained on. Each source's licence (eval.*_hub_license, as its
dataset card states it) is printed and kept in the report.

Every item becomes {"id", "source", "question", "options": {"A": ..., "B": ...}, "answer": "C"}.
Where the items come from (eval.mcq_source):

    hub        eval.mcq_hub_file of the dataset repo eval.mcq_hub_repo at eval.mcq_hub_revision,
               downloaded by huggingface_hub into its cache (it honours HF_ENDPOINT, HF_HOME, HF_TOKEN)
    synthetic  lib.data.synthetic.generate_mcq: the demo's own items
    a path     a local file

A file is a JSON array, JSON Lines or CSV/TSV with a header, in UTF-8 or GBK/GB18030 (read by
lib.data.sources.read_records, as question-answer files are; what counts as a multiple-choice
record is defined there too). The record shapes of this field:

    CMB          question, option {"A": ..}, answer "D" (multiple-answer items: "ABD"), exam_type, ...
    CMExam       Question, Options "A 选项\\nB 选项 ...", Answer
    MedQA-MCMLE  question, options {"A": ..}, answer_idx "C" (its `answer` holds the option's text)
    CMMLU        CSV columns ,Question,A,B,C,D,Answer
    Apollo       question, options "(A) ...\\n(B) ...", answer "(C)", source

Field names are matched without regard to case. A file with other keys is read through a mapping
of its keys (eval.mcq_columns; make MCQ_COLUMNS="question=题目 options=选项 answer=答案"), of the
roles question, options, answer and source. An item's source is its own `source` field, else
<file>/<exam_type> for CMB, else the file's name. Question and options are normalised as the QA
data is (lib.data.clean.normalise_text); Apollo's files end every option with ".", which is
removed when all options of an item end with one. Items with several correct letters are
counted and skipped: the track scores one letter per item. A record without a question, with
fewer than two options, or with an answer that is not one of its option letters is malformed:
counted and reported with its line, and fatal above data.max_bad_fraction of all records,
skipped ones included (the QA loader's policy). Then eval.mcq_size items are sampled (seeded by
data.seed), kept in file order.

Written: the items to --out (an unchanged mcq.jsonl is left untouched), then a report beside it,
every time (mcq_report.json: source, counts, malformed lines, items per source, provenance): the
Makefile's target for this step, since the items file may keep its old time.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import random
import re
import string
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from lib.config import MCQ_COLUMN_ROLES, Config, EvalConfig
from lib.data import id_prefix, source_license, write_if_changed
from lib.data.clean import normalise_text
from lib.data.sources import (
    MCQ_ANSWER_FIELDS,
    MCQ_OPTION_FIELDS,
    MCQ_QUESTION_FIELDS,
    MCQ_SHAPES,
    Malformed,
    ReadResult,
    Skipped,
    check_mapped_keys,
    first_field,
    is_multiple_choice,
    letter_columns,
    lowered,
    read_records,
)
from lib.errors import UserError
from lib.io import exclusive, jsonl_bytes, provenance, sha256_file, shown, write_json

LOCAL_HINT = "make data MCQ_SOURCE=path/to/items.json"


@dataclass(frozen=True)
class Track:
    """One track's settings (eval.mcq_* or eval.general_*) as one object."""
    name: str  # mcq or general: the items file <name>.jsonl, its report <name>_report.json
    source: str
    hub_repo: str
    hub_file: str
    hub_revision: str
    hub_license: str
    size: int
    columns: dict[str, str] | None
    member: str | None = None  # the hub file is a zip: read the member of each subject
    subjects: tuple[str, ...] = ()
    variable: str = "MCQ_SOURCE"  # the make variable of a local file

    @property
    def report_name(self) -> str:
        return f"{self.name}_report.json"

    @property
    def settings(self) -> str:
        return f"eval.{self.name}_hub_repo, eval.{self.name}_hub_file and eval.{self.name}_hub_revision"


def track_of(config: EvalConfig, name: str) -> Track:
    if name == "mcq":
        return Track("mcq", config.mcq_source, config.mcq_hub_repo, config.mcq_hub_file, config.mcq_hub_revision,
                     config.mcq_hub_license, config.mcq_size, config.mcq_columns)
    return Track("general", config.general_source, config.general_hub_repo, config.general_hub_file,
                 config.general_hub_revision, config.general_hub_license, config.general_size, None,
                 config.general_hub_member, tuple(config.general_subjects), "GENERAL_SOURCE")


class MultipleAnswer(Skipped):
    """An item with several correct letters; skipped, not malformed."""


# --- one record --------------------------------------------------------------------------------


# One option line of a text: "(A) ...", "A. ...", "A 、...", "A ..." (the letter, then its text).
OPTION_LINE = re.compile(r"\s*[(（]?([A-Z])[)）]?[\s.．、:：]*")


def options_of_text(text: str) -> dict:
    """'(A) 甲\\n(B) 乙' or 'A 甲\\nB 乙' -> {'A': '甲', 'B': '乙'}; a line that does not start
    with the next letter continues the option before it."""
    options: dict[str, str] = {}
    for line in text.splitlines():
        match = OPTION_LINE.match(line)
        expected = chr(ord("A") + len(options))
        if match and match.group(1) == expected:
            options[expected] = line[match.end():]
        elif options and line.strip():
            last = next(reversed(options))
            options[last] += "\n" + line
        elif line.strip():
            raise Malformed(f"options text does not start with option A: {line.strip()[:20]!r}")
    return options


def options_of(value) -> dict:
    """The options, from a {letter: text} mapping, a list, or lettered lines of text."""
    if isinstance(value, str):
        return options_of_text(value)
    if isinstance(value, list):
        return {chr(ord("A") + i): text for i, text in enumerate(value)}
    if isinstance(value, dict):
        options = {}
        for key, text in value.items():
            letter = str(key).strip().strip("()（）").upper()
            if not re.fullmatch(r"[A-Z]", letter):
                raise Malformed(f"option key {key!r} is not a letter")
            options[letter] = text
        return dict(sorted(options.items()))
    raise Malformed(f"options are a {type(value).__name__}, expected a mapping, a list or text")


def clean_options(options: dict) -> dict:
    """Texts normalised; empty options at the end dropped (a four-option item in a file with
    five option slots); the letters must then run A, B, C, ... with none empty."""
    texts = {}
    for letter, text in options.items():
        if not isinstance(text, str | int | float) or isinstance(text, bool):
            raise Malformed(f"option {letter} is a {type(text).__name__}, expected text")
        texts[letter] = normalise_text(str(text))
    while texts and not texts[next(reversed(texts))]:
        texts.popitem()
    letters = "".join(texts)
    if len(texts) < 2:
        raise Malformed(f"{len(texts)} option(s), a question needs at least two")
    if letters != string.ascii_uppercase[:len(letters)]:
        raise Malformed(f"option letters {letters} do not run A, B, C, ...")
    empty = [letter for letter, text in texts.items() if not text]
    if empty:
        raise Malformed(f"option {empty[0]} is empty")
    if all(text.endswith(".") for text in texts.values()):  # Apollo's "(A) 阳离子型."
        texts = {letter: text[:-1].rstrip() for letter, text in texts.items()}
    return texts


def answer_letter(value, options: dict) -> str:
    """'C', '(C)', ' c ' -> 'C'; several letters raise MultipleAnswer."""
    if not isinstance(value, str):
        raise Malformed(f"answer {value!r} is not an option letter")
    match = re.fullmatch(r"[(（]?\s*([A-Za-z]+)\s*[)）]?", normalise_text(value))
    if not match:
        raise Malformed(f"answer {value[:20]!r} is not an option letter")
    letters = match.group(1).upper()
    if len(letters) > 1:
        raise MultipleAnswer(f"several correct letters {letters}; the knowledge track scores one letter per item")
    if letters not in options:
        raise Malformed(f"answer {letters!r} is not among the options {''.join(options)}")
    return letters


def to_item(record: dict, file_source: str, prefix: str, line: int) -> dict:
    """One record as an item with the id <prefix>-<line>; raises Malformed or MultipleAnswer."""
    fields = lowered(record)
    question = first_field(fields, MCQ_QUESTION_FIELDS)
    question = normalise_text(question) if isinstance(question, str) else ""
    if not question:
        raise Malformed("no question text")
    raw_options = first_field(fields, MCQ_OPTION_FIELDS)
    options = clean_options(options_of(raw_options if raw_options is not None else letter_columns(fields)))
    answer = answer_letter(first_field(fields, MCQ_ANSWER_FIELDS), options)
    return {
        "id": f"{prefix}-{line}",
        "source": item_source(fields, file_source),
        "question": question,
        "options": options,
        "answer": answer,
    }


def item_source(fields: dict, file_source: str) -> str:
    own = fields.get("source")
    if isinstance(own, str) and own.strip():
        return own.strip()
    exam_type = fields.get("exam_type")  # CMB: 医师考试, 护理考试, ...
    if isinstance(exam_type, str) and exam_type.strip():
        return f"{file_source}/{exam_type.strip()}"
    return file_source


def check_shape(record: dict, where: str) -> str:
    """The fields of the first record, which must look like a multiple-choice item; anything else
    is one error."""
    fields = ", ".join(map(str, record))
    if not is_multiple_choice(record):
        roles = " ".join(f"{role}=<key>" for role in MCQ_COLUMN_ROLES[:3])
        raise UserError(f"{where}: not multiple-choice items (fields: {fields}); expected {MCQ_SHAPES}; "
                        f'or name its keys: MCQ_COLUMNS="{roles}" (eval.mcq_columns)')
    return fields


def mapped(record: dict, columns: dict[str, str] | None) -> dict:
    """A record with the keys eval.mcq_columns names renamed to their roles."""
    if not columns:
        return record
    renamed = {role: record[key] for role, key in columns.items() if key in record}
    return {**{key: value for key, value in record.items() if key not in columns.values()}, **renamed}


# --- one file ----------------------------------------------------------------------------------


def read_items(path: str | Path, file_source: str, max_bad_fraction: float,
               columns: dict[str, str] | None = None) -> ReadResult:
    """Every single-answer item of a local file, its keys mapped by `columns` (eval.mcq_columns)
    where given (`examples`; `shape` is the fields of its first record); malformed records counted
    with their lines, multiple-answer ones in `skipped`."""
    prefix = id_prefix(file_source)

    def detect(record: dict, where: str) -> str:
        if columns:
            check_mapped_keys(record, list(columns.values()), where, "eval.mcq_columns")
        return check_shape(mapped(record, columns), where)

    def convert(record: dict, _, line: int) -> dict:
        return to_item(mapped(record, columns), file_source, prefix, line)

    return read_records(path, detect, convert, max_bad_fraction)


def sample(items: list[dict], size: int, seed: int) -> list[dict]:
    """`size` items drawn without replacement (all when there are fewer), in file order."""
    if len(items) <= size:
        return items
    chosen = sorted(random.Random(seed).sample(range(len(items)), size))
    return [items[i] for i in chosen]


# --- the hub -----------------------------------------------------------------------------------


def download(track: Track) -> Path:
    """The track's file of the hub in huggingface_hub's cache (downloaded if needed)."""
    from lib.data.hub import download_file

    return download_file(track.hub_repo, track.hub_file, track.hub_revision, settings=track.settings,
                         offline_hint=f"use a local file instead (make data {track.variable}=path/to/items.json; "
                                      "CMB, CMExam, MedQA-MCMLE, CMMLU or Apollo shape)")


def read_subjects(archive: Path, track: Track, max_bad_fraction: float) -> ReadResult:
    """The items of each subject's member of a zip (CMMLU: test/<subject>.csv), the subject as their
    source, in subject order; a subject the zip lacks is an error naming it."""
    import tempfile
    import zipfile

    try:
        opened = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        raise UserError(f"{shown(archive)}: not a zip file (eval.general_hub_file names a zip)") from None
    results: dict[str, ReadResult] = {}
    with opened, tempfile.TemporaryDirectory() as folder:
        names = set(opened.namelist())
        for subject in track.subjects:
            member = track.member.format(subject=subject)
            if member not in names:
                raise UserError(f"{shown(archive)}: no {member} for subject {subject!r} "
                                f"(eval.{track.name}_subjects, eval.{track.name}_hub_member)")
            path = Path(folder) / f"{subject}.csv"
            path.write_bytes(opened.read(member))
            results[subject] = read_items(path, subject, max_bad_fraction)
    def named(kind: str) -> list[tuple[int, str]]:  # the lines of each subject, the subject named
        return [(line, f"{subject}: {why}") for subject, read in results.items() for line, why in getattr(read, kind)]

    first = next(iter(results.values()), ReadResult([], [], "", ""))
    return ReadResult([item for read in results.values() for item in read.examples], named("malformed"),
                      first.shape, first.encoding, named("skipped"))


# --- the command -------------------------------------------------------------------------------


GENERATORS = {"mcq": "lib.data.synthetic.generate_mcq", "general": "lib.data.general_facts.generate_general_mcq"}


def generated(track: Track, seed: int) -> list[dict]:
    if track.name == "mcq":
        from lib.data.synthetic import generate_mcq

        return generate_mcq(track.size, seed)
    from lib.data.general_facts import generate_general_mcq

    return generate_general_mcq(track.size, seed)


def collect(config: Config, track: Track) -> tuple[ReadResult, dict]:
    """All single-answer items of the track's source, before sampling, and where they came from."""
    if track.source == "synthetic":
        items = generated(track, config.data.seed)
        return ReadResult(items, [], "", ""), {"type": "synthetic", "generator": GENERATORS[track.name],
                                               "count": len(items), "seed": config.data.seed}
    if track.source == "hub":
        from lib.data.hub import origin

        path = download(track)
        source = origin(track.hub_repo, track.hub_file, track.hub_revision, path)
        if track.member:
            read = read_subjects(path, track, config.data.max_bad_fraction)
            source["subjects"] = list(track.subjects)
        else:
            read = read_items(path, track.hub_repo.split("/")[-1], config.data.max_bad_fraction, track.columns)
    else:
        path = Path(track.source)
        if not path.is_file():
            raise UserError(f"eval.{track.name}_source: {track.source!r} is not hub, synthetic or an existing file")
        source = {"type": "local", "path": shown(path)}
        read = read_items(path, path.name.split(".")[0], config.data.max_bad_fraction, track.columns)
    source.update({"sha256": sha256_file(path), "fields": read.shape, "columns": track.columns,
                   "encoding": read.encoding})
    return read, source


def report_of(config: Config, track: Track, read: ReadResult, source: dict, items: list[dict],
              content: bytes) -> dict:
    settings = {"eval": dataclasses.asdict(config.eval), "data": {"seed": config.data.seed,
                                                                 "max_bad_fraction": config.data.max_bad_fraction}}
    return {
        "track": track.name,
        "source": source,
        "license": source_license(track.source, track.hub_repo, track.hub_license),
        "single_answer_items": len(read.examples),
        "multiple_answer_skipped": len(read.skipped),
        "malformed_lines": len(read.malformed),
        "malformed_examples": read.malformed_examples(),
        "sampled": len(items),
        "per_source": dict(sorted(Counter(item["source"] for item in items).items())),
        "answers": dict(sorted(Counter(item["answer"] for item in items).items())),
        "sha256": hashlib.sha256(content).hexdigest(),
        "provenance": provenance(settings, config.data.seed),
    }


def prepare(config: Config, out: Path, track_name: str = "mcq") -> dict:
    """Collect, sample and write the track's items to `out`, then its report beside it; returns the report.

    The items are rewritten only when they change (evaluations that read them are not redone for
    nothing); the report is written every time, last: it is the step's marker for make."""
    track = track_of(config.eval, track_name)
    read, source = collect(config, track)
    items = sample(read.examples, track.size, config.data.seed)
    content = jsonl_bytes(items)
    write_if_changed(out, content)
    report = report_of(config, track, read, source, items, content)
    write_json(out.with_name(track.report_name), report)
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lib.arguments import add_config_arguments

    add_config_arguments(parser, method=False)
    parser.add_argument("--track", choices=("mcq", "general"), default="mcq",
                        help="mcq: the medical knowledge track (eval.mcq_*); general: general ability (eval.general_*)")
    parser.add_argument("--out", type=Path, required=True,
                        help="the items file, data/processed/<profile>/mcq.jsonl (general.jsonl for --track general)")


def run(args: argparse.Namespace) -> None:
    from lib.arguments import config_from_args

    config = config_from_args(args)
    with exclusive(args.out.parent / f".{args.track}.lock", "preparing the multiple-choice items"):
        report = prepare(config, args.out, args.track)
    skipped = f"{report['multiple_answer_skipped']} multiple-answer and {report['malformed_lines']} malformed skipped"
    sources = ", ".join(f"{name} {count}" for name, count in report["per_source"].items())
    print(f"mcq-data: {args.track}: {report['sampled']} of {report['single_answer_items']} single-answer items "
          f"({skipped}) -> {shown(args.out)}")
    print(f"mcq-data: {args.track}: per source: {sources}")
    print(f"mcq-data: {args.track}: licence: {report['license']}")
