"""Tunery: self-hosted LLM fine-tuning. This package holds the shared contract and runtime."""

__version__ = "0.1.0"
