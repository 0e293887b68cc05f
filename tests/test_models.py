"""The zoo's models: budgeted BPTT equals plain BPTT, memory independent of the vocabulary."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mbrnn.models import (
    LanguageModel,
    LanguageModelConfig,
    SequenceClassifier,
    SequenceClassifierConfig,
)
from mbrnn.nn import LSTMCell, Recurrent
from mbrnn.runtime.memory import MemoryMeter


def _lm(budget: int | None = None, *, vocab: int = 30, cell: str = "lstm", drop: float = 0.0,
        size: int = 8, layers: int = 2, dtype: torch.dtype = torch.float64) -> LanguageModel:
    torch.manual_seed(0)
    cfg = LanguageModelConfig(vocab_size=vocab, cell=cell, embedding_size=size, hidden_size=size,
                              num_layers=layers, dropout=drop, embedding_dropout=drop,
                              weight_dropout=drop, memory_budget=budget)
    return LanguageModel(cfg).to(dtype)


def _loss_and_grads(model: LanguageModel, ids: torch.Tensor, seed: int = 1):
    model.zero_grad()
    torch.manual_seed(seed)
    loss, state = model(ids[:-1], ids[1:])
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()], state


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_lm_budgeted_loss_and_grads_equal_plain(cell: str) -> None:
    ids = torch.randint(0, 30, (31, 3), generator=torch.Generator().manual_seed(0))
    plain = _lm(None, cell=cell)
    budgeted = _lm(None, cell=cell)
    budget = budgeted.recurrent.minimum_budget(30, 3)
    budgeted.recurrent.memory_budget = budget
    l1, g1, s1 = _loss_and_grads(plain, ids)
    l2, g2, s2 = _loss_and_grads(budgeted, ids)
    assert budgeted.recurrent.last_plan is not None
    assert budgeted.recurrent.last_stats.forward_steps > 30  # it did recompute
    torch.testing.assert_close(l2, l1, rtol=0, atol=1e-12)
    for a, b in zip(g2, g1, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(s2, s1)


def test_lm_dropout_masks_replay_under_recompute() -> None:
    # All three dropouts on: a tight budget (recomputing) and a loose one (storing all)
    # run the same per-step seeds, so they must agree exactly.
    ids = torch.randint(0, 30, (25, 4), generator=torch.Generator().manual_seed(1))
    loose, tight = _lm(2**30, drop=0.3), _lm(None, drop=0.3)
    tight.recurrent.memory_budget = tight.recurrent.minimum_budget(24, 4)
    l1, g1, _ = _loss_and_grads(loose, ids)
    l2, g2, _ = _loss_and_grads(tight, ids)
    assert tight.recurrent.last_stats.forward_steps > loose.recurrent.last_stats.forward_steps
    assert l1 == l2
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_lm_locked_dropout_is_one_mask_per_sequence() -> None:
    model = _lm(None, drop=0.5, layers=1).train()
    masks = model.cell.draw_masks(6, torch.device("cpu"))
    assert [m.shape for m in masks] == [(6, 8), (6, 8)]
    assert all(m.dtype == torch.bool for m in masks)
    # the masks ride in the state: passed through every step unchanged
    state = (model.cell.init_layer_states(6), masks)
    x = torch.stack([torch.zeros(6, dtype=torch.long), torch.ones(6, dtype=torch.long)], 1)
    _, (_, out_masks) = model.cell(x, state)
    assert all(a is b for a, b in zip(out_masks, masks, strict=True))
    model.eval()
    assert all(bool(m.all()) for m in model.cell.draw_masks(6, torch.device("cpu")))


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


def test_lm_training_memory_does_not_grow_with_vocab() -> None:
    T, B = 50, 8
    budget = 1_500_000
    peaks = {}
    for vocab in (50, 5000):
        model = _lm(budget, vocab=vocab, size=16, layers=1, dtype=torch.float32)
        ids = torch.randint(0, vocab, (T + 1, B), generator=torch.Generator().manual_seed(0))
        assert model.recurrent.minimum_budget(T, B) <= budget
        params = sum(p.numel() * p.element_size() for p in model.parameters())
        with MemoryMeter("cpu") as meter:
            loss, _ = model(ids[:-1], ids[1:])
            loss.backward()
        # gradients of the parameters are allocated in the region; the rest is the budget's
        peaks[vocab] = meter.peak - params
        assert peaks[vocab] <= budget, (vocab, peaks[vocab])
    full_logits = T * B * 5000 * 4
    assert peaks[5000] < full_logits / 2  # the (T, B, vocab) logits were never all held


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


def test_lm_ties_weights_only_when_sizes_match() -> None:
    tied = LanguageModel(LanguageModelConfig(vocab_size=20, embedding_size=8, hidden_size=8))
    untied = LanguageModel(LanguageModelConfig(vocab_size=20, embedding_size=8, hidden_size=12))
    assert tied.cell.decoder.weight is tied.cell.embedding.weight
    assert untied.cell.decoder.weight.shape == (20, 12)


def test_lm_config_and_input_validation() -> None:
    with pytest.raises(TypeError, match="hidden_size"):
        LanguageModelConfig(vocab_size=10, hidden_size="8")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cell"):
        LanguageModelConfig(vocab_size=10, cell="transformer")
    with pytest.raises(ValueError, match="unknown keys"):
        LanguageModelConfig.from_dict({"vocab_size": 10, "heads": 4})
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
