"""medqa-scaling: LoRA / QLoRA fine-tuning on Chinese medical QA and how it scales with data.

Data flows one way, one module per stage:

    lib.data      raw -> processed: download or read, clean, split (nested train subsets)
    lib.train     processed -> runs/<run>/adapter: TRL SFTTrainer on the chat template
    lib.evaluate  runs/<run> -> predictions.jsonl, eval.json
    lib.analysis  runs -> summary.csv, scaling fits
    lib.figures   summary -> figures;  lib.report  summary -> LaTeX tables and macros

`python -m lib <command>` (or `medqa <command>`) is the one entry point; the Makefile calls it.
"""
