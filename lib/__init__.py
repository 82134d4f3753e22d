"""medqa-scaling: LoRA / QLoRA fine-tuning on Chinese medical QA and how it scales with data.

`python -m lib <command>` (or `medqa <command>`) is the one entry point: lib/cli.py runs the
module this map names for each command, and the Makefile (the study; make/*.mk: the rest) calls
it. Data flows one way: raw -> processed -> runs -> summary -> figures and tables -> paper.

The modules in layers, lowest first: a module imports from its own layer and those before it,
never from a later one (tests/test_layout.py holds this order and checks every import, those
inside functions too). Layer, module, its command, the make targets that run it:

  foundation   lib/errors.py, lib/io.py (atomic files, provenance), lib/hardware.py (the machine, MFU,
               peak memory), lib/versions.py, lib/config.py (experiments/*.yaml -> Config),
               lib/arguments.py (the options commands share), lib/stats.py, lib/tex.py, lib/fonts.py,
               lib/prompts.py (the chat template), lib/architecture.py (model shapes),
               lib/memory.py (the memory of training, estimated without a GPU)
  records      lib/runs.py (a run folder and its status), lib/evaluate/metrics.py (the metric registry)
  data         lib/data/prepare.py       `data`            `make data` (reading sources.py, clean.py,
               lib/data/mcq.py           `mcq-data`        splits.py, the hub hub.py, synthetic.py)
  model        lib/model.py              `model`           `make model`
               lib/tiny_model.py         `tiny-model`      `make tiny-model`
               lib/standin.py (the Qwen2.5 stand-in that gpu-check trains)
  train        lib/train.py              `train`           `make train-<run>`, `make exp-<run>`
  evaluate     lib/evaluate/run.py       `evaluate`        `make eval-<run>`, `make all-experiments`
               (generate.py, likelihood.py, multiple_choice.py, judge.py)
  summarize    lib/summarize/            `summarize`       `make summary` (its files' shapes: schema.py)
  figures,     lib/figures.py            `figures`         `make figures`
  report       lib/report/write.py       `report`          `make report` (lib/report/sections/: a section each)
  paper        lib/paper.py              `paper`           `make paper`, `make tex`, `make setup-tex`, `make demo`
  using a run  lib/chat.py               `chat`            `make chat`
               lib/export.py             `export`          `make export` (the model card: model_card.py)
               lib/push.py               `push`            `make push`
               lib/serve.py              `serve`           `make serve` (serve_transformers.py)
               lib/review/command.py     `review`          `make review`, `make review-invite`,
                                                           `make review-export`, `make review-judge`
  operations   lib/gpus.py               `on-free-gpu`     `make -jN all-experiments GPUS="0 1"`
               lib/slurm.py              `submit`          `make submit`
               lib/make_variables.py     `check-variables` every make call given a variable
               lib/wheelhouse.py         `wheelhouse`      `make wheelhouse`, `make setup-wheelhouses`
               lib/config_cli.py         `config`
  bench        lib/bench/summary.py      `bench-summary`   `make bench`
               lib/bench/data.py         `bench-data`      `make bench-data`
               lib/bench/collation.py    `bench-collation` `make bench-collation`
               lib/bench/generation.py   `bench-generation` `make bench-generation`
               lib/bench/demo.py         `bench-demo`      `make bench-demo`
               lib/bench/gpu.py          `bench-gpu`       `make bench-gpu`
               lib/bench/gpu_check.py    `gpu-check`       `make gpu-check`
               lib/plan.py               `plan`            `make plan`
  entry point  lib/cli.py, lib/__main__.py

Make targets without a command of their own: `make help`, `make vars`, `make clean-data`,
`make clean-runs` (make/help.mk); `make setup`, `make setup-browser`, `make setup-slurm`,
`make test`, `make test-fast`, `make lint` (make/setup.mk).

The repository's folders: make/ (the Makefile's included files), experiments/ (the configuration),
lib/ (this package: lib/data/, lib/evaluate/, lib/summarize/, lib/report/, lib/review/,
lib/bench/), data/ (raw and processed), models/ (base models), results/ (runs, summaries, figures,
benchmarks), paper/ (the report), docs/ (extending.md), tests/ (mirroring lib/), .ci/ (what CI runs).
"""
