"""lmforge: fine-tune pretrained language models on your own domain data."""

__version__ = "0.1.0"
