"""Tuning: search spaces, the cross-validation trial, and the Ray Tune + Optuna study."""
