import pytest
import torch
import transformers

from memgpt import MemGPTForCausalLM, memgpt_config
from memgpt.model.modeling_memgpt import MemoryState

transformers.utils.logging.disable_progress_bar()
transformers.utils.logging.set_verbosity_error()
torch.set_num_threads(1)

ARCHS = ["gpt2", "llama"]


def tiny_model(arch: str = "gpt2", dtype: torch.dtype = torch.float32, seed: int = 0, **memory) -> MemGPTForCausalLM:
    """A tiny random model (vocab 99, hidden 32, 2 layers); `memory`: `MemGPTConfig`'s memory settings
    (here 4 memory tokens, segments of 8 and associative heads of size 8 unless given)."""
    torch.manual_seed(seed)
    config = memgpt_config("tiny", arch, 99, **(dict(num_mem_tokens=4, segment_size=8, associative_size=8) | memory))
    return MemGPTForCausalLM(config).to(dtype).eval()


def flat(memory: MemoryState) -> torch.Tensor:
    """All of a memory state's numbers, `(B, N)`."""
    return torch.cat([t.flatten(1) for t in memory.tensors().values()], dim=1)


def assert_same_memory(a: MemoryState, b: MemoryState, **tolerance) -> None:
    """Two memory states hold the same tensors (`torch.testing.assert_close`)."""
    torch.testing.assert_close(a.tensors(), b.tensors(), **tolerance)


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


def tiny_llama_engine():
    """An apps Engine over a tiny random Llama with the default model's tokenizer (window 512)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from memgpt.model.engine import Engine
    from memgpt.model.pretrained import resolve_backbone

    tokenizer = AutoTokenizer.from_pretrained(resolve_backbone("default"))
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096)
    backbone = LlamaForCausalLM(config).eval()
    backbone.config.name_or_path = "tiny-llama"
    return Engine(name="tiny-llama", backbone=backbone, tokenizer=tokenizer, window=512)


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory):
    """A tiny random Llama with the default tokenizer's vocabulary, saved as a local model folder."""
    from transformers import AutoModelForCausalLM

    from memgpt.eval.longcontext.haystack import default_tokenizer
    from memgpt.model.backbones import backbone_config

    folder = tmp_path_factory.mktemp("tiny-llama")
    tok = default_tokenizer()
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(backbone_config("tiny", "llama", len(tok), 1024)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def write_epub(path, sections: list[tuple[str, str]], title: str = "Book") -> None:
    """An EPUB (ebooklib) with one chapter per (heading, paragraph), each an <h1> and a <p>, in order."""
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier(title.lower())
    book.set_title(title)
    book.set_language("en")
    chapters = []
    for i, (heading, body) in enumerate(sections):
        c = epub.EpubHtml(title=heading, file_name=f"c{i}.xhtml", lang="en")
        c.content = f"<html><body><h1>{heading}</h1><p>{body}</p></body></html>"
        book.add_item(c)
        chapters.append(c)
    book.toc = chapters
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = chapters
    epub.write_epub(str(path), book)
