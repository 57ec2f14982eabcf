"""memgpt: a memory-augmented GPT over any Hugging Face causal LM."""

from transformers import AutoConfig, AutoModelForCausalLM

from .model.backbones import backbone_config, memgpt_config
from .model.configuration_memgpt import MemGPTConfig
from .errors import MemGPTError
from .model.modeling_memgpt import MemGPTForCausalLM, MemGPTOutput, MemoryState
from .model.pretrained import DEFAULT_MODEL, load_backbone

AutoConfig.register("memgpt", MemGPTConfig, exist_ok=True)
AutoModelForCausalLM.register(MemGPTConfig, MemGPTForCausalLM, exist_ok=True)

__version__ = "0.1.0"
__all__ = [
    "DEFAULT_MODEL",
    "load_backbone",
    "MemGPTConfig",
    "MemGPTError",
    "MemGPTForCausalLM",
    "MemGPTOutput",
    "MemoryState",
    "backbone_config",
    "memgpt_config",
]
