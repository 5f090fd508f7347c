"""Scores for training examples (TracIn, metadata, loss, LiSSA); knows nothing of curriculum."""
