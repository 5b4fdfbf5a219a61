"""The training stage: the LightningModule, its chunked loss path, the distillation teacher and callbacks."""
