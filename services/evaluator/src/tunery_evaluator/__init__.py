"""Tunery evaluator service: evaluations of base and fine-tuned models through an OpenAI-compatible endpoint."""
