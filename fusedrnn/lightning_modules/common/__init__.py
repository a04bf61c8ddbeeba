"""What the models share: the vocabulary class, the LightningModule base around a network, the training
CLI and model commands, AdamW with its schedules, the training callbacks, loading a model from a
checkpoint and the W&B logger."""
