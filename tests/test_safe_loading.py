"""Safe loading: every file memgpt reads is safetensors or JSON; crafted, truncated or malicious
files are refused with a clear `MemGPTError`, and nothing is ever unpickled.

Each case below crafts one bad file (or folder entry) in a copy of a valid checkpoint, model
folder, run folder or memory file, and calls the loader memgpt uses for it. While the cases run,
`pickle` and `torch.load` are booby-trapped, and the malicious pickles would create a marker file.
"""

import io
import json
import os
import pickle
import re
import shutil
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from memgpt import MemGPTError
from memgpt.apps import make_memory, write_memory_file
from memgpt.model.engine import Engine
from memgpt.apps.reading import open_document
from memgpt.eval.checkpoints import evaluate_checkpoint
from memgpt.memories.files import read_state_file
from memgpt.model.pretrained import load_backbone
from memgpt.training import TrainArgs, Trainer
from memgpt.training.checkpoint import latest_checkpoint, load_model, load_training_state

ROOT = Path(__file__).resolve().parents[1]
MARKER = "PWNED"


class Payload:
    """A pickle that creates a file when unpickled (harmless, but proves code ran)."""

    def __init__(self, where: Path):
        self.where = str(where)

    def __reduce__(self):
        return (open, (self.where, "w"))


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> dict[str, Path]:
    """A real run folder (checkpoint at step 2), a memory file, and a tiny backbone folder."""
    base = tmp_path_factory.mktemp("valid")
    args = TrainArgs(task="copy", size="tiny", segment_size=6, num_mem_tokens=2, curriculum=[1], batch_size=4,
                     max_steps=2, eval_every=2, eval_size=4, checkpoint_every=2, progress=False, out_dir=str(base / "run"))
    trainer = Trainer(args)
    trainer.train()
    model = trainer.model.eval()
    write_memory_file(base / "doc.mem", make_memory("latent", checkpoint_engine(model)).new_state())
    model.backbone.save_pretrained(base / "backbone")
    return {"run": base / "run", "ckpt": base / "run" / "checkpoint-000002", "mem": base / "doc.mem",
            "backbone": base / "backbone"}


def st_bytes(header, data: bytes = b"", length: int | None = None) -> bytes:
    """Raw safetensors bytes: 8-byte little-endian header length, header, data."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def tensor_entry(dtype="F32", shape=(2,), offsets=(0, 8)) -> dict:
    return {"t": {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}}


# The loaders, as memgpt calls them
def load_ckpt_model(d):
    return load_model(d["ckpt"])


def load_ckpt_state(d):
    return Trainer(TrainArgs(task="copy", size="tiny", segment_size=6, num_mem_tokens=2, curriculum=[1], batch_size=4,
                             max_steps=4, progress=False, out_dir=str(d["run"])), resume=True)


def load_latest(d):
    return latest_checkpoint(d["run"])


def checkpoint_engine(model) -> Engine:
    """An engine whose latent memory is a trained checkpoint's model."""
    return Engine(name="checkpoint", backbone=model.backbone, tokenizer=None, extras={"latent": model})


def load_mem(d):
    return open_document(d["mem"], "ask", "latent", checkpoint_engine(load_model(d["ckpt"])), False, 0)


def load_eval(d):
    return evaluate_checkpoint(d["ckpt"], eval_size=4)


def load_local_backbone(d):
    return load_backbone(str(d["backbone"]))


def write(rel: str, content: bytes | str):
    def craft(d: dict[str, Path]) -> None:
        path = _resolve(d, rel)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif os.path.lexists(path):
            path.unlink()
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return craft


def _resolve(d, rel: str) -> Path:
    key, _, rest = rel.partition("/")
    return d[key] / rest if rest else d[key]


def edit_tensors(rel: str, change):
    """Rewrite a valid safetensors file after `change(tensors)` (keeps its metadata)."""
    def craft(d):
        from safetensors import safe_open

        path = _resolve(d, rel)
        with safe_open(str(path), "pt") as f:
            meta = f.metadata()
        tensors = load_file(str(path))
        change(tensors)
        save_file(tensors, str(path), metadata=meta)
    return craft


def edit_json(rel: str, change):
    def craft(d):
        path = _resolve(d, rel)
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))
    return craft


def truncate(rel: str, fraction: float = 0.5):
    def craft(d):
        path = _resolve(d, rel)
        raw = path.read_bytes()
        path.write_bytes(raw[: int(len(raw) * fraction)])
    return craft


def replace_with_dir(rel: str):
    def craft(d):
        path = _resolve(d, rel)
        path.unlink()
        path.mkdir()
    return craft


def symlink_loop(rel: str):
    def craft(d):
        path = _resolve(d, rel)
        path.unlink()
        path.symlink_to(path.name)  # points at itself
    return craft


def symlink_to(rel: str, target: str):
    def craft(d):
        path = _resolve(d, rel)
        path.unlink()
        path.symlink_to(target)
    return craft


def pickle_payload(rel: str):
    def craft(d):
        _resolve(d, rel).write_bytes(pickle.dumps(Payload(d["marker"])))
    return craft


def torch_save_payload(rel: str, remove: str | None = None):
    """A torch.save zip holding a malicious pickle (what a `pytorch_model.bin` attack looks like)."""
    def craft(d):
        if remove:
            _resolve(d, remove).unlink()
        buf = io.BytesIO()
        torch.save({"weight": Payload(d["marker"])}, buf)
        _resolve(d, rel).write_bytes(buf.getvalue())
    return craft


def sparse_huge(rel: str, size: int = 200 << 20):
    def craft(d):
        path = _resolve(d, rel)
        with open(path, "wb") as f:
            f.truncate(size)  # a sparse file: no disk used
    return craft


def drop_first(tensors):
    del tensors[sorted(tensors)[0]]


def add_extra(tensors):
    tensors["backbone.evil.weight"] = torch.zeros(2)


def wrong_shape(tensors):
    name = next(k for k in sorted(tensors) if tensors[k].ndim == 2)
    tensors[name] = torch.zeros(tensors[name].shape[0] + 1, tensors[name].shape[1])


def int_dtype(tensors):
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].to(torch.int32)


def nan_weight(tensors):
    tensors["memory_init"] = torch.full_like(tensors["memory_init"], float("nan"))


def bad_moment_shape(tensors):
    name = next(k for k in sorted(tensors) if k.endswith("exp_avg"))
    tensors[name] = torch.zeros(3)


def drop_rng(tensors):
    tensors["other"] = tensors.pop("torch_rng_state")


def mem_shape(tensors):
    tensors["memory"] = torch.zeros(1, 3, 5)


def mem_int(tensors):
    tensors["memory"] = tensors["memory"].to(torch.int64)


def mem_nan(tensors):
    tensors["memory"] = torch.full_like(tensors["memory"], float("nan"))


def _rekind(d):
    from safetensors import safe_open

    with safe_open(str(d["mem"]), "pt") as f:
        meta = f.metadata()
    save_file(load_file(str(d["mem"])), str(d["mem"]), metadata={**meta, "kind": "text"})


def cache_with_garbage_weights(d):
    cache = d["cache"] / "smollm2-135m-instruct"
    shutil.copytree(d["backbone"], cache)
    (cache / "memgpt_cache.json").write_text(json.dumps({"format": 1}))
    (cache / "model.safetensors").write_bytes(os.urandom(4096))


W, S = "ckpt/model.safetensors", "ckpt/trainer_state.json"
CASES = [
    # --- model weights (checkpoint / save_pretrained folder) ---------------------------------------
    ("weights: empty file", write(W, b""), load_ckpt_model, "corrupt|not a safetensors"),
    ("weights: 5 bytes, shorter than the header length", write(W, b"\x01\x02\x03\x04\x05"), load_ckpt_model, "corrupt"),
    ("weights: header length past the end", write(W, st_bytes(tensor_entry(), b"\0" * 8, length=10_000)), load_ckpt_model, "corrupt"),
    ("weights: header length 2^63", write(W, st_bytes(b"{}", length=2**63 - 1)), load_ckpt_model, "corrupt"),
    ("weights: header is not JSON", write(W, st_bytes(b"\x80garbage{{{")), load_ckpt_model, "corrupt"),
    ("weights: header is a JSON list", write(W, st_bytes(b"[1, 2, 3]")), load_ckpt_model, "corrupt"),
    ("weights: header not UTF-8", write(W, st_bytes(b'{"\xff\xfe": 1}')), load_ckpt_model, "corrupt"),
    ("weights: offsets past the end", write(W, st_bytes(tensor_entry(offsets=(0, 4096)), b"\0" * 8)), load_ckpt_model, "corrupt"),
    ("weights: offsets disagree with shape", write(W, st_bytes(tensor_entry(shape=(100,), offsets=(0, 8)), b"\0" * 8)), load_ckpt_model, "corrupt"),
    ("weights: unknown dtype", write(W, st_bytes(tensor_entry(dtype="X99"), b"\0" * 8)), load_ckpt_model, "corrupt"),
    ("weights: huge shape, tiny file", write(W, st_bytes(tensor_entry(shape=(2**40, 2**20), offsets=(0, 8)), b"\0" * 8)), load_ckpt_model, "corrupt"),
    ("weights: cut in half", truncate(W), load_ckpt_model, "corrupt"),
    ("weights: random bytes", write(W, os.urandom(5000)), load_ckpt_model, "corrupt"),
    ("weights: a pickle named model.safetensors", pickle_payload(W), load_ckpt_model, "corrupt"),
    ("weights: torch.save zip named model.safetensors", torch_save_payload(W), load_ckpt_model, "corrupt"),
    ("weights: only pytorch_model.bin (pickle)", torch_save_payload("ckpt/pytorch_model.bin", remove=W), load_ckpt_model, "safetensors only"),
    ("weights: a tensor missing", edit_tensors(W, drop_first), load_ckpt_model, "lack"),
    ("weights: an extra tensor", edit_tensors(W, add_extra), load_ckpt_model, "does not have"),
    ("weights: wrong shape", edit_tensors(W, wrong_shape), load_ckpt_model, "shape"),
    ("weights: integer dtype", edit_tensors(W, int_dtype), load_ckpt_model, "not floating point"),
    ("weights: NaN values", edit_tensors(W, nan_weight), load_ckpt_model, "NaN"),
    ("weights: a directory", replace_with_dir(W), load_ckpt_model, "is a directory"),
    ("weights: a symlink loop", symlink_loop(W), load_ckpt_model, "symlink loop"),
    ("weights: a symlink to /dev/zero", symlink_to(W, "/dev/zero"), load_ckpt_model, "not a regular file"),
    ("config: not JSON", write("ckpt/config.json", "{model_type: memgpt"), load_ckpt_model, "not valid JSON"),
    ("config: a JSON list", write("ckpt/config.json", "[]"), load_ckpt_model, "expected a JSON object"),
    ("config: not UTF-8", write("ckpt/config.json", b"\xff\xfe{}"), load_ckpt_model, "not UTF-8"),
    ("config: another model type", edit_json("ckpt/config.json", lambda c: c.update(model_type="gpt2")), load_ckpt_model, "not a memgpt config"),
    ("config: 10^9 layers", edit_json("ckpt/config.json", lambda c: c["text_config"].update(n_layer=10**9, num_hidden_layers=10**9)), load_ckpt_model, "layers"),
    ("config: negative memory size", edit_json("ckpt/config.json", lambda c: c.update(num_mem_tokens=-4)), load_ckpt_model, "num_mem_tokens"),
    ("config: 200 MB file", sparse_huge("ckpt/config.json"), load_ckpt_model, "never over"),
    ("config: JSON nested 100000 deep", write("ckpt/config.json", "[" * 100_000 + "]" * 100_000), load_ckpt_model, "not valid JSON|expected a JSON object"),
    # --- training state of a checkpoint -------------------------------------------------------------
    ("trainer state: not JSON", write(S, "{'step': 2"), load_ckpt_state, "not valid JSON"),
    ("trainer state: step is a string", edit_json(S, lambda s: s.update(step="2")), load_ckpt_state, "'step'"),
    ("trainer state: keys missing", write(S, "{}"), load_ckpt_state, "missing or of the wrong type"),
    ("trainer state: negative step", edit_json(S, lambda s: s.update(step=-5)), load_ckpt_state, "bad step"),
    ("trainer state: bad curriculum", edit_json(S, lambda s: s.update(curriculum={"stage": "x"})), load_ckpt_state, "curriculum"),
    ("trainer state: a directory", replace_with_dir(S), load_ckpt_state, "is a directory"),
    ("trainer state: a symlink loop", symlink_loop(S), load_ckpt_state, "symlink loop"),
    ("trainer state: deleted", lambda d: (d["ckpt"] / "trainer_state.json").unlink(), load_ckpt_state, "is missing"),
    ("optimizer json: not JSON", write("ckpt/optimizer.json", "\x00\x01"), load_ckpt_state, "not valid JSON"),
    ("optimizer json: param_groups not a list", edit_json("ckpt/optimizer.json", lambda m: m.update(param_groups={})), load_ckpt_state, "param_groups"),
    ("optimizer json: params not indices", edit_json("ckpt/optimizer.json", lambda m: m["param_groups"][0].update(params=["a"])), load_ckpt_state, "optimizer state"),
    ("optimizer json: one group missing", edit_json("ckpt/optimizer.json", lambda m: m["param_groups"].pop()), load_ckpt_state, "does not fit"),
    ("optimizer tensors: a pickle", pickle_payload("ckpt/optimizer.safetensors"), load_ckpt_state, "corrupt"),
    ("optimizer tensors: truncated", truncate("ckpt/optimizer.safetensors", 0.7), load_ckpt_state, "corrupt"),
    ("optimizer tensors: names without index", edit_tensors("ckpt/optimizer.safetensors", lambda t: t.update(foo=torch.zeros(1))), load_ckpt_state, "optimizer state"),
    ("optimizer tensors: moment of the wrong shape", edit_tensors("ckpt/optimizer.safetensors", bad_moment_shape), load_ckpt_state, "does not fit"),
    ("rng: tensor missing", edit_tensors("ckpt/rng.safetensors", drop_rng), load_ckpt_state, "torch_rng_state"),
    ("rng: random bytes", write("ckpt/rng.safetensors", os.urandom(100)), load_ckpt_state, "corrupt"),
    # --- the `latest` pointer of a run --------------------------------------------------------------
    ("latest: not JSON", write("run/latest", "checkpoint-000002"), load_latest, "not valid JSON"),
    ("latest: path traversal", write("run/latest", json.dumps({"checkpoint": "../../etc"})), load_latest, "no valid checkpoint name"),
    ("latest: absolute path", write("run/latest", json.dumps({"checkpoint": "/tmp"})), load_latest, "no valid checkpoint name"),
    ("latest: names a missing checkpoint", write("run/latest", json.dumps({"checkpoint": "checkpoint-000099"})), load_latest, "does not exist"),
    ("latest: a directory", replace_with_dir("run/latest"), load_latest, "is a directory"),
    ("latest: a symlink loop", symlink_loop("run/latest"), load_latest, "symlink loop"),
    ("eval: trainer state args garbage", edit_json(S, lambda s: s.update(args={"task": ["x"], "curriculum": "abc"})), load_eval, "corrupt"),
    # --- memory files ---------------------------------------------------------------------------------
    ("memory: random bytes", write("mem", os.urandom(3000)), load_mem, "not a readable memory file"),
    ("memory: a pickle", pickle_payload("mem"), load_mem, "not a readable memory file"),
    ("memory: truncated", truncate("mem", 0.6), load_mem, "not a readable memory file"),
    ("memory: plain safetensors, no memgpt metadata", lambda d: save_file({"memory": torch.zeros(1)}, str(d["mem"])), load_mem, "not a memgpt memory file"),
    ("memory: another kind", _rekind, load_mem, "corrupt text memory file"),
    ("memory: wrong shape", edit_tensors("mem", mem_shape), load_mem, "shape"),
    ("memory: integer dtype", edit_tensors("mem", mem_int), load_mem, "not finite floating-point"),
    ("memory: NaN", edit_tensors("mem", mem_nan), load_mem, "not finite floating-point"),
    ("memory: a directory", replace_with_dir("mem"), load_mem, "not a file"),
    ("memory: a symlink loop", symlink_loop("mem"), load_mem, "not a file"),
    # --- backbones: local folders and the model cache -----------------------------------------------------
    ("backbone: only pytorch_model.bin", torch_save_payload("backbone/pytorch_model.bin", remove="backbone/model.safetensors"), load_local_backbone, "safetensors only"),
    ("backbone: config not JSON", write("backbone/config.json", "{{{"), load_local_backbone, "cannot load model"),
    ("backbone: a tensor missing", edit_tensors("backbone/model.safetensors", drop_first), load_local_backbone, "lack"),
    ("backbone: header garbage", write("backbone/model.safetensors", st_bytes(b"\x00" * 64)), load_local_backbone, "corrupt"),
    ("cache: default model with garbage weights", cache_with_garbage_weights, lambda d: load_backbone("default"), "corrupt"),
]


REFUSED: list[str] = []


@pytest.fixture
def trap(monkeypatch):
    """Any attempt to unpickle fails the test."""
    def boom(*args, **kwargs):
        raise AssertionError("memgpt tried to unpickle a file")

    for target, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")):
        monkeypatch.setattr(target, name, boom)


@pytest.mark.parametrize("name,craft,loader,needle", CASES, ids=[c[0] for c in CASES])
def test_crafted_file_is_refused(valid, tmp_path, monkeypatch, trap, name, craft, loader, needle):
    d = {}
    for key in ("run", "mem", "backbone"):
        dst = tmp_path / valid[key].name
        (shutil.copytree if valid[key].is_dir() else shutil.copy2)(valid[key], dst)
        d[key] = dst
    d["ckpt"] = d["run"] / valid["ckpt"].name
    d["marker"] = tmp_path / MARKER
    d["cache"] = tmp_path / "cache"
    monkeypatch.setenv("MEMGPT_CACHE", str(d["cache"]))
    craft(d)
    with pytest.raises(MemGPTError) as info:
        loader(d)
    message = str(info.value)
    assert re.search(needle, message), message
    assert "\n" not in message and len(message) < 1000
    assert not d["marker"].exists(), "a pickle payload ran"
    REFUSED.append(name)
    print(f"\nrefused [{name}]: {message}")


def test_valid_files_still_load(valid, trap):
    """The booby-trapped loaders accept the real files (so the refusals above mean something)."""
    model = load_model(valid["ckpt"])
    load_training_state(valid["ckpt"])
    assert latest_checkpoint(valid["run"]) == valid["ckpt"]
    assert open_document(valid["mem"], "ask", "latent", checkpoint_engine(model), False, 0).state.kind == "latent"
    read_state_file(valid["mem"], "latent")
    assert evaluate_checkpoint(valid["ckpt"], eval_size=4)


def test_no_unpickling_anywhere_in_the_source():
    """No reader in memgpt can unpickle: no torch.load/pickle, and every weights from_pretrained
    insists on safetensors (tokenizers read JSON; the GGUF reader is not pickle)."""
    offenders = []
    for path in sorted((ROOT / "memgpt").rglob("*.py")):
        text = path.read_text()
        for pattern in (r"torch\.load\(", r"\bimport pickle\b", r"\bpickle\.", r"\bimport dill\b", r"joblib",
                        r"allow_pickle\s*=\s*True", r"weights_only\s*=\s*False", r"trust_remote_code\s*=\s*True"):
            offenders += [f"{path.name}: {pattern}" for _ in re.finditer(pattern, text)]
        for call in re.finditer(r"(\w+)\.from_pretrained\(([^()]*(?:\([^()]*\)[^()]*)*)\)", text):
            owner, args = call.group(1), call.group(2)
            if "Tokenizer" in owner or "Config" in owner or "gguf_file" in args:
                continue
            if "use_safetensors=True" not in args:
                offenders.append(f"{path.name}: {owner}.from_pretrained without use_safetensors=True")
    assert not offenders, offenders
