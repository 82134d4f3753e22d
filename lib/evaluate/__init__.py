"""Evaluation of a run: generated answers, test loss, text metrics, the knowledge track, a judge.

    python -m lib evaluate --profile demo --method qlora --run-dir results/demo/runs/qlora-100 \
        --data data/processed/demo

    run              the `evaluate` command: writes predictions.jsonl and eval.json into the run folder
    generate         batched greedy generation (transformers or vLLM)
    likelihood       test loss: mean token NLL of the reference answers
    metrics          ROUGE-1/2/L, BLEU-4, distinct-n, lengths, with bootstrap intervals over items
    multiple_choice  the knowledge track: multiple-choice accuracy from option-letter log-probabilities
    judge            the optional LLM judge through an OpenAI-compatible endpoint (off by default)
"""
