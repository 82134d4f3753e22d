"""Download the seed study's raw file from the Hugging Face hub and keep a seeded sample of it.

    python -m lib data --profile paper --raw-dir data/raw --out data/processed/paper
    HF_ENDPOINT=https://hf-mirror.com python -m lib data ...     # through a mirror (mainland China)

The file data.hub_file of the dataset repo data.hub_repo at data.hub_revision (shibing624/
medical, finetune/train_zh_0.json: ~1.95M JSON Lines records) is downloaded by huggingface_hub
into its cache. huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_TOKEN from the environment;
this module passes no endpoint, so they are honoured. A seeded reservoir sample of
data.raw_sample_size lines, in file order, is written once to
<raw-dir>/hub/<repo>/<file>-<revision>-<size>-s<seed>.jsonl with a manifest beside it (repo,
file, revision, resolved commit, counts, sha256). Later runs reuse it without the network.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from lib.config import DataConfig
from lib.data import write_if_changed
from lib.errors import UserError
from lib.io import read_json, sha256_file, shown, write_json


def sample_paths(data: DataConfig, raw_dir: str | Path) -> tuple[Path, Path]:
    """Where the sample and its manifest live."""
    folder = Path(raw_dir) / "hub" / data.hub_repo.replace("/", "__")
    stem = f"{Path(data.hub_file).stem}-{data.hub_revision}-{data.raw_sample_size}-s{data.seed}"
    return folder / f"{stem}.jsonl", folder / f"{stem}.manifest.json"


def fetch_sample(data: DataConfig, raw_dir: str | Path) -> tuple[Path, dict]:
    """The raw sample and its manifest: reused when present, else downloaded and sampled."""
    sample, manifest_path = sample_paths(data, raw_dir)
    if sample.is_file() and manifest_path.is_file():
        manifest = read_json(manifest_path)
        if sha256_file(sample) != manifest["sha256"]:
            raise UserError(
                f"{shown(sample)}: changed since it was sampled (sha256 differs from {shown(manifest_path)}); "
                "raw data is never edited: delete both files to sample again"
            )
        return sample, manifest

    downloaded = download(data)
    lines, total, source_sha256 = reservoir_sample(downloaded, data.raw_sample_size, data.seed)
    content = b"".join(line if line.endswith(b"\n") else line + b"\n" for line in lines)
    write_if_changed(sample, content)
    manifest = {
        **origin(data.hub_repo, data.hub_file, data.hub_revision, downloaded),
        "source_lines": total,
        "source_sha256": source_sha256,
        "seed": data.seed,
        "count": len(lines),
        "path": shown(sample),
        "sha256": hashlib.sha256(content).hexdigest(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_json(manifest_path, manifest)  # last: its presence marks a complete sample
    return sample, manifest


def download(data: DataConfig) -> Path:
    """The seed study's hub file in the local cache (downloaded if needed)."""
    return download_file(data.hub_repo, data.hub_file, data.hub_revision,
                         settings="data.hub_repo, data.hub_file and data.hub_revision",
                         offline_hint="use a local file instead (make data SOURCE=path/to/file.jsonl) "
                                      "or the offline demo (make data PROFILE=demo)")


def download_file(repo: str, filename: str, revision: str, settings: str, offline_hint: str) -> Path:
    """A file of a hub dataset repo in huggingface_hub's cache; failures become one line."""
    import huggingface_hub

    with hub_errors(f"{repo}/{filename}@{revision}", settings, offline_hint):
        return Path(huggingface_hub.hf_hub_download(repo_id=repo, filename=filename, repo_type="dataset",
                                                    revision=revision))


@contextlib.contextmanager
def hub_errors(what: str, settings: str, offline_hint: str):
    """huggingface_hub's failures as one line: what was asked, which settings name it, and how
    to do without the network. Used for data sets and for models alike."""
    import httpx2  # huggingface_hub 2.x's HTTP client: its network errors can escape a download
    from huggingface_hub import errors

    try:
        yield
    except (errors.RepositoryNotFoundError, errors.RevisionNotFoundError, errors.RemoteEntryNotFoundError) as err:
        raise UserError(
            f"{endpoint()}: {what} not found ({type(err).__name__}); check {settings}, and log in "
            "(`hf auth login`) if the repository is gated"
        ) from None
    except (errors.LocalEntryNotFoundError, errors.RevisionResolutionError, errors.OfflineModeIsEnabled,
            httpx2.TransportError, ConnectionError):
        raise UserError(
            f"could not reach the Hugging Face hub at {endpoint()} to download {what}; {offline_hint}, "
            "or set HF_ENDPOINT to a mirror (e.g. HF_ENDPOINT=https://hf-mirror.com)"
        ) from None
    except errors.HfHubHTTPError as err:
        raise UserError(f"{endpoint()}: downloading {what} failed: {str(err).splitlines()[0]}") from None


def endpoint() -> str:
    """The hub address huggingface_hub uses: HF_ENDPOINT when set, else https://huggingface.co."""
    from huggingface_hub import constants

    return constants.ENDPOINT


def origin(repo: str, file: str, revision: str, downloaded: Path) -> dict:
    """Where a downloaded hub file came from, for a manifest."""
    return {"type": "hub", "endpoint": endpoint(), "repo": repo, "file": file, "revision": revision,
            "commit": resolved_commit(downloaded)}


def resolved_commit(path: Path) -> str | None:
    """The commit a cached file belongs to: the cache keeps it as .../snapshots/<commit>/<file>."""
    parts = path.parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts[:-1] else None


def reservoir_sample(path: Path, size: int, seed: int) -> tuple[list[bytes], int, str]:
    """A uniform seeded sample of `size` non-empty lines, in file order; with the line total and
    the file's sha256. Algorithm R: line i (0-based) replaces a random slot with probability
    size / (i + 1), so every line ends up in the sample with probability size / total."""
    rng = random.Random(seed)
    reservoir: list[tuple[int, bytes]] = []
    digest = hashlib.sha256()
    total = 0
    with path.open("rb") as handle:
        for line in tqdm(handle, desc="sample", unit=" lines", disable=None):
            digest.update(line)
            if not line.strip():
                continue
            if total < size:
                reservoir.append((total, line))
            else:
                slot = rng.randrange(total + 1)
                if slot < size:
                    reservoir[slot] = (total, line)
            total += 1
    reservoir.sort()
    return [line for _, line in reservoir], total, digest.hexdigest()
