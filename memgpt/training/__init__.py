"""Memory-augmented training: BPTT trainer, curriculum, checkpoints."""

from .curriculum import Curriculum
from .trainer import TrainArgs, Trainer, build_model, evaluate, sequence_pass

__all__ = ["Curriculum", "TrainArgs", "Trainer", "build_model", "evaluate", "sequence_pass"]
