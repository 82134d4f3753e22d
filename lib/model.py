"""The base model and tokenizer, loaded one way for training, evaluation and chat.

    python -m lib model --profile paper --out models/Qwen--Qwen2.5-3B-Instruct    (make model)

`make model` fetches the base model ahead of training into models/<org>--<name> (from the
Hugging Face hub, honouring HF_ENDPOINT, or from ModelScope with MODEL_SOURCE=modelscope) and
checks that it loads. model.revision (a branch, tag or commit) is resolved to the commit it points
to; origin.json beside the weights records it, and every run's config.json and eval.json copy it.
Afterwards every stage finds that local copy by the hub id in the config, so nothing is downloaded
in the middle of a run. Models load from safetensors only and never
run code shipped with the weights.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lib.errors import UserError
from lib.io import REPO_ROOT, atomic_write, read_json, shown, write_json

MODELS_DIR = REPO_ROOT / "models"
READY_MARKER = ".ready"
ORIGIN_FILE = "origin.json"  # where a fetched model came from: repo, revision asked, commit it resolved to


def local_copy(name_or_path: str) -> Path:
    """Where the model lies on disk: a path is itself (as the Makefile reads it: absolute, ./,
    ../ or models/), a hub id <org>/<name> lives in models/<org>--<name>."""
    if not name_or_path:
        raise UserError("model.name_or_path is empty: name a hub id or a local folder")
    if name_or_path.startswith(("/", "./", "../", "models/")) or Path(name_or_path).is_dir():
        return Path(name_or_path)
    return MODELS_DIR / name_or_path.replace("/", "--")


def model_location(name_or_path: str) -> str:
    """The local copy when there is one, else the hub id (from_pretrained then uses the HF cache)."""
    path = local_copy(name_or_path)
    return str(path) if path.is_dir() else name_or_path


# --- precision and placement -------------------------------------------------------------------


def compute_dtype(setting: str):
    """bf16 where the GPU has it (Ampere+), fp16 on older GPUs (T4, P100, V100), fp32 on CPU."""
    import torch

    if setting != "auto":
        return getattr(torch, setting)
    if not torch.cuda.is_available():
        return torch.float32  # CPUs have no fast half-precision matrix units; fp32 is faster there
    return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16


def dtype_name(dtype) -> str:
    """torch.bfloat16 -> 'bfloat16', as configs and records spell it."""
    return str(dtype).removeprefix("torch.")


def process_state():
    """This process's place among the launched ones (torchrun / accelerate launch set it up).

    On a CPU accelerate counts the processes only when asked with cpu=True, as the Trainer asks
    with use_cpu=True; asking otherwise first would fix the shared state at one process."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def device_map_for_this_process():
    """Each process loads its model onto its own device: data parallelism needs a full copy per
    rank, which device_map="auto" (spreading one model over all GPUs) would break."""
    import torch

    return {"": process_state().local_process_index if torch.cuda.is_available() else "cpu"}


def attention_kernel(setting: str) -> str:
    """The attn_implementation to load with: `setting` itself, or for auto the fastest kernel this
    machine has. Flash attention takes a row of concatenated examples as separate sequences (so
    training can skip padding: lib.train.batching); flash-attention 3 needs Hopper (compute
    capability 9), 2 needs Ampere (8) or newer. The `kernels` package's hub-fetched builds are not
    chosen: a cluster node often cannot reach the hub."""
    if setting != "auto":
        return setting
    import torch

    if not torch.cuda.is_available():
        return "sdpa"
    from transformers.utils import is_flash_attn_2_available, is_flash_attn_3_available

    major, _ = torch.cuda.get_device_capability()
    if major == 9 and is_flash_attn_3_available():
        return "flash_attention_3"
    if major >= 8 and is_flash_attn_2_available():
        return "flash_attention_2"
    return "sdpa"


def quantization_config(config, dtype):
    """NF4 + double quantisation with matrix products in the training dtype (QLoRA), or None."""
    if not config.quantization.load_in_4bit:
        return None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=config.quantization.quant_type,
        bnb_4bit_use_double_quant=config.quantization.double_quant,
        bnb_4bit_compute_dtype=dtype,
    )


def import_bitsandbytes_only_for_4bit(config) -> None:
    """Keep bitsandbytes out of a process that loads no 4-bit model. peft imports it wherever it is
    installed (to recognise its quantised layers), and it imports torch's compiler, torch._inductor:
    a fifth of the imports of a LoRA training or evaluation process (~1.5 of ~7 s of CPU here).
    None in sys.modules makes `import bitsandbytes` fail and importlib.util.find_spec find nothing,
    so peft and transformers take it as not installed. For a process that runs one command only
    (python -m lib): a process that hid it cannot load a 4-bit model later."""
    if not config.quantization.load_in_4bit:
        sys.modules.setdefault("bitsandbytes", None)


# --- loading ------------------------------------------------------------------------------------


def load_tokenizer(config):
    from transformers import AutoTokenizer

    tokenizer = _from_pretrained(AutoTokenizer, config)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(config, dtype, device_map=None):
    """The base model in `dtype`, quantised to 4 bits when the method asks for it."""
    import torch
    from transformers import AutoModelForCausalLM

    quantization = quantization_config(config, dtype)
    # bitsandbytes quantises while placing; and on GPUs every process loads straight onto its own
    # device instead of each building a full copy in host memory first
    if device_map is None and (quantization is not None or torch.cuda.is_available()):
        device_map = device_map_for_this_process()
    return _from_pretrained(
        AutoModelForCausalLM,
        config,
        dtype=dtype,
        attn_implementation=attention_kernel(config.model.attn_implementation),
        quantization_config=quantization,
        device_map=device_map,
        use_safetensors=True,
    )


def load_for_inference(config, adapter_dir: Path | None = None):
    """(tokenizer, model) for evaluation and chat: the base the run was trained on (4-bit for
    QLoRA) with its adapter attached, never merged (merging into a 4-bit base loses quality)."""
    import torch

    if adapter_dir is not None:
        check_adapter_base(adapter_dir, config.model.name_or_path)  # before the minutes of loading the base
    dtype = compute_dtype(config.model.dtype)
    tokenizer = load_tokenizer(config)
    model = load_model(config, dtype, device_map={"": 0} if torch.cuda.is_available() else None)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir))
    model.eval()
    return tokenizer, model


def check_adapter_base(adapter_dir: Path, name_or_path: str) -> None:
    """An adapter is whole, and only makes sense on the base model it was trained on."""
    from lib.runs import ADAPTER_FILES

    adapter_dir = Path(adapter_dir)
    missing = [name for name in ADAPTER_FILES if not (adapter_dir / name).is_file()]
    if missing:
        run = adapter_dir.parent.name
        raise UserError(f"{shown(adapter_dir)}: no complete adapter here ({', '.join(missing)} missing); "
                        f"`make exp-{run}` trains it (again)")
    config_file = adapter_dir / "adapter_config.json"
    # PEFT records the folder the base was loaded from, which moves with a copied results/ tree:
    # the folder's name (models/<org>--<name>, or the demo's tiny-qwen2) identifies the base.
    trained_on = read_json(config_file).get("base_model_name_or_path")
    if trained_on and local_copy(trained_on).name != local_copy(name_or_path).name:
        raise UserError(f"{shown(config_file)}: the adapter was trained on {trained_on}, "
                        f"but the configured base model is {name_or_path}")


def _from_pretrained(auto_class, config, **kwargs):
    name = config.model.name_or_path
    path = local_copy(name)
    local = path.is_dir()
    location = str(path) if local else name
    try:
        return auto_class.from_pretrained(
            location, revision=None if local else config.model.revision, trust_remote_code=False, **kwargs
        )
    except OSError as err:
        raise UserError(_unavailable(name, str(err).splitlines()[0])) from None


def _unavailable(name: str, reason: str) -> str:
    return (f"model {name}: cannot be loaded ({reason}); fetch it where there is network with "
            f"`make model` (it goes to {shown(local_copy(name))}), or use PROFILE=demo for the offline CPU demo")


# --- make model ---------------------------------------------------------------------------------

# Weights as safetensors and the files needed to load them; no pickled .bin weights.
WANTED_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.tiktoken"]


def fetch(name: str, revision: str, out: Path, source: str = "huggingface") -> str | None:
    """Download a model repository into `out` (resumable: a second call reuses what is there);
    the hub commit the revision resolved to (None from ModelScope, which names no commit)."""
    offline_hint = "fetch it on a machine with network and copy models/ over, or use PROFILE=demo"
    if source == "modelscope":
        try:
            from modelscope import snapshot_download as modelscope_download
        except ImportError:
            raise UserError("MODEL_SOURCE=modelscope needs the modelscope package: "
                            "pip install -e '.[modelscope]'") from None
        try:
            modelscope_download(name, revision=None if revision == "main" else revision,
                                local_dir=str(out), allow_patterns=WANTED_FILES)
        except (OSError, ConnectionError) as err:  # requests' network errors derive from OSError
            raise UserError(f"model {name}: could not download from ModelScope ({type(err).__name__}); "
                            f"{offline_hint}") from None
        return None
    from huggingface_hub import HfApi, snapshot_download

    from lib.data.hub import hub_errors

    with hub_errors(f"model {name}@{revision}", "model.name_or_path (MODEL=) and model.revision", offline_hint):
        # a branch such as main moves: resolved once, every file comes from the commit it points to
        # now, which is recorded (a commit given as model.revision resolves to itself)
        resolved = HfApi().resolve_revision(name, revision=revision)
        snapshot_download(name, revision=resolved, local_dir=out, allow_patterns=WANTED_FILES)
    return resolved.resolved


def model_origin(name_or_path: str) -> dict | None:
    """What `make model` recorded of the local copy's origin (origin.json), or None for a model
    not fetched by it (the demo's tiny one, a folder of one's own)."""
    path = local_copy(name_or_path) / ORIGIN_FILE
    return read_json(path) if path.is_file() else None


def verify(out: Path) -> dict:
    """Load the tokenizer and the model from `out` once, so that a broken download fails here."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(out, dtype="auto", trust_remote_code=False, use_safetensors=True)
    return {"parameters": sum(p.numel() for p in model.parameters()), "vocab": len(tokenizer),
            "chat_template": tokenizer.chat_template is not None}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lib.arguments import add_config_arguments

    add_config_arguments(parser, method=False)
    parser.add_argument("--out", type=Path, required=True, help="the local folder, models/<org>--<name>")
    parser.add_argument("--source", choices=["huggingface", "modelscope"], default="huggingface")


def run(args: argparse.Namespace) -> None:
    from lib.arguments import config_from_args

    config = config_from_args(args)
    name = config.model.name_or_path
    commit = fetch(name, config.model.revision, args.out, args.source)
    info = verify(args.out)
    from lib.data.hub import endpoint

    write_json(args.out / ORIGIN_FILE, {"name": name, "source": args.source,
                                        "endpoint": endpoint() if args.source == "huggingface" else None,
                                        "revision": config.model.revision, "commit": commit})
    with atomic_write(args.out / READY_MARKER) as handle:
        handle.write(f"{name} {commit or config.model.revision}\n")
    print(f"model: {name} is ready in {shown(args.out)} ({info['parameters'] / 1e9:.2f}B parameters)")
