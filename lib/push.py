"""Upload a run's adapter, or its merged export, to a model repository on the Hugging Face Hub.

    python -m lib push --run-dir results/paper/runs/lora-60k --data data/processed/paper \\
        --repo user/medqa-lora-60k [--export-dir results/paper/export/lora-60k]
    make push EXP=lora-60k REPO=user/medqa-lora-60k           (MERGED=1: the merged model)

The adapter folder goes up with its model card, written again just before (lib.model_card); a
merged model is the folder `make export` wrote, card included, and only while each of its files is
as export.json recorded it (a damaged model is never uploaded). The repository is created when
it does not exist (private with --private). huggingface_hub reads HF_TOKEN (or the token `hf
auth login` saved) and HF_ENDPOINT (a mirror or a private hub) from the environment; nothing
here names an endpoint. Files the Hub needs no copy of stay behind: hidden files (the run's
lock) and the trainer's pickled training_args.bin.
"""

from __future__ import annotations

import argparse
import contextlib
import re
from pathlib import Path

from lib.errors import UserError
from lib.io import shown

REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
LEFT_BEHIND = [".*", "training_args.bin"]


def check_repo_id(repo: str) -> None:
    if not REPO_ID.fullmatch(repo):
        raise UserError(f"REPO={repo!r}: expected <user or organisation>/<name>, e.g. REPO=alice/medqa-lora-60k")


def hub_token() -> str:
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise UserError("no Hugging Face token: set HF_TOKEN to a token with write access "
                        "(https://huggingface.co/settings/tokens) or run `hf auth login`")
    return token


def folder_to_push(run_dir: Path, data_dir: Path, export_dir: Path | None) -> Path:
    """The merged export (as `make export` left it) or the run's adapter with a fresh card."""
    from lib.export import RECORD, check_trained, damage, recorded
    from lib.model_card import ADAPTER, card_inputs, write_card

    check_trained(run_dir)
    if export_dir is not None:
        if not (export_dir / RECORD).is_file():
            raise UserError(f"{shown(export_dir)}: no merged model here; "
                            f"`make export EXP={run_dir.name}` writes it")
        problem = damage(export_dir, (recorded(export_dir) or {}).get("outputs"))
        if problem:  # never upload a damaged model
            raise UserError(f"{shown(export_dir)}: {problem}; `make export EXP={run_dir.name}` makes it again")
        return export_dir
    write_card(run_dir / "adapter", card_inputs(run_dir, data_dir), ADAPTER)
    return run_dir / "adapter"


def push(folder: Path, repo: str, private: bool, what: str) -> str:
    """Create the repository where it is missing and upload `folder` as one commit; returns its URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=hub_token())
    with upload_errors(repo):
        api.create_repo(repo, repo_type="model", private=private, exist_ok=True)
        commit = api.upload_folder(repo_id=repo, repo_type="model", folder_path=folder,
                                   commit_message=f"Upload {what}", ignore_patterns=LEFT_BEHIND)
    return commit.commit_url


@contextlib.contextmanager
def upload_errors(repo: str):
    """huggingface_hub's failures as one line naming the hub and the repository."""
    import httpx2  # huggingface_hub 2.x's HTTP client: its network errors can escape an upload
    from huggingface_hub import errors

    from lib.data.hub import endpoint

    try:
        yield
    except (httpx2.TransportError, ConnectionError):
        raise UserError(f"could not reach the Hugging Face hub at {endpoint()} to push {repo}; "
                        "check the network, or set HF_ENDPOINT to the hub you mean") from None
    except errors.HfHubHTTPError as err:
        raise UserError(f"{endpoint()}: pushing {repo} failed: {str(err).splitlines()[0]} "
                        "(does the token have write access to it?)") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", type=Path, required=True, help="results/<profile>/runs/<run>")
    parser.add_argument("--data", type=Path, required=True, help="the processed data (the adapter's card)")
    parser.add_argument("--repo", required=True, help="the Hub repository, <user or organisation>/<name>")
    parser.add_argument("--export-dir", type=Path,
                        help="push this merged export (results/<profile>/export/<run>) instead of the adapter")
    parser.add_argument("--private", action="store_true", help="create the repository private")


def run(args: argparse.Namespace) -> None:
    check_repo_id(args.repo)
    hub_token()  # before the card is written: a missing token is the likelier mistake
    folder = folder_to_push(args.run_dir, args.data, args.export_dir)
    what = f"{args.run_dir.name} ({'merged model' if args.export_dir else 'LoRA adapter'})"
    url = push(folder, args.repo, args.private, what)
    print(f"push: {shown(folder)} -> {url}")
