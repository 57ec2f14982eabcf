import pytest
import torch
import transformers

from memgpt import MemGPTForCausalLM, memgpt_config

transformers.utils.logging.disable_progress_bar()
transformers.utils.logging.set_verbosity_error()
torch.set_num_threads(1)

ARCHS = ["gpt2", "llama"]


def tiny_model(arch: str = "gpt2", num_mem_tokens: int = 4, segment_size: int = 8, bptt_depth: int = -1,
               dtype: torch.dtype = torch.float32, seed: int = 0, memory_update: str = "replace",
               memory_norm: bool = True, associative_heads: int = 0, **memory_options) -> MemGPTForCausalLM:
    """A tiny random model (vocab 99, hidden 32, 2 layers); `associative_heads` of size 8;
    `memory_options`: other `MemGPTConfig` fields."""
    torch.manual_seed(seed)
    config = memgpt_config("tiny", arch, 99, num_mem_tokens, segment_size, bptt_depth, memory_update, memory_norm,
                           associative_heads=associative_heads, associative_size=8, **memory_options)
    return MemGPTForCausalLM(config).to(dtype).eval()


# every kind of memory: how memory tokens are updated, and the associative memory with and without them
MEMORIES = {
    "replace": dict(memory_update="replace"),
    "residual": dict(memory_update="residual"),
    "gated": dict(memory_update="gated"),
    "associative": dict(memory_update="residual", associative_heads=2),
    "associative-only": dict(num_mem_tokens=0, associative_heads=2),
    "associative-outer": dict(num_mem_tokens=0, associative_heads=2, associative_features="outer"),
}


def memory_model(kind: str, arch: str, **kwargs) -> MemGPTForCausalLM:
    """`tiny_model` with the memory `kind` (a key of MEMORIES); kwargs set the rest."""
    return tiny_model(arch, **(kwargs | MEMORIES[kind]))


@pytest.fixture(params=ARCHS)
def arch(request) -> str:
    return request.param
