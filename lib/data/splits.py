"""Cut the clean examples into fixed test and dev sets and nested train subsets, as chat JSON Lines.

    python -m lib data --profile paper --raw-dir data/raw --out data/processed/paper --sizes 10k 20k 40k 60k

One seeded shuffle of the clean examples decides everything: its first data.test_size examples
are the test set, the next data.dev_size the dev set, and the rest, in that order, the train
pool; train-<size> is the first <size> examples of the pool, so 10k lies inside 20k inside 40k
inside 60k, and test and dev do not depend on the sizes asked for.

A train question that is the same as a test or dev question, or at least
cleaning.near_duplicate_threshold Jaccard-similar to one, is dropped (`overlaps_eval`).
Cleaning has already removed near duplicates, but its LSH misses some pairs near the threshold
to stay fast over the whole data set; this index holds only the test and dev questions, so it
can afford bands that miss such a pair with probability below 1e-6.

A split file is rewritten only when its content changes, so make sees an unchanged mtime and
retrains nothing whose data is the same.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

from lib.config import CleaningConfig, DataConfig, parse_count
from lib.data import write_if_changed
from lib.data.clean import Fingerprint, NearDuplicateIndex, RuleReport, chat_messages
from lib.data.sources import Example
from lib.errors import UserError
from lib.io import jsonl_bytes


@dataclass
class Splits:
    test: list[Example]
    dev: list[Example]
    train: list[Example]  # the pool; train-<size> is its first <size> examples
    overlaps: RuleReport


def cut(examples: list[Example], fingerprints: list[Fingerprint], data: DataConfig,
        cleaning: CleaningConfig) -> Splits:
    """Test, dev and the train pool from one seeded shuffle; train overlaps with test/dev dropped."""
    held_out = data.test_size + data.dev_size
    if len(examples) <= held_out:
        raise UserError(
            f"only {len(examples)} clean examples, not enough for data.test_size={data.test_size} plus "
            f"data.dev_size={data.dev_size} and any training data"
        )
    order = list(range(len(examples)))
    random.Random(data.seed).shuffle(order)
    evaluation = order[:held_out]

    index = NearDuplicateIndex(cleaning, exhaustive=True)
    for position in evaluation:
        index.add(position, fingerprints[position])
    overlaps = RuleReport(
        "overlaps_eval", f"train question equal to a test or dev question, or at least "
        f"{cleaning.near_duplicate_threshold:g} Jaccard-similar to one (exhaustive MinHash LSH)")
    train = []
    for position in order[held_out:]:
        example = examples[position]
        # an equal question has the same MinHash, so it is always a candidate, at similarity 1.0
        similar = index.nearest(fingerprints[position])
        if similar:
            overlaps.drop(example, f"{similar[1]:.2f} similar to test/dev line {examples[similar[0]].line}")
        else:
            train.append(example)
    return Splits(
        test=[examples[p] for p in order[:data.test_size]],
        dev=[examples[p] for p in order[data.test_size:held_out]],
        train=train,
        overlaps=overlaps,
    )


def check_sizes(sizes: list[str], splits: Splits) -> dict[str, int]:
    """{label: examples} for the asked sizes, or a UserError that says which of them fit."""
    counts = {label: parse_count(label) for label in sizes}
    available = len(splits.train)
    too_large = [label for label, count in counts.items() if count > available]
    if too_large:
        overlapping = splits.overlaps.dropped
        clean = len(splits.test) + len(splits.dev) + overlapping + available
        fit = [label for label, count in counts.items() if count <= available]
        raise UserError(
            f"asked for {', '.join(too_large)} train examples but there are {clean} clean examples: "
            f"{len(splits.test)} test + {len(splits.dev)} dev + {overlapping} train questions that overlap "
            f"them (dropped) leave {available} for training; sizes that fit: {', '.join(fit) or 'none'}"
        )
    return counts


def chat_record(example: Example, source_short: str, system_prompt: str) -> dict:
    return {
        "id": f"{source_short}-{example.line}",
        "source": example.source,
        "messages": chat_messages(example, system_prompt),
    }


def render(examples: list[Example], source_short: str, system_prompt: str) -> bytes:
    return jsonl_bytes(chat_record(e, source_short, system_prompt) for e in examples)


def split_files(splits: Splits, sizes: dict[str, int]) -> dict[str, list[Example]]:
    """{file name: examples} of every split file."""
    files = {"test.jsonl": splits.test, "dev.jsonl": splits.dev}
    for label, count in sizes.items():
        files[f"train-{label}.jsonl"] = splits.train[:count]
    return files


def write_splits(out_dir: Path, splits: Splits, sizes: dict[str, int], source_short: str,
                 system_prompt: str) -> dict[str, dict]:
    """Write the split files; return {name: {"count", "sha256", "written"}}."""
    written = {}
    for name, examples in split_files(splits, sizes).items():
        content = render(examples, source_short, system_prompt)
        changed = write_if_changed(out_dir / name, content)
        written[name] = {"count": len(examples), "sha256": hashlib.sha256(content).hexdigest(), "written": changed}
    return written
