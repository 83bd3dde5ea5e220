"""Analyses of trained models: anomaly scores, probes of codes, disentanglement metrics."""
