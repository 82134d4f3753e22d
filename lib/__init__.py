"""medqa-scaling: LoRA / QLoRA fine-tuning on Chinese medical QA and how it scales with data.

Data flows one way, one module per stage:

    lib.data      raw -> processed: download or read, clean, split (nested train subsets)
    lib.train     processed -> runs/<run>/adapter: TRL SFTTrainer on the chat template
    lib.evaluate  runs/<run> -> predictions.jsonl, eval.json
    lib.summarize runs -> summary.csv, scaling fits
    lib.figures   summary -> figures;  lib.report  summary -> LaTeX tables and macros

What training costs, beside the stages:

    lib.architecture  the model shapes (Qwen2.5-3B, the demo's tiny one) and their parameter counts
    lib.hardware      MFU and the peak memory a run or benchmark measured
    lib.memory        the peak memory of a training micro-batch, estimated without a GPU
    lib.plan          `python -m lib plan`: that estimate for the grid, beside measured peaks
    lib.bench         the benchmarks, among them bench-gpu (lib.bench.gpu)

`python -m lib <command>` (or `medqa <command>`) is the one entry point; the Makefile calls it.
"""
