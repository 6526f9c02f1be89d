"""Tuning: search spaces, the plan of a study, the cross-validation trial, the Ray Tune + Optuna
study and its outcomes."""
