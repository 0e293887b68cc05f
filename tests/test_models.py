"""The zoo's models: budgeted BPTT equals plain BPTT, memory independent of the vocabulary."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mbrnn
from mbrnn.models import (
    LanguageModel,
    LanguageModelConfig,
    SequenceClassifier,
    SequenceClassifierConfig,
)
from mbrnn.nn import LSTMCell, Recurrent
from mbrnn.runtime.memory import MemoryMeter


def _lm(budget: int | str | None = None, *, vocab: int = 30, cell: str = "lstm",
        drop: float = 0.0, size: int = 8, layers: int = 2, dtype: torch.dtype = torch.float64,
        adaptive: bool = False) -> LanguageModel:
    torch.manual_seed(0)
    cfg = LanguageModelConfig(vocab_size=vocab, cell=cell, embedding_size=size, hidden_size=size,
                              num_layers=layers, dropout=drop, embedding_dropout=drop,
                              weight_dropout=drop, memory_budget=budget,
                              adaptive_cutoffs=[vocab // 3, 2 * vocab // 3] if adaptive else [],
                              adaptive_div_value=2.0)
    return LanguageModel(cfg).to(dtype)


def _loss_and_grads(model: LanguageModel, ids: torch.Tensor, seed: int = 1):
    model.zero_grad()
    torch.manual_seed(seed)
    loss, state = model(ids[:-1], ids[1:])
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()], state


POLICIES = ("auto", "msm", "hsm", "ism", "chen", "store_all")


@pytest.mark.filterwarnings("ignore:.*only with .* forward steps:UserWarning")
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_lm_budgeted_gradients_equal_plain_autograd(cell: str, layers: int,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """NOTE [ The readout inside the budget ]: both readouts (eager and in the kept
    runs' graph), with every dropout on, every policy, budgets from the minimum to
    storing everything: float64 gradients within 1e-10 of plain autograd's over the
    same masks, and the same loss."""
    ids = torch.randint(0, 30, (41, 3), generator=torch.Generator().manual_seed(0))
    plain = _lm(None, cell=cell, layers=layers, drop=0.3).train()
    l0, g0, s0 = _loss_and_grads(plain, ids)
    model = _lm(1, cell=cell, layers=layers, drop=0.3).train()
    steps = set()
    for eager in (True, False):
        model.config.readout = "eager" if eager else "graph"
        low = model.minimum_budget(40, 3)
        for policy in POLICIES:
            model.config.policy = policy
            for budget in (low, 2 * low, 2**40):
                model.config.memory_budget = budget
                try:
                    loss, g, state = _loss_and_grads(model, ids)
                except mbrnn.InfeasibleBudgetError:
                    assert policy in ("chen", "store_all")  # fixed-shape baselines
                    continue
                assert model.last_plan is not None and model.last_plan.predicted_peak <= budget
                steps.add(model.last_plan.forward_steps)
                assert float(loss) == pytest.approx(float(l0), rel=0, abs=1e-12)
                for a, b in zip(g, g0, strict=True):
                    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
                for a, b in zip(state, s0, strict=True):
                    torch.testing.assert_close(a, b)
    assert len(steps) >= 3  # the plans really differed


@pytest.mark.parametrize("bias", [True, False])
def test_lm_eager_readout_chunked_softmax_equals_autograd(bias: bool) -> None:
    """The hand-written readout, in one pass and in two over vocabulary chunks (the
    log-sum-exp first), equals autograd's cross-entropy: losses, output gradients and
    the decoder's accumulated gradients, the output mask applied."""
    from mbrnn.models.lm_segment import readout_rows

    model = _lm(None, vocab=37, size=6).train()
    assert model.decoder is not None
    if not bias:
        model.decoder.bias = None
    gen = torch.Generator().manual_seed(3)
    y = torch.randn(5, 4, 6, generator=gen, dtype=torch.float64)
    targets = torch.randint(0, 37, (5, 4), generator=gen)
    mask = (torch.rand(4, 6, generator=gen) > 0.3).to(torch.float64) / 0.7
    leaf = y.clone().requires_grad_()
    ref = F.cross_entropy(model.decoder(leaf * mask).view(-1, 37), targets.view(-1),
                          reduction="none")
    params = [p for p in model.decoder.parameters()]
    want = torch.autograd.grad(ref.sum(), [leaf, *params])
    for chunk in (37, 100, 8, 5, 1):
        rows = y * mask  # the buffer holds the masked outputs
        acc = [torch.zeros_like(p) for p in params]
        loss = readout_rows(model, rows, targets, mask, chunk, acc)
        torch.testing.assert_close(loss, ref.view(5, 4), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(rows, want[0], rtol=1e-12, atol=1e-12)  # d loss / d y
        for a, w in zip(acc, want[1:], strict=True):
            torch.testing.assert_close(a, w, rtol=1e-12, atol=1e-12)


def test_lm_softmax_transient_bounds_the_measured_readout() -> None:
    """The planner charges :func:`softmax_transient` for the eager readout: it bounds
    the measured allocation, one pass and two, and is not loose by more than 2x."""
    from mbrnn.models.lm_segment import Shape, readout_rows, softmax_transient

    V, H, B = 5000, 32, 6
    model = _lm(None, vocab=V, size=H, dtype=torch.float32).train()
    for steps, chunk in ((1, V), (7, V), (7, 300), (3, 128)):
        rows = torch.randn(steps, B, H)
        targets = torch.randint(0, V, (steps, B))
        acc = [torch.zeros_like(p) for p in model._readout_params()]
        with MemoryMeter("cpu") as meter:
            readout_rows(model, rows, targets, None, chunk, acc)
        bound = softmax_transient(B, H, V, Shape(steps, chunk), 4)
        assert meter.peak <= bound, (steps, chunk, meter.peak, bound)
        assert meter.peak >= bound / 2, (steps, chunk, meter.peak, bound)


def test_lm_eager_readout_across_pieces_and_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The eager readout waits for whole groups of steps across the first sweep's calls
    (one-step runs under recomputation) and reads out chunked: gradients equal plain
    autograd's whatever the shape."""
    from mbrnn.models import language_model as lm
    from mbrnn.models.lm_segment import Shape

    ids = torch.randint(0, 30, (41, 3), generator=torch.Generator().manual_seed(0))
    plain = _lm(None, drop=0.3).train()
    l0, g0, _ = _loss_and_grads(plain, ids)
    model = _lm(1, drop=0.3).train()
    model.config.readout, model.config.policy = "eager", "recompute_all"
    model.config.memory_budget = 2**40
    for shape in (Shape(1, 30), Shape(7, 30), Shape(6, 4), Shape(64, 11)):
        monkeypatch.setattr(lm.LanguageModel, "_readout_shapes",
                            lambda self, T, B, budget, transient, s=shape: [s])
        loss, g, _ = _loss_and_grads(model, ids)
        assert model.last_plan is not None and model.last_plan.plan.policy == "recompute_all"
        assert float(loss) == pytest.approx(float(l0), rel=0, abs=1e-12)
        for a, b in zip(g, g0, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_lm_adaptive_softmax_equals_torchs_on_full_logits() -> None:
    """Grave et al. (2017) through the budgeted path: the loss is torch's
    AdaptiveLogSoftmaxWithLoss, and evaluation's perplexity is exact (log-probabilities
    of the full vocabulary)."""
    ids = torch.randint(0, 60, (21, 2), generator=torch.Generator().manual_seed(3))
    model = _lm("1MiB", vocab=60, adaptive=True)
    assert model.adaptive is not None and model.decoder is None
    model.eval()
    with torch.no_grad():
        loss, _ = model(ids[:-1], ids[1:])
        log_probs, _ = model(ids[:-1])  # (T, B, V)
        torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(20, 2, dtype=log_probs.dtype))
        exact = -log_probs.gather(-1, ids[1:].unsqueeze(-1)).mean()
        torch.testing.assert_close(loss, exact)
    model.train()
    budgeted, _ = model(ids[:-1], ids[1:])
    h = model.embed(ids[:-1], model._draw_masks(2))  # no dropout: masks are none
    y, _ = model._segment(model._draw_masks(2), model._weights())._piece(0, h, model._flat_state(None, 2), None)
    reference = model.adaptive(y.reshape(-1, 8), ids[1:].reshape(-1)).loss
    torch.testing.assert_close(budgeted, reference)


def test_lm_locked_dropout_is_one_mask_per_sequence() -> None:
    model = _lm(None, drop=0.5, layers=2).train()
    masks = model._draw_masks(6)
    assert masks.embedding is not None and masks.embedding.shape == (6, 8)
    assert masks.layers is not None and [m.shape for m in masks.layers] == [(6, 8)]
    assert masks.words is not None and masks.words.shape == (30,)  # whole words of the vocabulary
    assert set(masks.embedding.unique().tolist()) <= {0.0, 2.0}
    model.eval()
    none = model._draw_masks(6)
    assert none.embedding is None and none.layers is None and none.words is None


def test_lm_logits_path_matches_loss_path_and_carries_state() -> None:
    model = _lm(None).eval()
    ids = torch.randint(0, 30, (21, 2), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        loss, state = model(ids[:-1], ids[1:])
        logits, state2 = model(ids[:-1])
        assert logits.shape == (20, 2, 30)
        ce = F.cross_entropy(logits.reshape(-1, 30), ids[1:].reshape(-1))
        torch.testing.assert_close(loss, ce)
        torch.testing.assert_close(state, state2)
        # two halves with the state carried equal one pass
        a, s = model(ids[:10], ids[1:11])
        b, _ = model(ids[10:20], ids[11:21], s)
        torch.testing.assert_close((a + b) / 2, loss)


def _step_peak(model: nn.Module, *args: object) -> int:
    with MemoryMeter("cpu") as meter:
        out = model(*args)
        loss = out[0] if isinstance(out, tuple) else out
        loss.backward()
    return meter.peak


def test_lm_whole_training_step_within_budget_word_level() -> None:
    """V = 33k, T = 1,000: the whole step (forward, loss, backward) within the budget,
    the (T, B, vocab) logits never all held."""
    T, B, V = 1000, 2, 33_278
    model = _lm(None, vocab=V, size=16, layers=2, dtype=torch.float32).train()
    ids = torch.randint(0, V, (T + 1, B), generator=torch.Generator().manual_seed(0))
    budget = int(1.05 * model.minimum_budget(T, B))
    model.config.memory_budget = budget
    peak = _step_peak(model, ids[:-1], ids[1:])
    assert peak <= budget, (peak, budget)
    assert peak < T * B * V * 4  # one copy of the logits would not fit
    assert model.last_plan is not None and model.last_plan.forward_steps > T  # recomputed


def test_lm_whole_training_step_within_budget_char_level() -> None:
    """A long window of a small vocabulary (the readout in the kept runs' graph)."""
    T, B, V = 5000, 2, 65
    model = _lm(None, vocab=V, size=16, layers=2, dtype=torch.float32).train()
    ids = torch.randint(0, V, (T + 1, B), generator=torch.Generator().manual_seed(0))
    store = model.plan_for(T, B, memory_budget=None).predicted_peak
    budget = max(int(0.05 * store), model.minimum_budget(T, B))
    model.config.memory_budget = budget
    model.config.readout = "graph"  # what auto chooses here: no (T, B, H) gradient fits
    peak = _step_peak(model, ids[:-1], ids[1:])
    assert peak <= budget, (peak, budget)
    assert model.last_plan is not None and model.last_plan.forward_steps > T


def test_classifier_whole_training_step_within_budget_packed() -> None:
    """T = 5,000 packed sequences of mixed lengths: no (T, B, H) output is made, and the
    whole step fits the budget."""
    from torch.nn.utils.rnn import pack_padded_sequence

    T, B = 5000, 4
    lengths = torch.tensor([5000, 3100, 4200, 900])
    x = torch.randn(T, B, 3, generator=torch.Generator().manual_seed(0))
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    model = SequenceClassifier(SequenceClassifierConfig(3, 5, hidden_size=32))
    store = model.rnn.plan_for(T, B, memory_budget=None, packed=True).predicted_peak
    budget = max(int(0.05 * store), model.rnn.minimum_budget(T, B, packed=True))
    model.rnn.memory_budget = budget
    peak = _step_peak(model, packed, torch.tensor([0, 1, 2, 3]))
    assert peak <= budget, (peak, budget)
    assert peak < T * B * 32 * 4  # not even one (T, B, H) output


def test_lm_generate() -> None:
    model = _lm(None, dtype=torch.float32)
    prompt = torch.tensor([1, 2, 3])
    out = model.generate(prompt, 7, temperature=1.0, top_k=5, generator=torch.Generator().manual_seed(0))
    again = model.generate(prompt, 7, temperature=1.0, top_k=5, generator=torch.Generator().manual_seed(0))
    assert out.shape == (10,) and torch.equal(out[:3], prompt) and torch.equal(out, again)
    assert int(out.max()) < 30
    greedy = model.generate(prompt, 5, temperature=0.0)
    top1 = model.generate(prompt, 5, temperature=1.0, top_k=1)
    assert torch.equal(greedy, top1)
    assert model.training  # restored
    with pytest.raises(ValueError, match="prompt_ids"):
        model.generate(torch.tensor([], dtype=torch.long), 3)
    with pytest.raises(ValueError, match="temperature"):
        model.generate(prompt, 3, temperature=float("nan"))


def test_lm_ties_weights_only_when_sizes_match() -> None:
    tied = LanguageModel(LanguageModelConfig(vocab_size=20, embedding_size=8, hidden_size=8))
    untied = LanguageModel(LanguageModelConfig(vocab_size=20, embedding_size=8, hidden_size=12))
    assert tied.decoder is not None and tied.decoder.weight is tied.embedding.weight
    assert untied.decoder is not None and untied.decoder.weight.shape == (20, 12)


def test_lm_old_checkpoints_load() -> None:
    """Format-1 state dicts (a per-step cell: cell.layers.0.weight_ih, ...) load."""
    model = _lm(None, layers=2)
    old = {}
    for name, t in model.state_dict().items():
        if name.startswith("rnn."):
            base, layer = name[4:].rsplit("_l", 1)
            old[f"cell.layers.{layer}.{base}"] = t.clone()
        else:
            old[f"cell.{name}"] = t.clone()
    fresh = _lm(None, layers=2)
    torch.manual_seed(9)
    for p in fresh.parameters():
        p.data.normal_()
    fresh.load_state_dict(old, strict=True)
    for a, b in zip(fresh.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_lm_config_and_input_validation() -> None:
    with pytest.raises(TypeError, match="hidden_size"):
        LanguageModelConfig(vocab_size=10, hidden_size="8")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cell"):
        LanguageModelConfig(vocab_size=10, cell="transformer")
    with pytest.raises(ValueError, match="unknown keys"):
        LanguageModelConfig.from_dict({"vocab_size": 10, "heads": 4})
    with pytest.raises(ValueError, match="adaptive_cutoffs"):
        LanguageModelConfig(vocab_size=10, adaptive_cutoffs=[5, 3])
    with pytest.raises(TypeError, match="fraction"):
        LanguageModelConfig(vocab_size=10, memory_budget=0.5)  # type: ignore[arg-type]
    model = _lm(None)
    with pytest.raises(TypeError, match="int64"):
        model(torch.randn(5, 2))
    with pytest.raises(ValueError, match="targets"):
        model(torch.zeros(5, 2, dtype=torch.long), torch.zeros(4, 2, dtype=torch.long))


def test_recurrent_still_rejects_integer_input_for_float_cells() -> None:
    with pytest.raises(TypeError, match="floating-point"):
        Recurrent(LSTMCell(2, 4))(torch.zeros(3, 2, 2, dtype=torch.long))


@pytest.mark.parametrize("bidirectional", [False, True])
def test_classifier_budgeted_grads_equal_plain(bidirectional: bool) -> None:
    x = torch.randn(20, 3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 2, 1])
    grads = []
    for budget in (None, "tight"):
        torch.manual_seed(0)
        model = SequenceClassifier(SequenceClassifierConfig(
            2, 3, hidden_size=8, num_layers=2, bidirectional=bidirectional)).double()
        if budget == "tight":
            model.rnn.memory_budget = model.rnn.minimum_budget(20, 3)
        loss, logits = model(x, labels)
        assert logits.shape == (3, 3)
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    assert model.rnn.last_plan is not None and model.rnn.last_plan.forward_steps > 20
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_classifier_reads_each_packed_sequence_to_its_own_end(bidirectional: bool) -> None:
    """A packed batch gives each sequence the logits it gets alone, and the same
    gradients, within a budget."""
    from torch.nn.utils.rnn import pack_sequence

    torch.manual_seed(0)
    model = SequenceClassifier(SequenceClassifierConfig(
        2, 4, hidden_size=6, num_layers=2, bidirectional=bidirectional,
        memory_budget="64KiB")).double()
    seqs = [torch.randn(n, 2, dtype=torch.float64) for n in (9, 4, 13)]
    labels = torch.tensor([3, 0, 1])
    loss, logits = model(pack_sequence(seqs, enforce_sorted=False), labels)
    alone = torch.cat([model(s[:, None, :]) for s in seqs])
    torch.testing.assert_close(logits, alone, rtol=1e-10, atol=1e-12)
    loss.backward()
    packed_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    torch.nn.functional.cross_entropy(alone, labels).backward()
    for a, b in zip(packed_grads, [p.grad for p in model.parameters()], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
    with pytest.raises(ValueError, match="PackedSequence"):
        model(pack_sequence(seqs, enforce_sorted=False), labels, truncate=3)
    with pytest.raises(ValueError, match=r"labels have shape \(2,\), expected \(3,\)"):
        model(pack_sequence(seqs, enforce_sorted=False), labels[:2])


def test_classifier_truncate_cuts_the_gradient() -> None:
    torch.manual_seed(0)
    model = SequenceClassifier(SequenceClassifierConfig(1, 2, hidden_size=8)).double()
    x = torch.randn(30, 2, 1, dtype=torch.float64, requires_grad=True)
    loss, _ = model(x, torch.tensor([0, 1]), truncate=5)
    loss.backward()
    assert x.grad is not None
    assert torch.count_nonzero(x.grad[:25]) == 0 and torch.count_nonzero(x.grad[25:]) > 0
    with pytest.raises(ValueError, match="3D"):
        model(torch.randn(30, 1))
    bi = SequenceClassifier(SequenceClassifierConfig(1, 2, hidden_size=8, bidirectional=True))
    with pytest.raises(ValueError, match="truncate=5 needs a unidirectional model"):
        bi(torch.randn(30, 2, 1), torch.tensor([0, 1]), truncate=5)
