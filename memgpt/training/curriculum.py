"""A curriculum on the number of segments: start short, grow on accuracy or on a schedule."""

from __future__ import annotations

import random
from typing import Any


class Curriculum:
    """Stages of segment counts. Advance when eval accuracy reaches `advance_at`, or after
    `stage_steps` steps in a stage (0 disables the schedule). While training a stage, a fraction
    `revisit` of batches is drawn from earlier stages so short inputs are not forgotten."""

    def __init__(self, stages: list[int], advance_at: float = 0.95, stage_steps: int = 0, revisit: float = 0.25):
        self.stages = list(stages)
        self.advance_at, self.stage_steps, self.revisit = advance_at, stage_steps, revisit
        self.stage, self.stage_start = 0, 0

    @property
    def current(self) -> int:
        return self.stages[self.stage]

    @property
    def is_last(self) -> bool:
        return self.stage == len(self.stages) - 1

    def sample(self, rng: random.Random) -> int:
        """The number of segments for the next batch."""
        if self.stage > 0 and rng.random() < self.revisit:
            return self.stages[rng.randrange(self.stage)]
        return self.current

    def update(self, acc: float, step: int) -> bool:
        """Advance after an evaluation if the stage is passed; return whether it advanced."""
        scheduled = self.stage_steps > 0 and step - self.stage_start >= self.stage_steps
        if self.is_last or not (acc >= self.advance_at or scheduled):
            return False
        self.stage += 1
        self.stage_start = step
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "stage_start": self.stage_start}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stage = min(int(state["stage"]), len(self.stages) - 1)
        self.stage_start = int(state["stage_start"])
