"""Text memory: bounded running notes that the instruct backbone rewrites as it reads.

After each segment the model writes that segment's key facts as short bullet points and appends
them to the notes; when the notes outgrow their budget, the model rewrites them shorter. Needs no
training and works with any instruct model (the running-summary idea of MemGPT/Letta).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import MemGPTError
from .base import Memory, DocumentState, clean, register, tensor_text, text_tensor

NOTE_TOKENS = 72  # new notes per segment
NOTES_BUDGET = 512  # notes are rewritten shorter beyond this
SEGMENT_TOKENS = 1536  # large: each segment costs one generation, whatever its length


@register
class TextMemory(Memory):
    kind = "text"
    evidence_source = "notes"

    @property
    def segment_tokens(self) -> int:
        return max(128, min(SEGMENT_TOKENS, self.engine.window - 384))

    def _update(self, state: DocumentState, segment: list[int]) -> None:
        engine = self.engine
        text = engine.tokenizer.decode(segment, skip_special_tokens=True)
        facts = clean(engine.chat(
            f"Text:\n{text}\n\nWrite the key facts of the text above as 3 short bullet points "
            "(names, places, numbers, events).", NOTE_TOKENS, prefix="- ", repetition_penalty=1.1))
        notes = notes_of(state)
        notes = f"{notes}\n- {facts}".strip() if facts else notes
        if engine.count_tokens(notes) > NOTES_BUDGET:
            words = int(NOTES_BUDGET * 0.4)
            shorter = clean(engine.chat(
                f"Notes:\n{notes}\n\nRewrite these notes as bullet points in at most {words} words. "
                "Keep names, places, numbers and events.", NOTES_BUDGET // 2, prefix="- ", repetition_penalty=1.1))
            notes = engine.clip(f"- {shorter}", NOTES_BUDGET, keep="first")
        state.tensors["notes"] = text_tensor(notes)

    def context(self, state: DocumentState, query: str | None, budget: int) -> str:
        return self.engine.clip(notes_of(state), budget, keep="last")

    @classmethod
    def validate(cls, state: DocumentState, path: str | Path) -> None:
        if "notes" not in state.tensors or state.tensors["notes"].dim() != 1:
            raise MemGPTError(f"{path} is a corrupt text memory file")


def notes_of(state: DocumentState) -> str:
    return tensor_text(state.tensors["notes"]) if "notes" in state.tensors else ""
