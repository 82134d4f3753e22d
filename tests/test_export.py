"""make export: the merged model loads with transformers alone and answers like the adapter, its
generation config is the study's greedy decoding, QLoRA is merged into the dequantised 16-bit
base, the folder is replaced atomically, a user's files in it are never deleted, a damaged export
is made again, and bad runs, a second export at once and a read-only folder get one line."""

from __future__ import annotations

import shutil

import pytest
import yaml

from builders import demo_config, quick_learning_overrides, run_unprivileged, write_run
from lib.errors import UserError
from lib.export import RECORD, check_trained, export, first_test_questions, greedy_answers, load_exported
from lib.io import lock_if_free, read_json, sha256_file, write_json

pytestmark = pytest.mark.slow


def front_matter(path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8").split("---\n")[1])


def test_the_export_loads_without_peft_and_answers_like_the_adapter(lora_export, lora_run, tiny_model, demo_data):
    from lib.evaluate.generate import study_decoding
    from lib.model import load_for_inference

    names = {path.name for path in lora_export.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "README.md",
            RECORD} <= names
    assert not names & {"adapter_config.json", "adapter_model.safetensors"}  # a plain model: no PEFT
    assert not [p for p in lora_export.parent.iterdir() if p.is_dir() and p.name.startswith(".")]  # no temporary one

    config = demo_config(tiny_model)
    tokenizer, model = load_exported(lora_export)
    assert tokenizer.chat_template  # the template it was trained with travels with it
    adapter_tokenizer, adapter_model = load_for_inference(config, lora_run / "adapter")
    # generation_config.json is the study's greedy decoding, not the base model's file
    expected = study_decoding(config, adapter_tokenizer, adapter_model).generation_config().to_dict()
    assert {k: v for k, v in model.generation_config.to_dict().items() if k != "transformers_version"} == \
        {k: v for k, v in expected.items() if k != "transformers_version"}

    prompts = first_test_questions(demo_data / "test.jsonl", 32)  # the whole test set: some answers have text
    merged = greedy_answers(config, tokenizer, model, prompts)
    assert merged == greedy_answers(config, adapter_tokenizer, adapter_model, prompts)
    assert any(merged)  # after a few steps the run ends most answers at once; some are text
    check = read_json(lora_export / RECORD)["check"]
    assert check == check | {"prompts": 8, "agreeing": 8, "exact_required": True, "device": "cpu", "dtype": "float32"}

    matter = front_matter(lora_export / "README.md")
    assert matter["library_name"] == "transformers" and matter["base_model"] == str(tiny_model)
    assert front_matter(lora_run / "adapter" / "README.md")["library_name"] == "peft"


def test_an_unchanged_export_is_left_as_it_is(lora_export, lora_run, tiny_model, demo_data, capsys):
    before = (lora_export / "model.safetensors").stat().st_mtime_ns
    export(demo_config(tiny_model), lora_run, demo_data, lora_export)
    assert "is up to date" in capsys.readouterr().out
    assert (lora_export / "model.safetensors").stat().st_mtime_ns == before


def test_qlora_is_merged_into_the_dequantised_16_bit_base(lora_run, tiny_model, demo_data, tmp_path):
    """The LoRA run stands in for a QLoRA one (its config.json says 4-bit): what is checked is how
    a 4-bit run is merged."""
    run_dir = tmp_path / "runs" / "qlora-64"
    shutil.copytree(lora_run, run_dir, ignore=shutil.ignore_patterns("checkpoints", "tensorboard"))
    run_config = read_json(run_dir / "config.json")
    run_config["quantization"]["load_in_4bit"] = True
    write_json(run_dir / "config.json", run_config)
    out = tmp_path / "export" / "qlora-64"
    record = export(demo_config(tiny_model, "qlora"), run_dir, demo_data, out, check_prompts=4)
    assert record["method"] == "qlora" and record["merged_into"] == "the dequantised 16-bit base"
    assert "quantization_config" not in read_json(out / "config.json")
    assert record["dtype"] == "float32" and not record["check"]["exact_required"]
    assert 0 <= record["check"]["agreeing"] <= 4  # the 4-bit adapter's answers may differ: recorded, not required
    _, model = load_exported(out)
    assert all(p.dtype.is_floating_point and p.dtype.itemsize >= 2 for p in model.parameters())
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "dequantised 16-bit base" in card and f"on {record['check']['agreeing']} of 4 test prompts" in card


def test_a_failed_check_leaves_the_previous_export_in_place(lora_export, lora_run, tiny_model, demo_data,
                                                            tmp_path, monkeypatch):
    import lib.export

    out = tmp_path / "export" / "lora-64"
    shutil.copytree(lora_export, out)
    (out / RECORD).write_text("{}", encoding="utf-8")  # an out-of-date record: the export is redone
    monkeypatch.setattr(lib.export, "compare_with_adapter", lambda *args: {
        "prompts": 2, "agreeing": 1, "differing_ids": ["test-1"], "exact_required": True})
    with pytest.raises(RuntimeError, match="differ from the adapter's on test-1"):
        export(demo_config(tiny_model), lora_run, demo_data, out, check_prompts=2)
    assert (out / RECORD).read_text(encoding="utf-8") == "{}"
    assert sorted(p.name for p in out.parent.iterdir() if not p.name.endswith(".lock")) == ["lora-64"]


def stale_copy(lora_export, out):
    """A copy of the export whose record's inputs no longer match: the next export redoes it."""
    shutil.copytree(lora_export, out)
    record = read_json(out / RECORD)
    record["inputs"]["check_prompts"] = 1
    write_json(out / RECORD, record)
    return out


def test_files_of_the_user_in_the_export_folder_are_never_deleted(lora_export, lora_run, tiny_model, demo_data,
                                                                 tmp_path):
    out = stale_copy(lora_export, tmp_path / "export" / "lora-64")
    (out / "notes.txt").write_text("my notes", encoding="utf-8")
    (out / "gguf").mkdir()
    with pytest.raises(UserError, match=r"lora-64: holds gguf, notes.txt, which the export did not write; "
                                        "the export replaces this folder whole, so move them elsewhere"):
        export(demo_config(tiny_model), lora_run, demo_data, out)
    assert (out / "notes.txt").read_text(encoding="utf-8") == "my notes" and (out / "gguf").is_dir()

    mine = tmp_path / "mine"  # --out pointing at a folder no export made: anything in it is the user's
    mine.mkdir()
    (mine / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(UserError, match="mine: holds config.json, which the export did not write"):
        export(demo_config(tiny_model), lora_run, demo_data, mine)
    assert (mine / "config.json").read_text(encoding="utf-8") == "{}"


@pytest.mark.parametrize("harm", ["truncate the weights", "delete config.json", "change a byte"])
def test_a_damaged_export_is_made_again(harm, lora_export, lora_run, tiny_model, demo_data, tmp_path, capsys):
    out = tmp_path / "export" / "lora-64"
    shutil.copytree(lora_export, out)
    weights = out / "model.safetensors"
    if harm == "truncate the weights":
        with weights.open("r+b") as handle:
            handle.truncate(weights.stat().st_size // 2)
    elif harm == "delete config.json":
        (out / "config.json").unlink()
    else:
        data = bytearray(weights.read_bytes())
        data[-1] ^= 1
        weights.write_bytes(bytes(data))
    record = export(demo_config(tiny_model), lora_run, demo_data, out)
    said = capsys.readouterr().out
    assert "exporting again" in said and "is up to date" not in said
    assert {name: sha256_file(out / name) for name in record["outputs"]} == \
        {name: entry["sha256"] for name, entry in record["outputs"].items()}
    assert {"model.safetensors", "config.json", "README.md", "tokenizer.json"} <= set(record["outputs"])
    load_exported(out)


def test_a_second_export_of_the_run_at_once_stops_with_one_line(lora_export, lora_run, tiny_model, demo_data,
                                                                 tmp_path):
    out = stale_copy(lora_export, tmp_path / "export" / "lora-64")
    with lock_if_free(out.parent / f".{out.name}.lock") as held:  # as an export in progress holds it
        assert held is not None
        with pytest.raises(UserError, match=r"an export of lora-64 is already in progress \(pid \d+"):
            export(demo_config(tiny_model), lora_run, demo_data, out)


def test_a_read_only_export_folder_is_one_line(lora_export, lora_run, tiny_model, demo_data, tmp_path):
    export_dir = tmp_path / "export"
    stale_copy(lora_export, export_dir / "lora-64")
    export_dir.chmod(0o555)
    try:
        settings = [f"--set={setting}" for setting in quick_learning_overrides(tiny_model)]
        finished = run_unprivileged("export", "--profile", "demo", "--method", "lora", *settings, "--run-dir",
                                    lora_run, "--data", demo_data, "--out", export_dir / "lora-64")
    finally:
        export_dir.chmod(0o755)
    assert finished.returncode == 2 and finished.stderr.count("\n") == 1, finished.stderr[-2000:]
    assert finished.stderr == (f"error: cannot write {export_dir}/.lora-64.lock: Permission denied; make its folder "
                               "writable, or write elsewhere (DATA_DIR=, RESULTS_DIR=)\n")


def test_runs_that_cannot_be_exported_get_one_line_saying_what_to_do(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "lora-150", [1.0])
    with pytest.raises(UserError, match=r"lora-9: no such run \(runs there: lora-150\); `make exp-lora-9` trains it"):
        check_trained(runs / "lora-9")
    (runs / "lora-150" / "train.done").unlink()
    with pytest.raises(UserError, match="training has not finished .*`make exp-lora-150`"):
        check_trained(runs / "lora-150")
    (runs / "lora-150" / "train.done").write_text("")
    (runs / "lora-150" / "adapter" / "adapter_model.safetensors").unlink()
    with pytest.raises(UserError, match="adapter_model.safetensors missing; `make exp-lora-150` trains it again"):
        check_trained(runs / "lora-150")
    with pytest.raises(UserError, match="EXP=base: the untuned model has no adapter"):
        check_trained(runs / "base")


def test_make_export_names_an_unknown_run_in_one_line(run_cli, tmp_path):
    finished = run_cli("export", "--profile", "demo", "--method", "lora", "--run-dir", tmp_path / "runs" / "lora-9",
                       "--data", tmp_path, "--out", tmp_path / "export" / "lora-9")
    assert finished.returncode == 2
    assert finished.stderr.strip().count("\n") == 0 and "`make exp-lora-9` trains it" in finished.stderr
