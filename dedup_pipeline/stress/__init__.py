"""`make stress`: the kill-and-resume loop and concurrent runs on CIFAR-10, written to stress/results.md."""
