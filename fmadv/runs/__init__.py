"""Runs: what a command does, as one library call: train and write a run folder,
evaluate, predict, attack, recommend, compare. The CLI parses and prints around these."""
