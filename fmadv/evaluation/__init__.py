"""Figures that need a model and an attack: flip rates, curves, accuracy under attack."""
