"""Test loss: how likely the model finds the reference answers, on exactly the trained tokens.

Each test conversation is tokenised with the training template and its assistant mask
(lib.prompts.assistant_tokens, the mask SFTTrainer trains on), and the model's negative
log-likelihood is summed over the masked tokens. An item's `loss` is the mean over its own
tokens; the test loss of a run is the token-weighted mean, sum(nll) / sum(tokens), the same
average the training loss uses, and perplexity is exp(test loss).

Only the logits of the answer positions are materialised: with Qwen's 151k vocabulary, logits
for a whole batch of 1,024-token sequences would take 16 x 1024 x 151k x 2 bytes = 5 GB, the
usual "eval OOM" on a 16 GB T4.
"""

from __future__ import annotations

from dataclasses import dataclass

from tqdm import tqdm

from lib.evaluate.generate import left_padded, length_sorted_batches
from lib.prompts import assistant_tokens, loss_template


@dataclass
class ItemLoss:
    nll_sum: float
    tokens: int

    @property
    def loss(self) -> float | None:
        return self.nll_sum / self.tokens if self.tokens else None


def item_losses(model, tokenizer, conversations: list[list[dict]], max_length: int, batch_size: int,
                progress: bool = True) -> list[ItemLoss]:
    """Per conversation: summed NLL and count of its assistant tokens (order preserved)."""
    import torch

    template = loss_template(tokenizer)
    encoded = [assistant_tokens(tokenizer, messages, max_length, template) for messages in conversations]
    results: list[ItemLoss | None] = [None] * len(encoded)
    pad = tokenizer.pad_token_id
    for batch in tqdm(length_sorted_batches([len(ids) for ids, _ in encoded], batch_size),
                      desc="test loss", unit="batch", disable=not progress):
        # Left padding puts every answer at the end, so the logits of the last `keep` positions
        # cover all masked tokens of the batch; real tokens count from position 0, as in training.
        ids, attention, positions = left_padded([encoded[i][0] for i in batch], pad)
        mask = left_padded([encoded[i][1] for i in batch], 0)[0]
        width = ids.shape[1]
        starts = [int(row.nonzero()[0]) for row in mask if row.any()]  # a row may be cut before its answer
        keep = width - min(starts, default=width - 1) + 1
        device = model.device
        with torch.inference_mode():
            logits = model(input_ids=ids.to(device), attention_mask=attention.to(device),
                           position_ids=positions.to(device), logits_to_keep=keep).logits
        # logits[:, j] predicts token width - keep + 1 + j
        targets = ids[:, width - keep + 1:].to(device)
        target_mask = mask[:, width - keep + 1:].to(device).bool()
        for row, index in enumerate(batch):
            nll = torch.nn.functional.cross_entropy(logits[row, :-1].float(), targets[row], reduction="none")
            selected = nll[target_mask[row]]
            results[index] = ItemLoss(nll_sum=float(selected.sum()), tokens=int(target_mask[row].sum()))
    return results
