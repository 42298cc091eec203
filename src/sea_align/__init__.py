"""sea-align: SEA (Synthetic Embedding augmented safety Alignment) for multimodal LLMs."""

__version__ = "0.1.0"
