"""Accuracy evaluation (``make eval``): CIFAR-10 against the human-judged ciFAIR lists, and a
transformation suite of synthetic copies. Not used by the pipeline itself."""
