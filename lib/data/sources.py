"""Read a local question-answer file, in any of the shapes common in this field, into examples.

    python -m lib data --profile paper --set data.source=path/to/file.jsonl --out data/processed/paper

Containers: JSON Lines, one JSON array, or CSV/TSV with a header row. Encodings: UTF-8 (with
or without BOM), else GB18030 (a superset of GBK and GB2312, which Chinese CSV files often use).
Record shapes, recognised from the fields of the first record:

    alpaca       {"instruction", "input"?, "output", "history"?}   (the shibing624/medical schema)
    pairs        question/answer, query/response, prompt/response, ask/answer (+ "title"), ...
    ShareGPT     {"conversations": [{"from": "human"|"gpt", "value": ...}, ...]}
    messages     {"messages": [{"role": "user"|"assistant", "content": ...}, ...]}

A field may hold a string or a list of strings (joined by newlines). Earlier turns, from a
`history` field ([[q, a], ...]) or from several turns of a dialogue, become the example's
history. A record's own system turn is dropped: every split carries data.system_prompt.

A malformed record (bad JSON, a missing field, a wrong type) is counted and reported with its
line number; more than data.max_bad_fraction of them rejects the file. A file of another kind
(multiple-choice items, an unknown shape) is one error that says what was found.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from lib.errors import UserError
from lib.io import shown


@dataclass(slots=True)
class Example:
    """One question-answer example: the last user turn, the last assistant turn, earlier turns."""

    question: str
    answer: str
    history: list[tuple[str, str]] = field(default_factory=list)
    source: str = ""
    line: int = 0  # line of the record in its file: a stable number for ids and reports


@dataclass
class ReadResult:
    examples: list[Example]
    malformed: list[tuple[int, str]]  # (line, what is wrong), in file order
    shape: str
    encoding: str

    @property
    def records(self) -> int:
        return len(self.examples) + len(self.malformed)


class Malformed(ValueError):
    """One record that cannot be read; counted, not fatal."""


# --- record shapes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FlatShape:
    """A record whose question and answer are fields (title/input add to the question)."""

    name: str
    question: str
    answer: str
    before: str | None = None  # optional field put before the question (a title)
    after: str | None = None  # optional field put after the question (alpaca's input)


@dataclass(frozen=True)
class TurnShape:
    """A record holding a list of turns."""

    name: str
    turns: str
    role: str
    text: str


FLAT_SHAPES = (
    FlatShape("alpaca", "instruction", "output", after="input"),
    FlatShape("question/answer", "question", "answer"),
    FlatShape("question/response", "question", "response"),
    FlatShape("query/response", "query", "response"),
    FlatShape("query/answer", "query", "answer"),
    FlatShape("prompt/response", "prompt", "response"),
    FlatShape("prompt/completion", "prompt", "completion"),
    FlatShape("instruction/response", "instruction", "response"),
    FlatShape("input/output", "input", "output"),
    FlatShape("title+ask/answer", "ask", "answer", before="title"),
)
TURN_SHAPES = (
    TurnShape("sharegpt", "conversations", "from", "value"),
    TurnShape("messages", "messages", "role", "content"),
)
USER_ROLES = {"human", "user"}
ASSISTANT_ROLES = {"gpt", "assistant", "chatgpt", "bot", "model"}
SYSTEM_ROLES = {"system"}
MCQ_FIELDS = {"options", "option", "choices"}  # CMB, CMExam, Apollo, MedQA

KNOWN_SHAPES = (
    "instruction/input/output (alpaca), question/answer, query/response, prompt/response, "
    "title+ask/answer, conversations (ShareGPT), messages"
)


def detect_shape(record: dict, where: str) -> FlatShape | TurnShape:
    fields = set(record)
    lowered = {name.lower() for name in fields}
    if lowered & MCQ_FIELDS or {"a", "b", "c", "d"} <= lowered:
        raise UserError(
            f"{where}: looks like a multiple-choice file (fields: {', '.join(record)}), not question-answer "
            "pairs; multiple-choice items belong to the knowledge track (eval.mcq_source), not data.source"
        )
    for shape in TURN_SHAPES:
        if shape.turns in fields:
            return shape
    for shape in FLAT_SHAPES:
        if shape.question in fields and shape.answer in fields:
            return shape
    raise UserError(f"{where}: unknown record shape (fields: {', '.join(record)}); expected {KNOWN_SHAPES}")


def text_of(record: dict, name: str, required: bool = True) -> str:
    """A text field: a string, or a list of strings joined by newlines."""
    value = record.get(name)
    if value is None:
        if required:
            raise Malformed(f"missing field {name!r}")
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(part, str) for part in value):
        return "\n".join(value)
    raise Malformed(f"field {name!r} is a {type(value).__name__}, expected text")


def history_of(record: dict) -> list[tuple[str, str]]:
    """The `history` field: [[question, answer], ...] of earlier turns."""
    history = record.get("history") or []
    if not isinstance(history, list):
        raise Malformed("field 'history' is not a list of [question, answer] pairs")
    turns = []
    for pair in history:
        if not (isinstance(pair, list | tuple) and len(pair) == 2 and all(isinstance(t, str) for t in pair)):
            raise Malformed("field 'history' is not a list of [question, answer] pairs")
        turns.append((pair[0], pair[1]))
    return turns


def flat_example(record: dict, shape: FlatShape) -> tuple[str, str, list[tuple[str, str]]]:
    question = text_of(record, shape.question)
    if shape.before:
        title = text_of(record, shape.before, required=False).strip()
        if title and title not in question:  # CSV titles often repeat the start of the question
            question = f"{title}\n{question}"
    if shape.after:
        extra = text_of(record, shape.after, required=False).strip()
        if extra:
            question = f"{question}\n{extra}"
    return question, text_of(record, shape.answer), history_of(record)


def turn_example(record: dict, shape: TurnShape) -> tuple[str, str, list[tuple[str, str]]]:
    turns = record[shape.turns]
    if not isinstance(turns, list) or not all(isinstance(turn, dict) for turn in turns):
        raise Malformed(f"field {shape.turns!r} is not a list of turns")
    dialogue = []  # (is_user, text) without system turns
    for number, turn in enumerate(turns, start=1):
        role = turn.get(shape.role)
        if role in SYSTEM_ROLES:
            continue
        if role not in USER_ROLES | ASSISTANT_ROLES:
            raise Malformed(f"turn {number}: unknown role {role!r}")
        dialogue.append((role in USER_ROLES, text_of(turn, shape.text)))
    expected_user = [number % 2 == 0 for number in range(len(dialogue))]
    if not dialogue or len(dialogue) % 2 or [is_user for is_user, _ in dialogue] != expected_user:
        raise Malformed("turns are not user/assistant pairs ending with the assistant")
    texts = [text for _, text in dialogue]
    pairs = list(zip(texts[0::2], texts[1::2], strict=True))
    return pairs[-1][0], pairs[-1][1], pairs[:-1]


def to_example(record, shape: FlatShape | TurnShape, source: str, line: int) -> Example:
    if not isinstance(record, dict):
        raise Malformed(f"a {type(record).__name__}, not a JSON object")
    read = turn_example if isinstance(shape, TurnShape) else flat_example
    question, answer, history = read(record, shape)
    return Example(question, answer, history, source, line)


# --- containers --------------------------------------------------------------------------------


def decode(path: Path) -> tuple[str, str]:
    """The file's text and its encoding: UTF-8 (BOM or not), else GB18030."""
    data = path.read_bytes()
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding), "utf-8" if encoding == "utf-8-sig" else encoding
        except UnicodeDecodeError:
            continue
    raise UserError(f"{shown(path)}: neither UTF-8 nor GB18030 text; convert it to UTF-8")


def jsonl_records(text: str):
    """(line, record or Malformed) for each non-empty line."""
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield line_number, json.loads(line)
        except json.JSONDecodeError as err:
            yield line_number, Malformed(f"not valid JSON ({err.msg})")


def json_array_records(text: str, path: Path):
    """(line, record) for each item of a top-level JSON array, with the line each item starts on."""
    decoder = json.JSONDecoder()
    line_of = LineCounter(text)
    position = text.index("[") + 1
    while True:
        start = skip_whitespace(text, position)
        if text.startswith("]", start):
            return
        try:
            record, position = decoder.raw_decode(text, start)
        except json.JSONDecodeError as err:
            raise UserError(f"{shown(path)}:{err.lineno}: not a valid JSON array ({err.msg})") from None
        yield line_of(start), record
        position = skip_whitespace(text, position)
        if text.startswith(",", position):
            position += 1
        elif not text.startswith("]", position):
            raise UserError(f"{shown(path)}:{line_of(position)}: not a valid JSON array (expected ',' or ']')")


class LineCounter:
    """Line number of a position in a text, for positions visited in increasing order."""

    def __init__(self, text: str):
        self.text, self.position, self.line = text, 0, 1

    def __call__(self, position: int) -> int:
        self.line += self.text.count("\n", self.position, position)
        self.position = position
        return self.line


def skip_whitespace(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def csv_records(text: str, delimiter: str):
    """(line, row as a dict keyed by the header) for each row after the header."""
    reader = csv.reader(text.splitlines(keepends=True), delimiter=delimiter)
    header = [name.strip() for name in next(reader, [])]
    start = reader.line_num + 1
    for row in reader:
        if any(cell.strip() for cell in row):
            if len(row) != len(header):
                yield start, Malformed(f"{len(row)} columns, the header has {len(header)}")
            else:
                yield start, dict(zip(header, row, strict=True))
        start = reader.line_num + 1


def raw_records(text: str, path: Path):
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return csv_records(text, "\t" if suffix == ".tsv" else ",")
    if text.lstrip().startswith("["):
        return json_array_records(text, path)
    return jsonl_records(text)


# --- reading a file ----------------------------------------------------------------------------


def read_examples(path: str | Path, source: str, max_bad_fraction: float) -> ReadResult:
    """Every example of a local file; malformed records counted with their line numbers."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{shown(path)}: no such file")
    text, encoding = decode(path)
    examples, malformed, shape = [], [], None
    for line, record in raw_records(text, path):
        if shape is None and isinstance(record, dict):
            shape = detect_shape(record, f"{shown(path)}:{line}")
        try:
            if isinstance(record, Malformed):
                raise record
            if shape is None:
                raise Malformed(f"a {type(record).__name__}, not a JSON object")
            examples.append(to_example(record, shape, source, line))
        except Malformed as err:
            malformed.append((line, str(err)))
    result = ReadResult(examples, malformed, shape.name if shape else "", encoding)
    check_malformed(path, result, max_bad_fraction)
    return result


def check_malformed(path: Path, result: ReadResult, max_bad_fraction: float) -> None:
    if not result.examples:
        first = f"; line {result.malformed[0][0]}: {result.malformed[0][1]}" if result.malformed else ""
        raise UserError(f"{shown(path)}: no readable records{first}")
    bad = len(result.malformed)
    if bad > max_bad_fraction * result.records:
        line, reason = result.malformed[0]
        raise UserError(
            f"{shown(path)}: {bad} of {result.records} records are malformed ({bad / result.records:.1%}, "
            f"more than data.max_bad_fraction={max_bad_fraction}); first at line {line}: {reason}"
        )


def describe_malformed(path: str | Path, result: ReadResult, shown_lines: int = 5) -> str:
    """One line for the log: how many records were skipped and where the first ones are."""
    first = "; ".join(f"line {line}: {reason}" for line, reason in result.malformed[:shown_lines])
    more = ", ..." if len(result.malformed) > shown_lines else ""
    return f"{shown(path)}: skipped {len(result.malformed)} malformed of {result.records} records ({first}{more})"
