"""`memgpt eval`: a small real run on the default model, and bad options as one-line errors."""

import json

from test_cli import assert_one_line_error, run_in_process


def test_eval_runs_and_saves_everything(tmp_path, capsys):
    out = tmp_path / "ev"
    args = ["eval", "passkey,qa1", "--lengths", "0k", "--samples", "2", "--memory", "none,retrieval",
            "--out-dir", str(out), "--max-new-tokens", "8"]
    proc = run_in_process(capsys, *args)
    assert proc.returncode == 0, proc.stderr
    assert "passkey" in proc.stdout and "qa1" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    assert set(results["accuracy"]) == {"none", "retrieval"}
    for kind in ("none", "retrieval"):
        lines = (out / kind / "qa1_0k.jsonl").read_text().splitlines()
        assert len(lines) == 2 and all("prediction" in json.loads(x) for x in lines)
        assert json.loads((out / kind / "passkey_0k.json").read_text())["kind"] == kind
    assert (out / "heatmap.png").stat().st_size > 1000
    first = (out / "none" / "qa1_0k.jsonl").read_text()
    assert run_in_process(capsys, *args).returncode == 0  # same seed: same predictions
    strip = lambda text: [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in text.splitlines()]  # noqa: E731
    assert strip((out / "none" / "qa1_0k.jsonl").read_text()) == strip(first)


def test_eval_bad_options(tmp_path, capsys):
    out = str(tmp_path / "o")
    afile = tmp_path / "file"
    afile.write_text("x")
    cases = [
        (["eval", "qa9", "--out-dir", out], "unknown long-context task"),
        (["eval", "qa1", "--lengths", "4m", "--out-dir", out], "bad length"),
        (["eval", "qa1", "--lengths", ",", "--out-dir", out], "--lengths"),
        (["eval", "qa1", "--samples", "0", "--out-dir", out], "--samples"),
        (["eval", "qa1", "--memory", "psychic", "--out-dir", out], "unknown memory kind"),
        (["eval", "qa1", "--memory", "none,none", "--out-dir", out], "must not repeat"),
        (["eval", "qa1", "--limit", "none", "--out-dir", out], "KIND=LENGTH"),
        (["eval", "qa1", "--memory", "none", "--limit", "latent=4k", "--out-dir", out], "not in --memory"),
        (["eval", "qa1", "--out-dir", str(afile)], "not a directory"),
        (["eval", "qa1"], "--out-dir"),
    ]
    for args, needle in cases:
        assert_one_line_error(run_in_process(capsys, *args), needle)
