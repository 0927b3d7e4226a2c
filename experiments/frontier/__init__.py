"""The frontier table: every cipher's accuracy, strongest attack, known-plaintext cost, key
space and throughput, gathered from the committed result files (``python -m
experiments.frontier.table``)."""
