"""Training recipes (chromBPNet's bias + accessibility models) and their data loading."""

from veff.train.chrombpnet import TrainConfig, TrainResult, train_chrombpnet

__all__ = ["TrainConfig", "TrainResult", "train_chrombpnet"]
