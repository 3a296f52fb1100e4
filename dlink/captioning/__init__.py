"""Automated audio captioning: language models (lm), the prefix and retrieval captioners (captioner),
and the AAC training, evaluation and result tables (aac)."""
