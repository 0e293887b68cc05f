"""The ``mbrnn`` command line (plan, train, evaluate, sample); scripts/ are in test_scripts.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from training_helpers import TINY, tiny_config, write_corpus

from mbrnn import cli
from mbrnn.cli import plan as cli_plan
from mbrnn.plan import Backward, Chain, OpSequence, Plan, simulate, solve
from mbrnn.sizes import format_size
from mbrnn.training import train

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# T=300 steps of 1 KiB hidden state and 4 KiB internal state, in a 120 KiB budget (10 %).
SMALL = ["--seq-len", "300", "--state-size", "1KiB", "--internal-size", "4KiB",
         "--budget", "120KiB"]
SMALL_CHAIN = Chain(300, 1024.0, 4096.0)
SMALL_BUDGET = 120 * 1024.0


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mbrnn plan: error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


# ---------------------------------------------------------------------------------------
# mbrnn plan: summary and JSON
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["msm", "ism", "hsm", "chen", "auto"])
def test_summary_matches_solve(capsys: pytest.CaptureFixture[str], policy: str) -> None:
    code, out, err = run(capsys, "plan", *SMALL, "--policy", policy)
    assert code == 0, err
    assert err == ""
    plan = solve(SMALL_CHAIN, SMALL_BUDGET, policy)
    assert f"policy          {plan.policy}" in out
    assert f"forward steps   {plan.forward_steps:,} = {plan.recompute_factor:.4f} x T" in out
    assert f"time overhead   {plan.time_overhead(2.0):.4f} x store-all" in out
    assert f"peak memory     {format_size(simulate(plan).peak)} = " in out
    assert f"store-all {format_size(SMALL_CHAIN.store_all_peak)}" in out
    assert f"{simulate(plan).max_hidden:,} hidden states, {simulate(plan).max_internal:,} internal states" in out
    assert f"forward runs    {simulate(plan).runs:,} (" in out
    assert "planning time" in out
    assert ("chosen by auto" in out) == (policy == "auto")


def test_summary_says_exact_or_hierarchical(capsys: pytest.CaptureFixture[str]) -> None:
    _, exact, _ = run(capsys, "plan", *SMALL, "--policy", "msm")
    assert "msm: exact optimum" in exact
    long = ["--seq-len", "3000", "--state-size", "1", "--internal-size", "4", "--budget",
            "2400"]  # 20 % of store-all, past EXACT_LIMIT
    code, hier, err = run(capsys, "plan", *long, "--policy", "msm")
    assert code == 0, err
    assert "msm: hierarchical" in hier
    _, base, _ = run(capsys, "plan", *SMALL, "--policy", "chen")
    assert "chen: baseline schedule" in base


def test_json_matches_solve(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", *SMALL, "--policy", "msm", "--beta", "1.5", "--json")
    assert code == 0
    report = json.loads(out)
    plan = solve(SMALL_CHAIN, SMALL_BUDGET, "msm")
    assert report["policy"] == "msm"
    assert report["method"] == "exact"
    assert report["seq_len"] == 300
    assert report["state_size"] == 1024.0
    assert report["internal_size"] == 4096.0
    assert report["budget"] == SMALL_BUDGET
    assert report["forward_steps"] == plan.forward_steps
    assert report["time_overhead"] == pytest.approx(plan.time_overhead(1.5))
    assert report["peak"] == simulate(plan).peak <= SMALL_BUDGET
    assert report["peak_fraction"] == pytest.approx(simulate(plan).peak / SMALL_CHAIN.store_all_peak)
    assert report["store_all_peak"] == SMALL_CHAIN.store_all_peak
    assert report["runs"] == simulate(plan).runs
    assert report["kept_hidden"] == simulate(plan).max_hidden
    assert report["kept_internal"] == simulate(plan).max_internal
    assert report["solve_seconds"] >= 0
    assert report["plot"] is None


def test_sizes_accept_bytes_and_units(capsys: pytest.CaptureFixture[str]) -> None:
    _, a, _ = run(capsys, "plan", *SMALL, "--json")
    _, b, _ = run(capsys, "plan", "--seq-len", "300", "--state-size", "1024",
                  "--internal-size", "4096", "--budget", "122880", "--json")
    ra, rb = json.loads(a), json.loads(b)
    assert ra["forward_steps"] == rb["forward_steps"]
    assert ra["budget"] == rb["budget"] == SMALL_BUDGET


def test_store_all_when_everything_fits(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", "--seq-len", "10", "--state-size", "1",
                       "--internal-size", "4", "--budget", "1GiB", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["policy"] == "store_all"
    assert report["forward_steps"] == 10
    assert report["time_overhead"] == 1.0
    assert report["peak_fraction"] == 1.0


@pytest.mark.slow
def test_readme_quickstart(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "plan", "--seq-len", "100000", "--state-size", "262144",
                         "--internal-size", "1048576", "--budget", "2GiB")
    assert code == 0, err
    assert "T=100,000 steps, state 256.00 KiB, internal 1.00 MiB (alpha 4), budget 2.00 GiB" in out
    assert "store-all 97.66 GiB" in out
    forward = int(out.split("forward steps")[1].split("=")[0].replace(",", ""))
    assert 100_000 < forward < 200_000  # one sweep plus under one recompute per step


# ---------------------------------------------------------------------------------------
# mbrnn plan: errors are one line on stderr, exit status 2
# ---------------------------------------------------------------------------------------


def test_infeasible_budget(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "plan", *SMALL[:-1], "512")
    assert code == 2
    assert out == ""
    assert_one_line_error(err, "--budget 512 B is below the minimum 2.00 KiB",
                          "raise --budget to at least 2.00 KiB")


def test_infeasible_budget_for_a_baseline(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "plan", *SMALL[:-1], "50KiB", "--policy", "chen")
    assert code == 2
    chen_peak = simulate(solve(SMALL_CHAIN, SMALL_CHAIN.store_all_peak, "chen")).peak
    assert_one_line_error(err, f"the minimum {format_size(chen_peak)}", "policy 'chen'",
                          "or use --policy auto")


@pytest.mark.parametrize(
    ("flag", "value", "fragment"),
    [
        ("--budget", "2 gigs", "--budget='2 gigs' has an unknown unit"),
        ("--budget", "lots", "--budget='lots' is not a size"),
        ("--budget", "-1GiB", "must be >= 0"),
        ("--state-size", "nan", "--state-size='nan' must be a finite size"),
        ("--state-size", "0", "--state-size must be > 0"),
        ("--internal-size", "512", "--internal-size 512 B is below --state-size 1.00 KiB"),
        ("--seq-len", "0", "--seq-len must be >= 1, got 0"),
        ("--beta", "-1", "--beta must be finite and >= 0"),
    ],
)
def test_bad_input(capsys: pytest.CaptureFixture[str], flag: str, value: str,
                   fragment: str) -> None:
    argv = list(SMALL)
    if flag in argv:
        del argv[argv.index(flag):argv.index(flag) + 2]
    argv.append(f"{flag}={value}")  # "=": a leading "-" in the value is not an option
    code, out, err = run(capsys, "plan", *argv)
    assert code == 2
    assert out == ""
    assert_one_line_error(err, fragment)


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "plan", "--seq-len", "10")
    assert code == 2
    assert "required" in err
    code, _, err = run(capsys, "plan", *SMALL, "--policy", "fastest")
    assert code == 2
    assert "invalid choice" in err
    code, _, err = run(capsys)
    assert code == 2


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", "--help")
    assert code == 0
    assert "--budget" in out
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "plan" in out


def test_invalid_plan_is_reported_not_raised(capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(chain: Chain, budget: float, policy: str) -> Plan:
        return Plan("msm", chain, budget, 1, OpSequence(lambda: iter([Backward(0, 1)])))

    monkeypatch.setattr(cli_plan, "solve", broken)
    code, _, err = run(capsys, "plan", *SMALL)
    assert code == 1
    assert_one_line_error(err, "invalid plan", "a planner bug")


def test_console_script_entry_point() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from mbrnn.cli import main; sys.exit(main())",
         "plan", *SMALL[:-1], "1"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert_one_line_error(proc.stderr, "is below the minimum 2.00 KiB")


def test_cli_and_plot_import_neither_torch_nor_matplotlib() -> None:
    code = ("import sys, mbrnn.cli, mbrnn.plan.plot, mbrnn.sizes; "
            "bad = sorted(m for m in ('torch', 'matplotlib') if m in sys.modules); "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------------------------------
# mbrnn plan --plot
# ---------------------------------------------------------------------------------------


def test_plot_flag_writes_png(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "plan.png"
    code, out, err = run(capsys, "plan", *SMALL, "--plot", str(path))
    assert code == 0, err
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 20_000
    assert f"plot            {path}" in out


def test_plot_flag_unwritable(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "plan", *SMALL, "--plot", str(tmp_path / "no" / "p.png"))
    assert code == 1
    assert_one_line_error(err, "cannot write --plot")


# ---------------------------------------------------------------------------------------
# mbrnn plan --model: sizes probed on mbrnn.LSTM/GRU/RNN's fused kernel
# ---------------------------------------------------------------------------------------


def test_plan_model_matches_the_modules_plan(capsys: pytest.CaptureFixture[str]) -> None:
    import mbrnn

    argv = ["plan", "--model", "lstm", "--hidden-size", "16", "--num-layers", "2",
            "--batch-size", "4", "--input-size", "8", "--seq-len", "400", "--budget", "1MiB"]
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    report = json.loads(out)
    fp = mbrnn.LSTM(8, 16, 2).plan_for(400, 4, memory_budget=2**20)
    plan = fp.plans[0].plan
    assert report["model"].startswith("LSTM(input_size=8, hidden_size=16, num_layers=2)")
    assert report["forward_steps"] == plan.forward_steps > 400
    assert report["state_size"] == plan.chain.state_size == 2 * 2 * 4 * 16 * 4
    assert report["internal_size"] == plan.chain.internal_size
    assert report["predicted_peak"] == fp.predicted_peak <= 2**20
    code, text, _ = run(capsys, *argv)
    assert code == 0 and "model           LSTM(" in text and "module peak" in text


def test_plan_model_errors(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["plan", "--seq-len", "100", "--budget", "1KiB"]
    code, _, err = run(capsys, *base, "--model", "gru", "--hidden-size", "8")
    assert code == 2
    assert_one_line_error(err, "--model needs --batch-size")
    code, _, err = run(capsys, *base, "--model", "rnn", "--hidden-size", "8", "--batch-size", "2")
    assert code == 2
    assert_one_line_error(err, "--budget 1.00 KiB is below the minimum",
                          "RNN(input_size=8, hidden_size=8, num_layers=1), batch 2")
    code, _, err = run(capsys, *base)
    assert code == 2
    assert_one_line_error(err, "--state-size and --internal-size are required unless --model")


# ---------------------------------------------------------------------------------------
# mbrnn train / evaluate / sample
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def text(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("data"))


def test_cli_rejects_unknown_flags_and_bad_presets(capsys: pytest.CaptureFixture[str]) -> None:
    main = cli.main
    assert main(["train", "--hiden-size=3"]) == 2
    assert "unrecognized arguments" in capsys.readouterr().err
    assert main(["train", "--config=no-such-preset"]) == 2
    assert "not found" in capsys.readouterr().err


def test_dry_run_writes_log_plot_checkpoint_and_model(text: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    main = cli.main
    out = tmp_path / "run"
    assert main(["train", *TINY, f"--data={text}", f"--out={out}", "--dry-run", "--plot"]) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4] and all(r["loss"] > 0 for r in log)
    assert {"bpc", "ppl", "tokens_per_s", "peak_bytes"} <= set(log[-1])
    assert (out / "curves.png").stat().st_size > 0 and (out / "checkpoint.pt").is_file()
    model = out / "model"
    assert main(["evaluate", "--model", str(model), "--split", "test", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["split"] == "test" and metrics["tokens"] > 0 and metrics["loss"] > 0
    assert main(["sample", "--model", str(model), "--prompt", "the ", "--max-new-tokens", "12",
                 "--top-k", "3"]) == 0
    sample = capsys.readouterr().out
    assert sample.startswith("the ") and len(sample) == len("the ") + 12 + 1


def test_evaluate_rejects_data_the_vocab_cannot_encode(text: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    main = cli.main
    out = tmp_path / "run"
    train(tiny_config(text, out, max_steps=1, eval_every=1))
    other = tmp_path / "other.txt"
    other.write_text("ZZZ XYZ 123 qqq\n" * 50)
    assert main(["evaluate", "--model", str(out / "model"), "--data", str(other)]) == 2
    assert "cannot load the corpus" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["/nonexistent", "./no/such/model", "runs-missing/../x/y"])
def test_evaluate_a_missing_folder_says_so(capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """A name that can only be a path is never taken for a Hub repo id."""

    def no_network(**kwargs: object) -> str:
        raise AssertionError("a missing folder must not reach the Hub")

    monkeypatch.setattr("huggingface_hub.snapshot_download", no_network)
    assert cli.main(["evaluate", "--model", name]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mbrnn evaluate: error: cannot load model {name!r}: ")
    assert f"no such folder {name!r}" in err and "Traceback" not in err


@pytest.mark.parametrize("module", ["mbrnn", "mbrnn.cli"])
def test_python_m_runs_the_command_line(module: str, tmp_path: Path) -> None:
    """``python -m mbrnn`` (what torchrun runs) and ``python -m mbrnn.cli``: a user error is
    one line, never a traceback."""
    proc = subprocess.run([sys.executable, "-m", module, "train", "--config=no-such-preset"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("mbrnn train: error: config preset 'no-such-preset' not found")
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", module, "train", "--help"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0 and "--memory-budget" in proc.stdout and "tiny" in proc.stdout


def test_plan_command_imports_neither_torch_nor_matplotlib() -> None:
    """Building the whole parser (train's options included) and planning stay light."""
    code = ("import sys; from mbrnn.cli import main; code = main(sys.argv[1:]); "
            "bad = sorted(m for m in ('torch', 'matplotlib') if m in sys.modules); "
            "print(bad); sys.exit(1 if bad or code else 0)")
    proc = subprocess.run([sys.executable, "-c", code, "plan", *SMALL], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
