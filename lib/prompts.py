"""Chat formatting shared by training, evaluation and chat: one rendering of every conversation.

A processed record holds `messages`: the system prompt, earlier turns, the question and the
reference answer last. Training renders all of it with the model's own chat template and learns
the assistant turns; evaluation renders everything but the last answer with the generation
prompt (`<|im_start|>assistant\\n`) and lets the model write it. Both go through the tokenizer's
template, so the model sees at inference exactly the text it was trained on.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from lib.errors import UserError
from lib.io import numbered_jsonl, shown


def conversations(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, record) of a split, each record checked to hold a `messages` list."""
    for line_number, record in numbered_jsonl(path):
        if not isinstance(record.get("messages"), list):
            raise UserError(f"{shown(path)}:{line_number}: the record has no `messages` list")
        yield line_number, record


def prompt_messages(messages: list[dict], where: str = "a record") -> list[dict]:
    """The conversation up to the answer to write: all messages but the final assistant one."""
    if not messages or messages[-1].get("role") != "assistant":
        raise UserError(f"{where}: `messages` must end with the assistant's reference answer")
    return messages[:-1]


def question_of(messages: list[dict]) -> str:
    return next(m["content"] for m in reversed(messages) if m["role"] == "user")


def render_prompt(tokenizer, messages: list[dict]) -> str:
    """The prompt text ending with the assistant header, as the chat template writes it."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def loss_template(tokenizer) -> str:
    """The template whose {% generation %} markers define the trained tokens.

    SFTTrainer uses the tokenizer's own template when it has the markers (the tiny model) and
    otherwise TRL's training variant of it (Qwen2.5-Instruct); the test loss must use the same.
    """
    from trl.chat_template_utils import get_training_chat_template

    return get_training_chat_template(tokenizer) or tokenizer.chat_template


def assistant_tokens(tokenizer, messages: list[dict], max_length: int | None, template: str) -> tuple[list, list]:
    """Token ids of a whole conversation and its mask of assistant tokens (the training mask),
    cut to `max_length` from the start as SFTTrainer does (truncation_mode="keep_start")."""
    encoded = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, chat_template=template
    )
    ids, mask = list(encoded["input_ids"]), list(encoded["assistant_masks"])
    return (ids[:max_length], mask[:max_length]) if max_length else (ids, mask)


def end_of_turn_ids(tokenizer, model) -> list[int]:
    """Token ids that end an answer: the generation config's eos ids plus <|im_end|>.

    A fine-tuned Qwen that never stops is the usual symptom of generating with only
    <|endoftext|> as eos while the template ends turns with <|im_end|>.
    """
    configured = model.generation_config.eos_token_id
    ids = set(configured if isinstance(configured, list) else [configured] if configured is not None else [])
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if im_end is not None and im_end != tokenizer.unk_token_id:
        ids.add(im_end)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return sorted(ids)
