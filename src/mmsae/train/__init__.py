"""Training: config, schedule, initialisation, the streaming loop with checkpoints."""

from mmsae.train.config import TrainConfig, read_config_file
from mmsae.train.sweep import sweep_runs
from mmsae.train.trainer import Trainer, TrainResult, train, train_sweep

__all__ = ["TrainConfig", "Trainer", "TrainResult", "train", "train_sweep", "sweep_runs", "read_config_file"]
