"""A curriculum on the number of segments: start short, grow on accuracy or on a schedule."""

from __future__ import annotations

import random
from typing import Any


class Curriculum:
    """Stages of segment counts. Advance when eval accuracy reaches `advance_at`, or after
    `stage_steps` steps or `stage_seconds` seconds of training in a stage (0 disables either schedule;
    a time-budgeted run sets the stages by time, since its step rate is not known in advance). While
    training a stage, a fraction `revisit` of batches is drawn from earlier stages so short inputs are
    not forgotten."""

    def __init__(self, stages: list[int], advance_at: float = 0.95, stage_steps: int = 0, revisit: float = 0.25,
                 stage_seconds: float = 0.0):
        self.stages = list(stages)
        self.advance_at, self.stage_steps, self.revisit = advance_at, stage_steps, revisit
        self.stage_seconds = stage_seconds
        self.stage, self.stage_start, self.stage_start_elapsed = 0, 0, 0.0

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

    def update(self, acc: float, step: int, elapsed: float = 0.0) -> bool:
        """Advance after an evaluation at `step` (`elapsed` seconds of training) if the stage is passed
        or its time is up; return whether it advanced."""
        scheduled = self.stage_steps > 0 and step - self.stage_start >= self.stage_steps
        timed = self.stage_seconds > 0 and elapsed - self.stage_start_elapsed >= self.stage_seconds
        if self.is_last or not (acc >= self.advance_at or scheduled or timed):
            return False
        self.stage += 1
        self.stage_start, self.stage_start_elapsed = step, elapsed
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "stage_start": self.stage_start, "stage_start_elapsed": self.stage_start_elapsed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stage = min(int(state["stage"]), len(self.stages) - 1)
        self.stage_start = int(state["stage_start"])
        self.stage_start_elapsed = float(state.get("stage_start_elapsed", 0.0))  # absent before stage_seconds
