"""DPO: the loss against hand-worked values and a slow reference, the pairs file, pairs built from
samples, their token encoding (never a doubled BOS or EOS), validation, and a run from a file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from tokenizers import processors

from rlexp.algos.preference import dpo_loss
from rlexp.config.validate import validate
from rlexp.data.pairs import Pair, PairsFileError, encode_pair, load_pairs, pairs_from_samples
from rlexp.data.tasks import build_task
from rlexp.data.tasks.arithmetic import ArithmeticTask
from rlexp.models.tiny import build_tiny_llama
from rlexp.models.tokenizer import build_char_tokenizer
from rlexp.runtime.errors import ConfigError
from rlexp.train import run
from rlexp.trainers.dpo import DPOUpdate, collate_pairs, reference_logps, sampled_pairs
from tests.conftest import TINY, compose_cfg, read_jsonl

# ---------------------------------------------------------------------------- the loss


def _slow_dpo(pc, pr, rc, rr, beta: float, kind: str) -> tuple[float, list[float]]:
    """Pair by pair in plain Python: (mean loss, margins β·h)."""
    losses, margins = [], []
    for a, b, c, d in zip(pc, pr, rc, rr, strict=True):
        h = (a - c) - (b - d)
        if kind == "sigmoid":
            losses.append(-math.log(1.0 / (1.0 + math.exp(-beta * h))))
        else:
            losses.append((h - 1.0 / (2.0 * beta)) ** 2)
        margins.append(beta * h)
    return sum(losses) / len(losses), margins


def test_zero_margin_gives_log_2_and_ipo_its_target() -> None:
    x = torch.tensor([-3.0, -7.5, -0.2])
    loss, stats = dpo_loss(x, x, x, x, beta=0.1)
    assert loss.item() == pytest.approx(math.log(2))
    assert stats["reward_margin"].item() == 0.0 and stats["accuracy"].item() == 0.0
    # IPO at h = 0: (0 − 1/(2β))² = (1/0.2)² = 25
    assert dpo_loss(x, x, x, x, beta=0.1, kind="ipo")[0].item() == pytest.approx(25.0)
    # same policy and reference margins (Δpolicy = Δref) are also zero margin
    loss, _ = dpo_loss(x, x - 1, x + 2, x + 1, beta=0.5)
    assert loss.item() == pytest.approx(math.log(2))


def test_hand_worked_values_for_both_kinds() -> None:
    # pair 0: chosen +1 over ref, rejected −1 under ref → h = 2
    # pair 1: chosen −1,          rejected +1           → h = −2
    pc, pr = torch.tensor([-1.0, -3.0]), torch.tensor([-3.0, -1.0])
    rc, rr = torch.tensor([-2.0, -2.0]), torch.tensor([-2.0, -2.0])
    loss, stats = dpo_loss(pc, pr, rc, rr, beta=0.5)
    # β·h = ±1: (log(1 + e^−1) + log(1 + e^1)) / 2 = (0.313262 + 1.313262) / 2
    assert loss.item() == pytest.approx((0.3132617 + 1.3132617) / 2, abs=1e-6)
    assert stats["reward_margin"].item() == pytest.approx(0.0)  # (1 + −1) / 2
    assert stats["reward_chosen"].item() == pytest.approx(0.0)  # 0.5 · (1 + −1) / 2
    assert stats["accuracy"].item() == pytest.approx(0.5)
    one = dpo_loss(pc[:1], pr[:1], rc[:1], rr[:1], beta=0.5)[1]
    assert one["reward_chosen"].item() == 0.5 and one["reward_rejected"].item() == -0.5
    assert one["reward_margin"].item() == 1.0 and one["accuracy"].item() == 1.0
    # IPO, β = 0.5 → target 1/(2β) = 1: ((2 − 1)² + (−2 − 1)²) / 2 = (1 + 9) / 2
    assert dpo_loss(pc, pr, rc, rr, beta=0.5, kind="ipo")[0].item() == pytest.approx(5.0)


def test_gradient_raises_chosen_and_lowers_rejected() -> None:
    for kind in ("sigmoid", "ipo"):
        pc = torch.tensor([-4.0, -2.0], requires_grad=True)
        pr = torch.tensor([-4.0, -1.0], requires_grad=True)
        rc, rr = torch.tensor([-4.0, -2.0], requires_grad=True), torch.tensor([-4.0, -1.0])
        loss, _ = dpo_loss(pc, pr, rc, rr, beta=0.1, kind=kind)  # h = 0 < 1/(2β)
        loss.backward()
        assert (pc.grad < 0).all() and (pr.grad > 0).all(), kind  # descent: chosen ↑, rejected ↓
        assert rc.grad is None  # the reference is a constant
    # sigmoid: d/dh −log σ(βh) = −β σ(−βh); at h = 0 that is −β/2 per pair, averaged over 2 pairs
    torch.testing.assert_close(
        torch.autograd.grad(dpo_loss(pc, pr, rc.detach(), rr, beta=0.1)[0], pc)[0],
        torch.tensor([-0.025, -0.025]),
    )


@pytest.mark.parametrize("kind", ["sigmoid", "ipo"])
@pytest.mark.parametrize("beta", [0.05, 0.5, 2.0])
def test_matches_a_slow_reference(kind: str, beta: float) -> None:
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (-10 * torch.rand(7, generator=g, dtype=torch.float64) for _ in range(4))
    loss, stats = dpo_loss(pc, pr, rc, rr, beta=beta, kind=kind)
    want, margins = _slow_dpo(pc.tolist(), pr.tolist(), rc.tolist(), rr.tolist(), beta, kind)
    assert loss.item() == pytest.approx(want, rel=1e-10)
    assert stats["reward_margin"].item() == pytest.approx(sum(margins) / 7, rel=1e-10)
    assert stats["accuracy"].item() == pytest.approx(sum(m > 0 for m in margins) / 7)


def test_large_margins_stay_finite_and_bad_settings_fail() -> None:
    x = torch.tensor([0.0])
    assert torch.isfinite(dpo_loss(x, x - 1e4, x, x, beta=1.0)[0])
    assert torch.isfinite(dpo_loss(x - 1e4, x, x, x, beta=1.0)[0])
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(x, x, x, x, beta=0.0)
    with pytest.raises(KeyError, match="sigmoid"):
        dpo_loss(x, x, x, x, beta=0.1, kind="hinge")


# ---------------------------------------------------------------------------- pairs


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_pairs_file_loads_and_bad_lines_name_file_and_line(tmp_path: Path) -> None:
    ok = json.dumps({"prompt": "1+2=", "chosen": "1+2=3####3", "rejected": "####4", "id": 7})
    assert (
        load_pairs(_write(tmp_path / "ok.jsonl", [ok, "", ok]))
        == [Pair("1+2=", "1+2=3####3", "####4")] * 2
    )
    cases = {
        "broken.jsonl": ([ok, ok, '{"prompt": "1+2=",'], "line 3: not valid JSON"),
        "missing.jsonl": ([ok, json.dumps({"prompt": "a", "chosen": "b"})], "line 2: missing"),
        "typed.jsonl": ([json.dumps({"prompt": "a", "chosen": "b", "rejected": 3})], "line 1"),
        "list.jsonl": (["[1, 2]"], "line 1: expected a JSON object"),
    }
    for name, (lines, needle) in cases.items():
        with pytest.raises(PairsFileError) as err:
            load_pairs(_write(tmp_path / name, lines))
        assert str(tmp_path / name) in str(err.value) and needle in str(err.value), err.value
    with pytest.raises(PairsFileError, match="missing field\\(s\\) rejected"):
        load_pairs(tmp_path / "missing.jsonl")
    with pytest.raises(PairsFileError, match="does not exist"):
        load_pairs(tmp_path / "nope.jsonl")
    with pytest.raises(PairsFileError, match="no pairs"):
        load_pairs(_write(tmp_path / "empty.jsonl", [""]))


def test_pairs_from_samples_dedupes_cycles_and_skips() -> None:
    texts = ["a", "x", "a", "y", "z", "b"]
    right = [True, False, True, False, False, True]
    assert pairs_from_samples("p", texts, right, max_pairs=1) == [Pair("p", "a", "x")]
    got = pairs_from_samples("p", texts, right, max_pairs=8)  # 2 distinct right, 3 distinct wrong
    assert [(q.chosen, q.rejected) for q in got] == [("a", "x"), ("b", "y"), ("a", "z")]
    assert pairs_from_samples("p", ["a", "b"], [True, True], max_pairs=4) == []
    assert pairs_from_samples("p", ["a", "b"], [False, False], max_pairs=4) == []


def _auto_special_tokenizer():
    """The char tokenizer, but its post-processor adds <bos> … <eos> to every text by default
    (as many hub tokenizers add BOS): the encoding must not inherit them."""
    tok = build_char_tokenizer()
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>",
        special_tokens=[("<bos>", tok.bos_token_id), ("<eos>", tok.eos_token_id)],
    )
    assert tok("1")["input_ids"] == [tok.bos_token_id, tok.convert_tokens_to_ids("1"), 2]
    return tok


def _assert_one_bos_one_eos(tokenizer, prompt_ids: list[int], completion_ids: list[int]) -> None:
    seq = prompt_ids + completion_ids
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    assert seq[0] == bos and seq.count(bos) == 1, seq
    assert seq[-1] == eos and seq.count(eos) == 1, seq


@pytest.mark.parametrize("make_tokenizer", [build_char_tokenizer, _auto_special_tokenizer])
def test_pair_tokens_never_carry_a_doubled_bos_or_eos(make_tokenizer) -> None:
    """Regression (other frameworks shipped it): BOS or EOS twice in a DPO pair's sequences."""
    tok = make_tokenizer()
    pairs = [
        Pair("12+34=", "12+34=46####46", "12+34=47####47"),
        Pair("<bos>12+34=", "12+34=46####46<eos>", "12+34=47####47<eos><eos>"),  # spelled out
        Pair("<bos><bos>9+9=", "9+9=18####18", "####<eos>"),
    ]
    encoded = [encode_pair(tok, p) for p in pairs]
    for e in encoded:
        _assert_one_bos_one_eos(tok, e.prompt, e.chosen)
        _assert_one_bos_one_eos(tok, e.prompt, e.rejected)
    assert encoded[0] == encoded[1]  # spelled-out markers change nothing
    # the padded model input: every row, pads removed, still has one BOS and one EOS
    prompt_ids, prompt_mask, completion_ids, completion_mask = collate_pairs(
        encoded, tok.pad_token_id, torch.device("cpu")
    )
    assert prompt_ids.shape[0] == completion_ids.shape[0] == 2 * len(pairs)
    for i in range(2 * len(pairs)):
        p = prompt_ids[i][prompt_mask[i].bool()].tolist()
        c = completion_ids[i][completion_mask[i].bool()].tolist()
        _assert_one_bos_one_eos(tok, p, c)
        assert c == (encoded[i % len(pairs)].chosen if i < len(pairs) else encoded[i - 3].rejected)


def test_sampled_pairs_pair_a_correct_with_an_incorrect_completion(monkeypatch) -> None:
    cfg = compose_cfg(
        [*TINY, "algorithm=dpo", "algorithm.dpo.k=4", "algorithm.dpo.n_prompts=6", "output_dir=."]
    )
    task = build_task("arithmetic", n_train=50, n_test=5)
    tok = build_char_tokenizer()
    model = build_tiny_llama(tok, hidden_size=32, num_layers=1, num_heads=2, seed=0)
    # an untrained model is never right: this verifier accepts completions of even length
    monkeypatch.setattr(ArithmeticTask, "is_correct", lambda self, c, p: len(c) % 2 == 0)
    pairs, stats = sampled_pairs(model, tok, task, cfg)
    assert stats["dpo/prompts"] == 6 and 0 < len(pairs) <= 6
    assert stats["dpo/prompts_skipped"] == 6 - len(pairs)
    prompts = {p.prompt for p in task.train}
    for pair in pairs:
        assert pair.prompt in prompts
        assert len(pair.chosen) % 2 == 0 and len(pair.rejected) % 2 == 1
        e = encode_pair(tok, pair)
        _assert_one_bos_one_eos(tok, e.prompt, e.chosen)
        _assert_one_bos_one_eos(tok, e.prompt, e.rejected)


# ---------------------------------------------------------------------------- config and runs


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["algorithm.dpo.beta=0"], "algorithm.dpo.beta=0.0 must be > 0"),
        (["algorithm.dpo.beta=-0.1"], "must be > 0"),
        (["algorithm.dpo.k=1"], "algorithm.dpo.k=1"),
        (["algorithm.dpo.kind=hinge"], "algorithm.dpo.kind=hinge"),
        (["algorithm.dpo.batch_size=0"], "batch_size"),
        (["algorithm.dpo.pairs_file=/no/such/pairs.jsonl"], "/no/such/pairs.jsonl does not exist"),
        (["resume=true"], "does not resume"),
    ],
)
def test_impossible_dpo_settings_fail_validation(overrides: list[str], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg(["algorithm=dpo", "output_dir=.", *overrides]))
    assert needle in str(err.value)


def test_a_typo_in_the_dpo_section_fails_at_composition() -> None:
    with pytest.raises(Exception, match="beat"):
        compose_cfg(["algorithm=dpo", "output_dir=.", "algorithm.dpo.beat=0.1"])


def test_a_bad_pairs_file_stops_the_run_before_any_training(tmp_path: Path) -> None:
    path = _write(tmp_path / "pairs.jsonl", ['{"prompt": "1+1=", "chosen": "2"}'])
    cfg = compose_cfg(
        [*TINY, "algorithm=dpo", f"algorithm.dpo.pairs_file={path}", "logger=none"]
        + [f"output_dir={tmp_path / 'run'}", f"cache_dir={tmp_path / 'cache'}"]
    )
    with pytest.raises(ConfigError, match=r"pairs\.jsonl, line 1: missing field\(s\) rejected"):
        run(cfg)
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run").exists()


def test_dpo_from_a_pairs_file_trains_logs_and_saves(tmp_path: Path, shared_cache: Path) -> None:
    task = build_task("arithmetic", n_train=400, n_test=40)
    rows = [
        {"prompt": p.prompt, "chosen": p.solution, "rejected": f"####{int(p.answer) + 1}"}
        for p in task.train[:12]
    ]
    path = _write(tmp_path / "pairs.jsonl", [json.dumps(r) for r in rows])
    out = tmp_path / "run"
    cfg = compose_cfg(
        [*TINY, "algorithm=dpo", f"algorithm.dpo.pairs_file={path}", "algorithm.dpo.batch_size=6"]
        + ["algorithm.micro_batch_size=4", "algorithm.lr=1e-3", "algorithm.dpo.warmup_steps=0"]
        + ["steps=3", "eval_every=3"]
        + [f"output_dir={out}", f"cache_dir={shared_cache}", "logger=none"]
    )
    run(cfg)
    metrics = read_jsonl(out / "metrics.jsonl")
    steps = [r for r in metrics if "loss/dpo" in r]
    assert len(steps) == 3 and steps[0]["dpo/pairs"] == 12
    assert steps[0]["loss/dpo"] == pytest.approx(math.log(2), abs=1e-4)  # policy = reference
    assert steps[-1]["loss/dpo"] < steps[0]["loss/dpo"]  # memorising 12 pairs at lr 1e-3
    assert steps[-1]["dpo/reward_margin"] > 0
    assert "eval/sampled_accuracy" in metrics[0] and "eval/greedy_accuracy" in metrics[-1]
    assert (out / "checkpoints" / "step_000003" / "policy" / "config.json").exists()
    assert "eval/sampled_accuracy: base" in (out / "train.log").read_text()  # the run's log


def test_micro_batches_give_the_full_batch_gradient() -> None:
    tok = build_char_tokenizer()
    task = build_task("arithmetic", n_train=20, n_test=5)
    pairs = [
        encode_pair(tok, Pair(p.prompt, p.solution, f"####{int(p.answer) + i}"))
        for i, p in enumerate(task.train[:6], start=1)
    ]
    grads = []
    for micro in (6, 4, 1):
        model = build_tiny_llama(tok, hidden_size=32, num_layers=1, num_heads=2, seed=0)
        ref = reference_logps(model, pairs, tok.pad_token_id, chunk=4)
        ref[:, 0] -= 0.5  # h = 0.5: away from the symmetric point
        cfg = compose_cfg(
            ["algorithm=dpo", "output_dir=.", "algorithm.dpo.batch_size=6"]
            + [f"algorithm.micro_batch_size={micro}"]
        )
        update = DPOUpdate(cfg, model, pairs, ref, tok.pad_token_id)
        stats = update()
        grads.append(([p.grad.clone() for p in model.parameters()], stats["loss/dpo"]))
    for got, loss in grads[1:]:
        assert loss == pytest.approx(grads[0][1], rel=1e-5)
        for a, b in zip(got, grads[0][0], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
