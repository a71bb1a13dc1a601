"""Training data, training loop, evaluation and the model card pipeline."""
