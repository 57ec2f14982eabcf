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
               memory_norm: bool = True) -> MemGPTForCausalLM:
    """A tiny random model (vocab 99, hidden 32, 2 layers)."""
    torch.manual_seed(seed)
    config = memgpt_config("tiny", arch, 99, num_mem_tokens, segment_size, bptt_depth, memory_update, memory_norm)
    return MemGPTForCausalLM(config).to(dtype).eval()


@pytest.fixture(params=ARCHS)
def arch(request) -> str:
    return request.param
