"""Read a local question-answer file, in any of the shapes common in this field, into examples.

    python -m lib data --profile paper --set data.source=path/to/file.jsonl --out data/processed/paper

Containers: JSON Lines, one JSON array, or CSV/TSV with a header row. Encodings: UTF-8 (with
or without BOM), else GB18030 (a superset of GBK and GB2312, which Chinese CSV files often use):
the one most of the lines with non-ASCII bytes are valid in; a line that is not text in it (a
few lines pasted from a file in another encoding) is a malformed record. Record shapes,
recognised from the fields of the first record:

    alpaca       {"instruction", "input"?, "output", "history"?}   (the shibing624/medical schema)
    pairs        question/answer, query/response, prompt/response, ask/answer (+ "title"), ...
    ShareGPT     {"conversations": [{"from": "human"|"gpt", "value": ...}, ...]}
    messages     {"messages": [{"role": "user"|"assistant", "content": ...}, ...]}

A file whose records use other keys is read through a mapping of its keys to roles
(data.columns; make COLUMNS="question=患者 answer=医生"), named as LLaMA-Factory's dataset_info
names them: question (or prompt), query (appended to the question, as alpaca's input), answer (or
response), history, system (read and dropped, as every record's own system turn); or messages, a
list of turns, with role_tag, content_tag, user_tag, assistant_tag and system_tag naming the
keys and role values of its turns. An unknown shape is one error that lists the shapes known,
says which one the keys are close to (another case, a typo), and shows the mapping that reads it.

A field may hold a string or a list of strings (joined by newlines). Earlier turns, from a
`history` field ([[q, a], ...]) or from several turns of a dialogue, become the example's
history. A record's own system turn is dropped: every split carries data.system_prompt.

A malformed record (a JSON Lines line that is not valid JSON or not an object, a CSV row with the
wrong number of cells, a missing field, a wrong type, bytes of another encoding) is counted and
reported with its line number; more than data.max_bad_fraction of them rejects the file. A
syntax error inside a JSON array, where no parser can find the next record, is one error naming
its line, and so is a CSV file that Python's csv module cannot read. A file of another kind
(multiple-choice items, an unknown shape) is one error that says what was found.

read_records is the reader of both tracks: lib.data.mcq reads multiple-choice files with it.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import io
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lib.config import ANSWER_ROLES, QUESTION_ROLES, TAG_ROLES
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


SHOWN_MALFORMED = 5  # malformed lines named in the log and in reports


@dataclass
class ReadResult:
    examples: list  # Example objects of a question-answer file, item dicts of a multiple-choice file
    malformed: list[tuple[int, str]]  # (line, what is wrong), in file order
    shape: str
    encoding: str
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line, why): well-formed, left out

    @property
    def records(self) -> int:
        return len(self.examples) + len(self.malformed) + len(self.skipped)

    def malformed_examples(self) -> list[dict]:
        """The first malformed lines, for a report."""
        return [{"line": line, "why": why} for line, why in self.malformed[:SHOWN_MALFORMED]]


class Malformed(ValueError):
    """One record that cannot be read; counted, not fatal."""


class Skipped(Exception):
    """One well-formed record that the reader leaves out on purpose; counted apart from malformed
    ones, and part of the records that data.max_bad_fraction is a share of."""


# --- record shapes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FlatShape:
    """A record whose question and answer are fields (title/input add to the question)."""

    name: str
    question: str
    answer: str
    before: str | None = None  # optional field put before the question (a title)
    after: str | None = None  # optional field put after the question (alpaca's input)
    history: str = "history"  # optional field of earlier [question, answer] pairs

    def __str__(self) -> str:  # ReadResult.shape
        return self.name


USER_ROLES = frozenset({"human", "user"})
ASSISTANT_ROLES = frozenset({"gpt", "assistant", "chatgpt", "bot", "model"})
SYSTEM_ROLES = frozenset({"system"})


@dataclass(frozen=True)
class TurnShape:
    """A record holding a list of turns: their role and text keys, and the role values."""

    name: str
    turns: str
    role: str
    text: str
    user_roles: frozenset = USER_ROLES
    assistant_roles: frozenset = ASSISTANT_ROLES
    system_roles: frozenset = SYSTEM_ROLES

    def __str__(self) -> str:  # ReadResult.shape
        return self.name


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
KNOWN_SHAPES = (
    "instruction/input/output (alpaca), question/answer, query/response, prompt/response, "
    "title+ask/answer, conversations (ShareGPT), messages"
)

# A multiple-choice item (CMB, CMExam, MedQA, CMMLU, Apollo): a question, options (one field, or
# CMMLU's columns A, B, C, D) and the answer's letter. Field names are matched lowercased.
# lib.data.mcq reads such items; detect_shape refuses them as question-answer data.
MCQ_QUESTION_FIELDS = ("question",)
MCQ_OPTION_FIELDS = ("option", "options", "choices")
MCQ_ANSWER_FIELDS = ("answer_idx", "answer")  # MedQA's answer_idx is the letter, its answer the text
MCQ_SHAPES = "question, options (or option, choices, or A/B/C/D columns) and answer (or answer_idx)"


def lowered(record: dict) -> dict:
    return {str(key).strip().lower(): value for key, value in record.items()}


def first_field(fields: dict, names: tuple[str, ...]):
    return next((fields[name] for name in names if name in fields), None)


def letter_columns(fields: dict) -> dict:
    """CMMLU's option columns: the fields named by a single letter, A, B, C, ..."""
    return {name.upper(): value for name, value in fields.items() if re.fullmatch(r"[a-z]", name)}


def is_multiple_choice(record: dict) -> bool:
    fields = lowered(record)
    has_options = first_field(fields, MCQ_OPTION_FIELDS) is not None or len(letter_columns(fields)) >= 2
    has_question = first_field(fields, MCQ_QUESTION_FIELDS) is not None
    return has_question and has_options and first_field(fields, MCQ_ANSWER_FIELDS) is not None


def detect_shape(record: dict, where: str, columns: dict[str, str] | None = None) -> FlatShape | TurnShape:
    """The shape of a file from its first record: the one data.columns maps, else a known one."""
    if columns:
        shape = shape_of_columns(columns)
        check_mapped_keys(record, [shape.turns] if isinstance(shape, TurnShape) else [shape.question, shape.answer],
                          where, "data.columns")
        return shape
    fields = set(record)
    if is_multiple_choice(record):
        raise UserError(
            f"{where}: looks like a multiple-choice file (fields: {', '.join(map(str, record))}), not question-answer "
            "pairs; multiple-choice items belong to the knowledge track (eval.mcq_source), not data.source"
        )
    for shape in TURN_SHAPES:
        if shape.turns in fields:
            return shape
    for shape in FLAT_SHAPES:
        if shape.question in fields and shape.answer in fields:
            return shape
    raise UserError(f"{where}: unknown record shape (fields: {', '.join(map(str, record))}); expected {KNOWN_SHAPES}"
                    f"{columns_hint(record)}")


# --- a mapping of a file's own keys: data.columns -------------------------------------------------



def shape_of_columns(columns: dict[str, str]) -> FlatShape | TurnShape:
    """The record shape that data.columns describes; a mapping that names no question and answer
    (or both a dialogue and a pair) is one error."""
    def one_of(roles: tuple[str, ...]) -> str | None:
        given = [role for role in roles if role in columns]
        if len(given) > 1:
            raise UserError(f"data.columns: {' and '.join(given)} are the same role; give one of them")
        return columns[given[0]] if given else None

    name = "columns " + ", ".join(f"{role}={key}" for role, key in columns.items())
    question, answer = one_of(QUESTION_ROLES), one_of(ANSWER_ROLES)
    tags = [role for role in TAG_ROLES if role in columns]
    if "messages" in columns:
        pair = [role for role in (*QUESTION_ROLES, "query", *ANSWER_ROLES, "history") if role in columns]
        if pair:
            raise UserError(f"data.columns: messages holds whole dialogues; {', '.join(pair)} belong to records of "
                            "one question and its answer: give one kind")
        def roles(tag: str, default: frozenset) -> frozenset:
            return frozenset({columns[tag]}) if tag in columns else default

        return TurnShape(name, columns["messages"], columns.get("role_tag", "role"),
                         columns.get("content_tag", "content"), roles("user_tag", USER_ROLES),
                         roles("assistant_tag", ASSISTANT_ROLES), roles("system_tag", SYSTEM_ROLES))
    if tags:
        raise UserError(f"data.columns: {', '.join(tags)} name the keys of the turns of messages; map messages too")
    if question is None or answer is None:
        missing = "question (or prompt)" if question is None else "answer (or response)"
        raise UserError(f"data.columns: no {missing}; map the key of the question and of the answer, "
                        'e.g. COLUMNS="question=患者 answer=医生", or messages=<key> for dialogues')
    return FlatShape(name, question, answer, after=columns.get("query"), history=columns.get("history", "history"))


def check_mapped_keys(record: dict, keys: list[str], where: str, setting: str) -> None:
    """The first record has the keys a mapping (`setting`) names: a typo in it is one error."""
    for key in keys:
        if key not in record:
            close = difflib.get_close_matches(key, list(map(str, record)), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UserError(f"{where}: {setting} names the key {key!r}, which the record lacks "
                            f"(fields: {', '.join(map(str, record))}){hint}")


def close_key(name: str, keys: list[str]) -> str | None:
    """The key of a record that stands for `name`: the same in another case, or a near spelling."""
    lowered_keys = {key.lower(): key for key in keys}
    if name in lowered_keys:
        return lowered_keys[name]
    close = difflib.get_close_matches(name, list(lowered_keys), n=1, cutoff=0.8)
    return lowered_keys[close[0]] if close else None


def columns_hint(record: dict) -> str:
    """What reads a record of unknown shape: the known shape its keys are close to, as a mapping,
    else a mapping of its first two text fields."""
    keys = list(map(str, record))
    for shape in TURN_SHAPES:
        key = close_key(shape.turns, keys)
        if key:
            return f'; did you mean {shape.turns!r} ({shape.name})? COLUMNS="messages={key}" reads it as it is'
    for shape in FLAT_SHAPES:
        question, answer = close_key(shape.question, keys), close_key(shape.answer, keys)
        if question and answer:
            extra = close_key(shape.after, keys) if shape.after else None
            mapping = f"question={question}" + (f" query={extra}" if extra else "") + f" answer={answer}"
            return (f"; did you mean {shape.question}/{shape.answer} ({shape.name})? "
                    f'COLUMNS="{mapping}" reads it as it is')
    texts = [str(key) for key, value in record.items() if isinstance(value, str)][:2]
    example = f"question={texts[0]} answer={texts[1]}" if len(texts) == 2 else "question=<key> answer=<key>"
    return f'; to read it, map its keys: COLUMNS="{example}" (or data.columns in a YAML file)'


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


def history_of(record: dict, name: str = "history") -> list[tuple[str, str]]:
    """The history field: [[question, answer], ...] of earlier turns."""
    history = record.get(name) or []
    if not isinstance(history, list):
        raise Malformed(f"field {name!r} is not a list of [question, answer] pairs")
    turns = []
    for pair in history:
        if not (isinstance(pair, list | tuple) and len(pair) == 2 and all(isinstance(t, str) for t in pair)):
            raise Malformed(f"field {name!r} is not a list of [question, answer] pairs")
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
    return question, text_of(record, shape.answer), history_of(record, shape.history)


def turn_example(record: dict, shape: TurnShape) -> tuple[str, str, list[tuple[str, str]]]:
    turns = record[shape.turns]
    if not isinstance(turns, list) or not all(isinstance(turn, dict) for turn in turns):
        raise Malformed(f"field {shape.turns!r} is not a list of turns")
    dialogue = []  # (is_user, text) without system turns
    for number, turn in enumerate(turns, start=1):
        role = turn.get(shape.role)
        if role in shape.system_roles:
            continue
        if role not in shape.user_roles | shape.assistant_roles:
            raise Malformed(f"turn {number}: unknown role {role!r}")
        dialogue.append((role in shape.user_roles, text_of(turn, shape.text)))
    expected_user = [number % 2 == 0 for number in range(len(dialogue))]
    if not dialogue or len(dialogue) % 2 or [is_user for is_user, _ in dialogue] != expected_user:
        raise Malformed("turns are not user/assistant pairs ending with the assistant")
    texts = [text for _, text in dialogue]
    pairs = list(zip(texts[0::2], texts[1::2], strict=True))
    return pairs[-1][0], pairs[-1][1], pairs[:-1]


def to_example(record: dict, shape: FlatShape | TurnShape, source: str, line: int) -> Example:
    read = turn_example if isinstance(shape, TurnShape) else flat_example
    question, answer, history = read(record, shape)
    return Example(question, answer, history, source, line)


# --- containers --------------------------------------------------------------------------------


# A byte that is not text in the file's encoding, kept by errors="surrogateescape" as U+DC80-U+DCFF.
ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def decode(path: Path) -> tuple[str, str]:
    """The file's text and its encoding: UTF-8 (BOM or not), else GB18030 where most lines with
    non-ASCII bytes are not UTF-8. A line that is not text in that encoding keeps its bytes
    escaped (ESCAPED_BYTE), and the record it belongs to is malformed: a few lines pasted from a
    file in another encoding neither make the whole file unreadable nor make it read as GB18030
    mojibake (GB18030 decodes most UTF-8 text into other characters without an error, whereas
    valid UTF-8 is rare by chance in GB18030 text: so a UTF-8 line in a GB18030 file is one of
    those lines too)."""
    data = path.read_bytes().removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    lines = data.split(b"\n")
    non_ascii = [line for line in lines if not line.isascii()]
    if 2 * sum(map(is_utf8, non_ascii)) > len(non_ascii):
        return data.decode("utf-8", errors="surrogateescape"), "utf-8"
    decoded = [gb18030_line(line) for line in lines]
    if 2 * sum(bool(ESCAPED_BYTE.search(line)) for line in decoded) > len(non_ascii):
        raise UserError(f"{shown(path)}: neither UTF-8 nor GB18030 text; convert it to UTF-8")
    return "\n".join(decoded), "gb18030"


def is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def gb18030_line(line: bytes) -> str:
    """A line of a GB18030 file; a UTF-8 line in it keeps all its non-ASCII bytes escaped."""
    if not line.isascii() and is_utf8(line):
        return line.decode("ascii", errors="surrogateescape")
    return line.decode("gb18030", errors="surrogateescape")


def escaped_bytes(text: str) -> Malformed | None:
    """Malformed where `text` holds bytes that are not text in the file's encoding."""
    return Malformed("bytes that are not text in the file's encoding (a line in another encoding)") \
        if ESCAPED_BYTE.search(text) else None


NESTED_TOO_DEEPLY = "nested too deeply to read"


def parsed(line: str):
    """The JSON value of one line, or Malformed (invalid JSON, too deep, not Unicode)."""
    if problem := escaped_bytes(line):
        return problem
    try:
        return unicode_checked(json.loads(line))
    except json.JSONDecodeError as err:
        return Malformed(f"not valid JSON ({err.msg})")
    except RecursionError:
        return Malformed(NESTED_TOO_DEEPLY)


def unicode_checked(value):
    """`value`, or Malformed where a string in it is not Unicode: a lone surrogate such as
    "\\ud800" is valid JSON, but no UTF-8 file can hold it, so writing the splits would fail."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return escaped_bytes(json.dumps(value, ensure_ascii=False)) \
            or Malformed("a string that is not valid Unicode (a lone surrogate)")
    return value


def jsonl_records(text: str):
    """(line, record or Malformed) for each non-empty line."""
    # Lines end at "\n" only: str.splitlines would also cut at U+2028 and U+0085, which JSON
    # strings may hold unescaped (json.dumps(ensure_ascii=False) writes them so).
    for line_number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            yield line_number, parsed(line)


def json_array_records(text: str, path: Path):
    """(line, record or Malformed) for each item of a top-level JSON array, with the line each
    item starts on. Content after the array's closing bracket is an error naming its line."""
    decoder = json.JSONDecoder()
    line_of = LineCounter(text)
    position = text.index("[") + 1
    while True:
        start = skip_whitespace(text, position)
        if text.startswith("]", start):
            rest = skip_whitespace(text, start + 1)
            if rest < len(text):
                raise UserError(f"{shown(path)}:{line_of(rest)}: content after the end of the JSON array; "
                                "a file holds one array, or one JSON object a line")
            return
        try:
            record, position = decoder.raw_decode(text, start)
            record = unicode_checked(record)
        except json.JSONDecodeError as err:
            raise UserError(f"{shown(path)}:{err.lineno}: not a valid JSON array ({err.msg})") from None
        except RecursionError:  # the item has an end all the same: skip to it and read on
            record, position = Malformed(NESTED_TOO_DEEPLY), container_end(text, start, path, line_of)
        yield line_of(start), record
        position = skip_whitespace(text, position)
        if text.startswith(",", position):
            position += 1
        elif not text.startswith("]", position):
            raise UserError(f"{shown(path)}:{line_of(position)}: not a valid JSON array (expected ',' or ']')")


def container_end(text: str, start: int, path: Path, line_of) -> int:
    """The position after the object or array that starts at `start`, found by counting brackets
    outside strings (no recursion, however deep the nesting)."""
    depth, in_string, escaped = 0, False, False
    for position in range(start, len(text)):
        character = text[position]
        if in_string:
            if escaped:
                escaped = False
            elif character == "\\":
                escaped = True
            elif character == '"':
                in_string = False
        elif character == '"':
            in_string = True
        elif character in "[{":
            depth += 1
        elif character in "]}":
            depth -= 1
            if depth == 0:
                return position + 1
    raise UserError(f"{shown(path)}:{line_of(start)}: not a valid JSON array (an item has no end)")


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


# csv's default limit, 131,072 characters a field, is shorter than some answers; this is the
# largest limit a C long holds on every platform (sys.maxsize overflows it on Windows).
CSV_FIELD_LIMIT = 2**31 - 1


def csv_records(text: str, delimiter: str, path: Path):
    """(line, row as a dict keyed by the header) for each row after the header."""
    csv.field_size_limit(CSV_FIELD_LIMIT)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)  # newline="": csv's own line ends
    try:
        header = [name.strip() for name in next(reader, [])]
        start = reader.line_num + 1
        for row in reader:
            if any(cell.strip() for cell in row):
                if len(row) != len(header):
                    yield start, Malformed(f"{len(row)} columns, the header has {len(header)}")
                elif problem := escaped_bytes("".join(row)):
                    yield start, problem
                else:
                    yield start, dict(zip(header, row, strict=True))
            start = reader.line_num + 1
    except csv.Error as err:  # e.g. a NUL character, which Python before 3.11 refuses
        raise UserError(f"{shown(path)}:{reader.line_num}: not readable as CSV ({err})") from None


def raw_records(text: str, path: Path):
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return csv_records(text, "\t" if suffix == ".tsv" else ",", path)
    if is_json_array(text):
        return json_array_records(text, path)
    return jsonl_records(text)


def is_json_array(text: str) -> bool:
    """A file that starts with "[" is one JSON array, unless its first line is a whole JSON value
    and objects follow one a line: JSON Lines whose first line is a list (counted as malformed)."""
    stripped = text.lstrip()
    if not stripped.startswith("["):
        return False
    first, _, rest = stripped.partition("\n")
    if not rest.lstrip().startswith("{"):
        return True
    try:
        json.loads(first)
    except (json.JSONDecodeError, RecursionError):
        return True
    return False


# --- reading a file ----------------------------------------------------------------------------


def read_examples(path: str | Path, source: str, max_bad_fraction: float,
                  columns: dict[str, str] | None = None) -> ReadResult:
    """Every example of a local question-answer file, its keys mapped by `columns` (data.columns)
    where given; malformed records counted with their lines."""
    return read_records(path, lambda record, where: detect_shape(record, where, columns),
                        lambda record, shape, line: to_example(record, shape, source, line), max_bad_fraction)


def read_records(path: str | Path, detect: Callable[[dict, str], object],
                 convert: Callable[[dict, object, int], object], max_bad_fraction: float) -> ReadResult:
    """Every record of a local file, converted; malformed and skipped ones counted with their lines.

    detect(first JSON object, "<file>:<line>") returns the file's shape (its str() is
    ReadResult.shape) or raises UserError for a file of another kind; convert(record, shape, line)
    returns one item or raises Malformed or Skipped. The file is rejected above max_bad_fraction
    malformed records, and a warning names the first malformed lines.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{shown(path)}: no such file")
    text, encoding = decode(path)
    items, malformed, skipped, shape = [], [], [], None
    for line, record in raw_records(text, path):
        if shape is None and isinstance(record, dict):
            shape = detect(record, f"{shown(path)}:{line}")
        try:
            if isinstance(record, Malformed):
                raise record
            if not isinstance(record, dict):
                raise Malformed(f"a {type(record).__name__}, not a JSON object")
            items.append(convert(record, shape, line))
        except Malformed as err:
            malformed.append((line, str(err)))
        except Skipped as err:
            skipped.append((line, str(err)))
    result = ReadResult(items, malformed, str(shape or ""), encoding, skipped)
    check_malformed(path, result, max_bad_fraction)
    if malformed:
        print(f"warning: {describe_malformed(path, result)}", file=sys.stderr)
    return result


def check_malformed(path: Path, result: ReadResult, max_bad_fraction: float) -> None:
    if not result.examples:
        first = min(result.malformed[:1] + result.skipped[:1], default=None)  # the earlier of the two
        why = f"; line {first[0]}: {first[1]}" if first else ""
        skipped = f" ({len(result.skipped)} skipped)" if result.skipped else ""
        raise UserError(f"{shown(path)}: no usable records{skipped}{why}")
    bad = len(result.malformed)
    if bad > max_bad_fraction * result.records:
        line, reason = result.malformed[0]
        raise UserError(
            f"{shown(path)}: {bad} of {result.records} records are malformed ({bad / result.records:.1%}, "
            f"more than data.max_bad_fraction={max_bad_fraction}); first at line {line}: {reason}"
        )


def describe_malformed(path: str | Path, result: ReadResult) -> str:
    """One line for the log: how many records were malformed and where the first ones are."""
    first = "; ".join(f"line {line}: {reason}" for line, reason in result.malformed[:SHOWN_MALFORMED])
    more = ", ..." if len(result.malformed) > SHOWN_MALFORMED else ""
    return f"{shown(path)}: left out {len(result.malformed)} malformed of {result.records} records ({first}{more})"
