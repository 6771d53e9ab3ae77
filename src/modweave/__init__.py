"""modweave: grow a pretrained (multimodal) LLM into new input modalities one at a time."""

__version__ = "0.1.0"
