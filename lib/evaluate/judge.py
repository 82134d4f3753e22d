"""The optional LLM judge: an OpenAI-compatible chat endpoint scores each answer from 1 to 5.

    export MEDQA_JUDGE_BASE_URL=https://api.deepseek.com/v1    # the part before /chat/completions
    export MEDQA_JUDGE_API_KEY=...                             # optional for a local server
    export MEDQA_JUDGE_MODEL=deepseek-chat
    python -m lib evaluate ... --set eval.judge=true           (make eval-<run> SET="eval.judge=true")

Off by default (eval.judge: false): it costs API calls, and its scores come from a model outside
the study. For each test item the judge reads the rubric in lib/evaluate/judge_rubric.md with the
question, the reference answer and the model's answer filled in, and replies with
{"accuracy": 1-5, "helpfulness": 1-5, "safety": 1-5}.

- Requests: POST <base url>/chat/completions with temperature 0, through urllib (no dependency),
  eval.judge_concurrency at a time. 408, 409, 429, 5xx and connection errors are tried ATTEMPTS = 5
  times in all (four retries, waiting 1, 2, 4, 8 s, or the server's Retry-After); other 4xx
  errors stop the run.
- Cache: every reply is appended to the run's judge_cache.jsonl as {"key", "reply"}, key = sha256
  of the judge model and the filled-in rubric (so of the rubric, question, reference and answer).
  A rerun sends only what the cache lacks: an interrupted run continues (a last line cut short
  is asked again, lib.io.read_log), a finished one costs nothing. Replies are kept as text and
  parsed on every use.
- A reply without a JSON object holding the three integer scores is counted as malformed and
  left out of the means, never fatal.
- The API key goes into the Authorization header and nowhere else: not into the cache, eval.json,
  the log or an error message (server messages are shown with the key masked).

`judge_predictions` returns {"metrics": {"judge_accuracy", "judge_helpfulness", "judge_safety":
bootstrap results over the scored items}, "counts": {...}, "model", "endpoint", "rubric_sha256"}.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from lib.errors import UserError
from lib.io import jsonl_bytes, read_log, shown
from lib.stats import BOOTSTRAP_SEED, bootstrap

RUBRIC_PATH = Path(__file__).with_name("judge_rubric.md")
SCORE_NAMES = ("accuracy", "helpfulness", "safety")
ENV_BASE_URL, ENV_API_KEY, ENV_MODEL = "MEDQA_JUDGE_BASE_URL", "MEDQA_JUDGE_API_KEY", "MEDQA_JUDGE_MODEL"
ATTEMPTS = 5
MAX_WAIT_S = 60.0
TIMEOUT_S = 120.0
RETRIED_STATUS = {408, 409, 429}  # and every 5xx


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    def masked(self, text: str) -> str:
        """`text` with the key masked, for anything shown to the user."""
        return text.replace(self.api_key, "***") if self.api_key else text


def endpoint_from_environment() -> Endpoint:
    missing = [name for name in (ENV_BASE_URL, ENV_MODEL) if not os.environ.get(name)]
    if missing:
        raise UserError(f"eval.judge is on but {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set; "
                        f"point {ENV_BASE_URL}, {ENV_MODEL} (and {ENV_API_KEY}) at an OpenAI-compatible endpoint, "
                        "or turn the judge off with eval.judge=false")
    base_url = os.environ[ENV_BASE_URL]
    if not base_url.startswith(("http://", "https://")):
        raise UserError(f"{ENV_BASE_URL}={base_url!r}: expected an http:// or https:// address, "
                        "e.g. https://api.openai.com/v1")
    return Endpoint(base_url, os.environ[ENV_MODEL], os.environ.get(ENV_API_KEY) or None)


# --- prompts and replies -----------------------------------------------------------------------


def fill_rubric(rubric: str, prediction: dict) -> str:
    # replace(), not format(): the rubric shows a JSON object, whose braces format() would take
    return (rubric.replace("{{question}}", prediction["question"])
            .replace("{{reference}}", prediction["reference"])
            .replace("{{answer}}", prediction["prediction"]))


def cache_key(model: str, prompt: str) -> str:
    return hashlib.sha256(json.dumps([model, prompt], ensure_ascii=False).encode("utf-8")).hexdigest()


def parse_scores(reply: str) -> dict | None:
    """{"accuracy", "helpfulness", "safety"} from a reply, or None when it holds no JSON object
    with the three scores as integers 1-5 (a ```json fence or words around it are fine)."""
    for candidate in (reply.strip(), *re.findall(r"\{[^{}]*\}", reply)):
        try:
            scores = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(scores, dict) and all(
                type(scores.get(name)) is int and 1 <= scores[name] <= 5 for name in SCORE_NAMES):
            return {name: scores[name] for name in SCORE_NAMES}
    return None


# --- requests ----------------------------------------------------------------------------------


class Retryable(Exception):
    def __init__(self, reason: str, wait_s: float | None = None):
        super().__init__(reason)
        self.wait_s = wait_s


def request_once(endpoint: Endpoint, prompt: str) -> str:
    """One chat completion; returns the reply text (or the raw body when it has none)."""
    body = {"model": endpoint.model, "messages": [{"role": "user", "content": prompt}], "temperature": 0}
    headers = {"Content-Type": "application/json"}
    if endpoint.api_key:
        headers["Authorization"] = f"Bearer {endpoint.api_key}"
    request = urllib.request.Request(endpoint.url, data=json.dumps(body, ensure_ascii=False).encode("utf-8"),
                                     headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            text = response.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as err:
        detail = endpoint.masked(err.read().decode("utf-8", errors="replace")[:200].replace("\n", " "))
        if err.code in RETRIED_STATUS or err.code >= 500:
            raise Retryable(f"HTTP {err.code}", retry_after(err.headers.get("Retry-After"))) from None
        raise UserError(f"judge endpoint {endpoint.url}: HTTP {err.code} {err.reason} ({detail}); check "
                        f"{ENV_BASE_URL}, {ENV_MODEL} and {ENV_API_KEY}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        raise Retryable(endpoint.masked(str(getattr(err, "reason", err)))) from None
    try:
        return json.loads(text)["choices"][0]["message"]["content"]
    except (json.JSONDecodeError, KeyError, IndexError, TypeError):
        return text  # kept as the reply: parse_scores counts it as malformed


def retry_after(header: str | None) -> float | None:
    try:
        return min(float(header), MAX_WAIT_S) if header is not None else None
    except ValueError:
        return None  # an HTTP date instead of seconds: use the backoff


def request_with_retries(endpoint: Endpoint, prompt: str, backoff_s: float) -> str:
    """The reply, after up to ATTEMPTS tries spaced backoff_s x 1, 2, 4, ... (or Retry-After)."""
    attempt = 0
    while True:
        try:
            return request_once(endpoint, prompt)
        except Retryable as err:
            attempt += 1
            if attempt == ATTEMPTS:
                raise UserError(f"judge endpoint {endpoint.url}: still failing after {ATTEMPTS} attempts "
                                f"({err}); replies so far are cached, run again to continue") from None
            time.sleep(err.wait_s if err.wait_s is not None else min(backoff_s * 2 ** (attempt - 1), MAX_WAIT_S))


# --- the cache -----------------------------------------------------------------------------------


def read_cache(path: Path) -> dict[str, str]:
    """{key: reply} of earlier requests; a line cut short by an interruption is left out (re-asked)."""
    return {entry["key"]: entry["reply"] for entry in read_log(path)
            if isinstance(entry, dict) and {"key", "reply"} <= entry.keys()}


def ends_mid_line(path: Path) -> bool:
    """Whether the file's last line has no newline (an append was cut short)."""
    with path.open("rb") as handle:
        if handle.seek(0, os.SEEK_END) == 0:
            return False
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) != b"\n"


# --- all predictions -------------------------------------------------------------------------------


def judge_predictions(predictions: list[dict], cache_path: str | Path, n_samples: int = 1_000,
                      seed: int = BOOTSTRAP_SEED, concurrency: int = 4, backoff_s: float = 1.0,
                      progress: bool = True) -> dict:
    """Judge every prediction ({"question", "reference", "prediction"}), asking the endpoint only
    for what the cache lacks; the three scores with bootstrap intervals over scored items."""
    endpoint = endpoint_from_environment()
    rubric = RUBRIC_PATH.read_text(encoding="utf-8")
    cache_path = Path(cache_path)
    prompts = [fill_rubric(rubric, prediction) for prediction in predictions]
    keys = [cache_key(endpoint.model, prompt) for prompt in prompts]
    replies = read_cache(cache_path)
    missing = {key: prompt for key, prompt in zip(keys, prompts) if key not in replies}
    if missing:
        ask(endpoint, missing, replies, cache_path, concurrency, backoff_s, progress)

    scores = [parse_scores(replies[key]) for key in keys]
    scored = [s for s in scores if s is not None]
    counts = {"items": len(predictions), "scored": len(scored), "malformed": len(scores) - len(scored),
              "requested": len(missing), "from_cache": len(predictions) - len(missing)}
    print(f"judge: {counts['scored']} of {counts['items']} answers scored by {endpoint.model} "
          f"({counts['requested']} requests, {counts['malformed']} malformed replies; cache {shown(cache_path)})")
    return {
        "metrics": {f"judge_{name}": bootstrap([s[name] for s in scored], n_samples=n_samples, seed=seed)
                    for name in SCORE_NAMES},
        "counts": counts,
        "model": endpoint.model,
        "endpoint": endpoint.masked(endpoint.base_url),
        "rubric_sha256": hashlib.sha256(rubric.encode("utf-8")).hexdigest(),
    }


def ask(endpoint: Endpoint, prompts: dict[str, str], replies: dict[str, str], cache_path: Path,
        concurrency: int, backoff_s: float, progress: bool) -> None:
    """Send the requests, `concurrency` at a time, appending each reply to the cache as it comes."""
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    with cache_path.open("ab") as cache, ThreadPoolExecutor(max_workers=concurrency) as pool:
        if ends_mid_line(cache_path):
            cache.write(b"\n")  # after a line cut short, the next reply must start a line of its own
        futures = {pool.submit(request_with_retries, endpoint, prompt, backoff_s): key
                   for key, prompt in prompts.items()}
        try:
            for future in tqdm(as_completed(futures), total=len(futures), desc="judge", unit="answer",
                               disable=not progress):
                key = futures[future]
                replies[key] = future.result()
                cache.write(jsonl_bytes([{"key": key, "reply": replies[key]}]))
                cache.flush()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
