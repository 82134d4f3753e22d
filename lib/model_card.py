"""Model cards: README.md with the Hugging Face Hub's YAML front matter above a readable card,
for a run's merged export (results/<profile>/export/<run>/README.md, `make export`) and for its
adapter (results/<profile>/runs/<run>/adapter/README.md, written by `make export` and again
before `make push` uploads the adapter).

The front matter is what the Hub indexes: base_model, library_name, language, license,
datasets, tags and model-index, whose results are the run's test metrics. The body is what a
reader needs before using the model: the data (source, revision, size, cleaning), the training
settings, every metric with its 95% interval beside the untuned base model's, how to load it,
and what it must not be used for. Everything comes from files the study wrote (the run's
config.json and eval.json, results/<profile>/runs/base/eval.json, the processed data's
manifest.json and cleaning_report.json); nothing is typed in by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from lib.config import BASE_RUN
from lib.evaluate.metrics import METRICS
from lib.io import atomic_write, read_json
from lib.model import local_copy
from lib.runs import readable_run_files
from lib.summarize.markdown import markdown_table

MERGED = "merged"
ADAPTER = "adapter"
# A fine-tuned model is bound by its base model's license: "other", linked to the base's LICENSE
# file where the base is a Hub model.
LICENSE = "other"
HUB_LICENSE_LINK = "https://huggingface.co/{base}/blob/main/LICENSE"


@dataclass
class CardInputs:
    """What a run's card is written from; a file that is absent is None (the card says so)."""
    run: str
    config: dict  # the run's config.json: the resolved configuration it was trained with
    evaluation: dict | None  # the run's eval.json
    base_evaluation: dict | None  # results/<profile>/runs/base/eval.json
    manifest: dict | None  # data/processed/<profile>/manifest.json
    cleaning: dict | None  # data/processed/<profile>/cleaning_report.json
    export: dict | None = None  # the merged export's export.json record (merged cards only)

    @property
    def base_model(self) -> str:
        return self.config["model"]["name_or_path"]

    @property
    def quantized(self) -> bool:
        return bool(self.config.get("quantization", {}).get("load_in_4bit"))


def card_inputs(run_dir: Path, data_dir: Path) -> CardInputs:
    run_files = readable_run_files(run_dir, ("config.json", "eval.json"))
    base_files = readable_run_files(run_dir.parent / BASE_RUN, ("eval.json",))
    return CardInputs(
        run=run_dir.name, config=run_files.get("config.json") or {}, evaluation=run_files.get("eval.json"),
        base_evaluation=base_files.get("eval.json"), manifest=optional_json(data_dir / "manifest.json"),
        cleaning=optional_json(data_dir / "cleaning_report.json"))


def optional_json(path: Path) -> dict | None:
    return read_json(path) if path.is_file() else None


def write_card(folder: Path, inputs: CardInputs, kind: str) -> Path:
    path = folder / "README.md"
    with atomic_write(path) as handle:
        handle.write(card_text(inputs, kind))
    return path


def card_text(inputs: CardInputs, kind: str) -> str:
    matter = yaml.safe_dump(front_matter(inputs, kind), allow_unicode=True, sort_keys=False)
    return f"---\n{matter}---\n\n{body(inputs, kind)}"


# --- the front matter ----------------------------------------------------------------------------


def front_matter(inputs: CardInputs, kind: str) -> dict:
    method = inputs.config.get("run", {}).get("method", "lora")
    matter = {
        "base_model": inputs.base_model,
        "base_model_relation": ADAPTER if kind == ADAPTER else "finetune",
        "library_name": "peft" if kind == ADAPTER else "transformers",
        "pipeline_tag": "text-generation",
        "language": ["zh"],
        "license": LICENSE,
    }
    if is_hub_id(inputs.base_model):
        matter["license_name"] = "base-model-license"
        matter["license_link"] = HUB_LICENSE_LINK.format(base=inputs.base_model)
    data = inputs.config.get("data", {})
    if data.get("source") == "hub":
        matter["datasets"] = [data["hub_repo"]]
    matter["tags"] = ["medical", "chinese", "sft", "trl", method] + (["peft"] if kind == ADAPTER else ["merged-lora"])
    if inputs.evaluation:
        matter["model-index"] = [{"name": inputs.run, "results": model_index_results(inputs)}]
    return matter


def is_hub_id(name: str) -> bool:
    """An <org>/<name> id of the Hub, not a local folder (the demo's models/tiny-qwen2)."""
    return local_copy(name) != Path(name)


def model_index_results(inputs: CardInputs) -> list[dict]:
    """The Hub's model-index results: the test metrics on the QA data, and the knowledge track."""
    metrics = inputs.evaluation.get("metrics", {})
    results = [{
        "task": {"type": "text-generation", "name": "Chinese medical question answering"},
        "dataset": {"name": dataset_name(inputs.config), "type": dataset_type(inputs.config), "split": "test"},
        "metrics": [{"type": name, "name": METRICS[name].english, "value": rounded(name, stat["value"])}
                    for name, stat in metrics.items() if name in METRICS and stat.get("value") is not None],
    }]
    overall = (inputs.evaluation.get("mcq") or {}).get("overall")
    if overall and overall.get("value") is not None:
        mcq_name, mcq_type = mcq_dataset(inputs.config)
        results.append({
            "task": {"type": "multiple-choice", "name": "Chinese medical knowledge (multiple choice)"},
            "dataset": {"name": mcq_name, "type": mcq_type, "split": "test"},
            "metrics": [{"type": "accuracy", "name": METRICS["mcq_accuracy"].english,
                         "value": rounded("mcq_accuracy", overall["value"])}],
        })
    return results


def rounded(name: str, value: float) -> float:
    return round(float(value), METRICS[name].decimals)


def dataset_name(config: dict) -> str:
    data = config.get("data", {})
    if data.get("source") == "hub":
        return f"{data['hub_repo']} ({data['hub_file']}, cleaned)"
    if data.get("source") == "synthetic":
        return "synthetic medical QA (lib.data.synthetic)"
    return Path(data.get("source", "local file")).name


def dataset_type(config: dict) -> str:
    data = config.get("data", {})
    return data["hub_repo"] if data.get("source") == "hub" else data.get("source", "local")


def mcq_dataset(config: dict) -> tuple[str, str]:
    """(name, type) of the knowledge track's items: a hub repo, the generated items or a file."""
    evaluation = config.get("eval", {})
    source = evaluation.get("mcq_source", "hub")
    if source == "hub":
        return evaluation.get("mcq_hub_repo", "multiple-choice"), evaluation.get("mcq_hub_repo", "multiple-choice")
    if source == "synthetic":
        return "synthetic multiple-choice items (lib.data.synthetic)", "synthetic"
    return Path(source).name, "local"


# --- the body ------------------------------------------------------------------------------------


def body(inputs: CardInputs, kind: str) -> str:
    sections = [summary_section(inputs, kind), usage_section(inputs, kind), data_section(inputs),
                training_section(inputs), evaluation_section(inputs), intended_use_section()]
    return "\n\n".join(sections) + "\n"


def summary_section(inputs: CardInputs, kind: str) -> str:
    run = inputs.config.get("run", {})
    method = "QLoRA" if inputs.quantized else "LoRA"
    examples = run.get("examples")
    trained = (f"{inputs.base_model} fine-tuned with {method} on {examples:,} Chinese medical question-answer "
               f"pairs" if examples else f"{inputs.base_model} fine-tuned with {method}")
    lines = [f"# {inputs.run} ({'LoRA adapter' if kind == ADAPTER else 'merged model'})", "",
             f"{trained}: run `{inputs.run}` of the medqa-scaling study (data-scaling of LoRA and QLoRA "
             f"fine-tuning), seed {run.get('seed', 'unknown')}."]
    if kind == ADAPTER:
        lines.append("This folder is the adapter alone: load it on the base model with PEFT.")
        if inputs.quantized:
            lines.append("It was trained on the base quantised to 4-bit NF4 (double quantisation) and evaluated "
                         "the same way: load the base in 4 bits to reproduce the evaluated answers.")
    else:
        lines.append("The adapter is merged into the base weights: transformers or vLLM load it alone, "
                     "without PEFT.")
        if inputs.quantized:
            lines.append(f"It was trained as QLoRA (on the base quantised to 4-bit NF4) and merged into the "
                         f"dequantised 16-bit base: the base loaded unquantised in {export_dtype(inputs)} and "
                         "the adapter added to its weights, never into 4-bit weights (which loses quality).")
        lines.append(agreement_sentence(inputs))
    return "\n".join(lines)


def export_dtype(inputs: CardInputs) -> str:
    return (inputs.export or {}).get("dtype", "the compute dtype")


def agreement_sentence(inputs: CardInputs) -> str:
    check = (inputs.export or {}).get("check")
    if not check:
        return "Its answers were not compared with the adapter's."
    return (f"Checked after merging: its greedy answers equal the adapter's on {check['agreeing']} of "
            f"{check['prompts']} test prompts ({check['device']}, {check['dtype']}; export.json).")


def usage_section(inputs: CardInputs, kind: str) -> str:
    system = inputs.config.get("data", {}).get("system_prompt", "")
    max_new_tokens = inputs.config.get("eval", {}).get("max_new_tokens", 512)
    if kind == ADAPTER:
        load = (f"base = AutoModelForCausalLM.from_pretrained(\"{inputs.base_model}\", dtype=\"auto\")\n"
                "model = PeftModel.from_pretrained(base, \"<this folder or repo>\")\n"
                f"tokenizer = AutoTokenizer.from_pretrained(\"{inputs.base_model}\")")
        imports = "from peft import PeftModel\nfrom transformers import AutoModelForCausalLM, AutoTokenizer"
        decoding = (f"output = model.generate(**inputs, do_sample=False, max_new_tokens={max_new_tokens})  "
                    "# the study's greedy decoding")
    else:
        load = ("model = AutoModelForCausalLM.from_pretrained(\"<this folder or repo>\", dtype=\"auto\")\n"
                "tokenizer = AutoTokenizer.from_pretrained(\"<this folder or repo>\")")
        imports = "from transformers import AutoModelForCausalLM, AutoTokenizer"
        decoding = "output = model.generate(**inputs)  # generation_config.json: the study's greedy decoding"
    code = "\n".join([
        imports, "", load,
        f"messages = [{{\"role\": \"system\", \"content\": \"{system}\"}},",
        "            {\"role\": \"user\", \"content\": \"高血压患者能喝咖啡吗？\"}]",
        "inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors=\"pt\", "
        "return_dict=True)",
        decoding,
        "print(tokenizer.decode(output[0, inputs[\"input_ids\"].shape[1]:], skip_special_tokens=True))",
    ])
    served = ("`make serve EXP=<run>` in the study's repository serves it behind an OpenAI-compatible API "
              "(vLLM with the adapter on a GPU, `transformers serve` on the merged model elsewhere). vLLM does "
              "not read greedy decoding from generation_config.json: ask for `temperature=0` "
              f"and `max_tokens={max_new_tokens}` to get the answers the study evaluated.")
    return f"## How to use\n\nThe system prompt below is the one it was trained and evaluated with.\n\n" \
           f"```python\n{code}\n```\n\n{served}"


def data_section(inputs: CardInputs) -> str:
    run = inputs.config.get("run", {})
    lines = ["## Training data", "", f"- Source: {source_text(inputs)}"]
    manifest = inputs.manifest or {}
    train_file = manifest.get("files", {}).get(f"train-{run.get('size')}.jsonl")
    if train_file:
        lines.append(f"- Train subset: train-{run.get('size')}.jsonl, {train_file['count']:,} conversations "
                     f"(sha256 {train_file['sha256'][:12]}), a prefix of one seeded shuffle of the cleaned data")
    if manifest.get("clean_records") is not None:
        lines.append(f"- Cleaned records: {manifest['clean_records']:,}; the test and dev sets are cut first "
                     "and never overlap the training data")
    cleaning = inputs.cleaning
    if cleaning:
        dropped = ", ".join(f"{rule['rule']} {rule['dropped']:,}" for rule in cleaning.get("rules", [])
                            if rule.get("dropped"))
        lines.append(f"- Cleaning: {cleaning.get('input_records', 0):,} raw records in, "
                     f"{cleaning.get('kept', 0):,} kept; dropped by rule: {dropped or 'none'}")
    if not manifest:
        lines.append("- The processed data's manifest.json was not found when this card was written.")
    return "\n".join(lines)


def source_text(inputs: CardInputs) -> str:
    source = (inputs.manifest or {}).get("source") or {}
    if source.get("type") == "hub":
        commit = f", commit {source['commit']}" if source.get("commit") else ""
        return (f"the Hugging Face dataset {source.get('repo')}, file {source.get('file')} at revision "
                f"{source.get('revision')}{commit}; a seeded sample of {source.get('count', 0):,} records")
    if source.get("type") == "synthetic":
        return (f"{source.get('count', 0):,} records generated by lib.data.synthetic (seed {source.get('seed')}): "
                "a demonstration, not medical knowledge")
    if source:
        return f"the local file {source.get('path')} (sha256 {str(source.get('sha256'))[:12]})"
    return dataset_name(inputs.config)


def training_section(inputs: CardInputs) -> str:
    config = inputs.config
    lora, train = config.get("lora", {}), config.get("train", {})
    quantization, resolved = config.get("quantization", {}), config.get("resolved", {})
    origin = resolved.get("model_origin") or {}
    rows = [
        ["base model", inputs.base_model + (f" at commit {origin['commit']}" if origin.get("commit") else "")],
        ["method", "QLoRA" if inputs.quantized else "LoRA"],
        ["LoRA rank / alpha / dropout", f"{lora.get('r')} / {lora.get('alpha')} / {lora.get('dropout')}"],
        ["LoRA target modules", str(lora.get("target_modules"))],
        ["epochs", str(train.get("epochs"))],
        ["learning rate, schedule, warmup", f"{train.get('learning_rate')}, {train.get('lr_scheduler')}, "
                                            f"{train.get('warmup_ratio')}"],
        ["examples per optimizer step", str(train.get("effective_batch_size"))],
        ["max length (tokens)", str(train.get("max_length"))],
        ["compute dtype", str(resolved.get("dtype"))],
        ["loss", "assistant tokens only (TRL SFTTrainer, the model's chat template)"],
        ["seed", str(config.get("run", {}).get("seed"))],
    ]
    if inputs.quantized:
        rows.insert(2, ["4-bit base", f"{quantization.get('quant_type')}, double quantisation "
                                      f"{quantization.get('double_quant')}"])
    return "## Training\n\n" + markdown_table(["setting", "value"], rows) + \
        "\n\nEvery setting is in the run's config.json."


def evaluation_section(inputs: CardInputs) -> str:
    if not inputs.evaluation:
        return "## Evaluation\n\nThis run was not evaluated when the card was written (`make exp-<run>` evaluates it)."
    run_metrics, base_metrics = with_mcq(inputs.evaluation), with_mcq(inputs.base_evaluation)
    rows = [[METRICS[name].english, interval(name, run_metrics[name]), interval(name, base_metrics.get(name))]
            for name in METRICS if name in run_metrics]
    n_items = inputs.evaluation.get("n_items")
    questions = f"{n_items:,} held-out test questions" if n_items else "held-out test questions"
    decoding = (inputs.evaluation.get("generation") or {}).get("decoding") or {}
    base = inputs.base_model + ("" if inputs.base_evaluation else " (not evaluated: make eval-base)")
    return "\n".join([
        "## Evaluation", "",
        f"On the {questions} with greedy decoding (at most {decoding.get('max_new_tokens', '?')} new tokens, "
        f"repetition penalty {decoding.get('repetition_penalty', '?')}); 95% bootstrap intervals over items in "
        f"brackets. The base model is the untuned {base}.", "",
        markdown_table(["metric", inputs.run, "base model"], rows),
    ])


def with_mcq(evaluation: dict | None) -> dict:
    """eval.json's metrics with the knowledge track's accuracy as mcq_accuracy."""
    if not evaluation:
        return {}
    overall = (evaluation.get("mcq") or {}).get("overall")
    return {**evaluation.get("metrics", {}), **({"mcq_accuracy": overall} if overall else {})}


def interval(name: str, stat: dict | None) -> str:
    """'23.4 [21.9, 25.0]' with the metric's decimals; '' where there is no value."""
    if not stat or stat.get("value") is None:
        return ""
    decimals = METRICS[name].decimals
    text = f"{stat['value']:.{decimals}f}"
    if stat.get("ci_low") is not None and stat.get("ci_high") is not None:
        text += f" [{stat['ci_low']:.{decimals}f}, {stat['ci_high']:.{decimals}f}]"
    return text


def intended_use_section() -> str:
    return "\n".join([
        "## Intended use and limitations", "",
        "A research artefact of a study of how fine-tuning data size changes answer quality: for comparing "
        "fine-tuning methods and data sizes, and for reading what such a model writes. It is not a medical "
        "device and was not evaluated for safety with clinicians. It can state wrong diagnoses, doses or "
        "contraindications fluently, and it knows nothing of the person asking.", "",
        "**Medical disclaimer.** Its answers are not medical advice. Do not use them to diagnose, treat or "
        "decide on medication; consult a qualified doctor, and in an emergency call your local emergency number.",
        "", "**医疗免责声明：** 本模型的回答不构成医疗建议，不能用于诊断、治疗或用药决策。"
        "请咨询执业医师；紧急情况请立即拨打急救电话（120）。",
    ])
