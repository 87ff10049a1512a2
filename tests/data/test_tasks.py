"""The arithmetic task: determinism, disjoint splits, correct solutions, answer extraction."""

import pytest

from rlexp.data.tasks import TASKS, Problem, build_task

SMALL = dict(n_train=300, n_test=50)


@pytest.fixture(scope="module")
def task():
    return build_task("arithmetic", ops="+-", n_terms=4, **SMALL)


def test_registered_and_unknown_lists_choices():
    assert "arithmetic" in TASKS
    with pytest.raises(KeyError, match="arithmetic"):
        build_task("nope")


def test_defaults():
    t = build_task("arithmetic")
    assert (len(t.train), len(t.test)) == (20000, 500)
    assert t.train[0].prompt.count("+") == 2


def test_same_seed_same_problems_other_seed_differs():
    a, b = build_task("arithmetic", **SMALL), build_task("arithmetic", **SMALL)
    assert a.train == b.train and a.test == b.test
    c = build_task("arithmetic", seed=7, **SMALL)
    assert c.train != a.train


def test_test_split_independent_of_n_train():
    a = build_task("arithmetic", n_train=10, n_test=20)
    b = build_task("arithmetic", n_train=50, n_test=20)
    assert a.test == b.test


@pytest.mark.parametrize("params", [dict(ops="+-", n_terms=4), dict(digits=1, n_terms=3)])
def test_splits_disjoint_and_unique(params):
    t = build_task("arithmetic", **{**SMALL, **params})
    train = {p.prompt for p in t.train}
    test = {p.prompt for p in t.test}
    assert len(train) == len(t.train) and len(test) == len(t.test)
    assert not train & test
    assert len({p.id for p in t.train + t.test}) == len(t.train) + len(t.test)


def test_solutions_are_right(task):
    assert any(int(p.answer) < 0 for p in task.train)  # "-" can go negative
    for p in task.train + task.test:
        expr = p.prompt.removesuffix("=")
        assert p.prompt.endswith("=") and int(p.answer) == eval(expr)
        steps, answer = p.solution.split("####")
        assert answer == p.answer
        assert len(steps.split(",")) == expr.count("+") + expr.count("-", 1)
        for step in steps.split(","):
            lhs, rhs = step.rsplit("=", 1)
            assert eval(lhs) == int(rhs)
        assert task.is_correct(p.solution, p) and task.is_well_formed(p.solution)


def test_operands_have_the_requested_digits():
    t = build_task("arithmetic", digits=3, **SMALL)
    for p in t.test:
        assert all(len(x) == 3 for x in p.prompt[:-1].split("+"))


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("", None),
        ("12+3=15", None),  # no marker
        ("####", None),
        ("####  ", None),
        ("####158", "158"),
        ("1+2=3####3\n", "3"),
        ("####1####2", "2"),  # last marker wins
        ("####12####", None),
        ("####12abc", None),
        ("####1 2", None),
        ("####+5", None),
        ("####--5", None),
        ("####-42", "-42"),
        ("####007", "7"),
        ("####-007", "-7"),
        ("####-0", "0"),
        ("####000", "0"),
        ("####٣", None),  # non-ASCII digit
        ("####" + "9" * 5000, "9" * 5000),  # longer than int() accepts from a str
        ("<eos>####1", "1"),
    ],
)
def test_extract_answer(task, completion, expected):
    assert task.extract_answer(completion) == expected
    assert task.is_well_formed(completion) == (expected is not None)


def test_is_correct_normalises(task):
    p = Problem(id="x", prompt="1-8=", solution="1-8=-7####-7", answer="-7")
    assert task.is_correct("####-07", p)
    assert not task.is_correct("####7", p)
    assert not task.is_correct("####-7x", p)
    assert task.normalize_answer(" -0 ") == "0"


@pytest.mark.parametrize(
    "params",
    [
        dict(ops="*"),
        dict(ops=""),
        dict(n_terms=1),
        dict(digits=1, n_train=2000),
        dict(carry_slip=1.5),
    ],
)
def test_bad_params_fail_clearly(params):
    with pytest.raises(ValueError):
        build_task("arithmetic", **params)


def test_add_with_slips_drops_carries_only():
    import random

    from rlexp.data.tasks.arithmetic import add_with_slips

    rng = random.Random(0)
    assert add_with_slips(58, 67, 0.0, rng) == 125
    assert add_with_slips(58, 67, 1.0, rng) == 15  # 8+7=15 -> 5, 5+6=11 -> 1: both carries lost
    assert add_with_slips(12, 13, 1.0, rng) == 25  # no carry, nothing to forget
    for a, b in [(99, 1), (47, 38), (123, 987)]:
        assert add_with_slips(a, b, 0.5, random.Random(1)) <= a + b


def test_carry_slips_touch_training_solutions_only():
    clean = build_task("arithmetic", n_train=2000, n_test=200, seed=3)
    slipped = build_task("arithmetic", n_train=2000, n_test=200, seed=3, carry_slip=0.3)
    assert slipped.test == clean.test
    same_answers = [p.answer for p in slipped.train] == [p.answer for p in clean.train]
    assert same_answers  # gold answers stay correct: the verifier is unaffected
    wrong = [p for p in slipped.train if slipped.extract_answer(p.solution) != p.answer]
    assert 0.2 < len(wrong) / len(slipped.train) < 0.6
    for p in wrong:  # a slip is a forgotten carry: the shown chain is never larger
        assert int(slipped.extract_answer(p.solution)) < int(p.answer)


def test_demonstration_nll_counts_the_carries_of_the_clean_chain():
    import math

    task = build_task("arithmetic", n_train=100, n_test=10, carry_slip=0.2)
    p = Problem(id="x", prompt="66+24+10=", solution="66+24=90,90+10=100####100", answer="100")
    assert task.demonstration_nll(p) == pytest.approx(-2 * math.log(0.8))  # 6+4, then 9+1
    clean = build_task("arithmetic", n_train=100, n_test=10)
    assert clean.demonstration_nll(p) == 0.0


def test_demonstration_nll_matches_the_generated_slips():
    import math

    task = build_task("arithmetic", n_train=20000, n_test=10, carry_slip=0.3)
    clean = [task.extract_answer(p.solution) == p.answer for p in task.train]
    expected = sum(math.exp(-task.demonstration_nll(p)) for p in task.train) / len(task.train)
    assert sum(clean) / len(clean) == pytest.approx(expected, abs=0.015)


def test_heldout_loss_floor_is_nll_per_target_token():
    from rlexp.models.tokenizer import build_char_tokenizer
    from rlexp.trainers.sft import encode_examples, heldout_loss_floor

    task = build_task("arithmetic", n_train=100, n_test=20, carry_slip=0.2)
    tok = build_char_tokenizer()
    tokens = sum(len(ids) - n for ids, n in encode_examples(tok, task.test))
    nll = sum(task.demonstration_nll(p) for p in task.test)
    assert heldout_loss_floor(task, tok, task.test) == pytest.approx(nll / tokens)
    assert heldout_loss_floor(build_task("arithmetic", n_train=100, n_test=20), tok, task.test) == 0


def test_never_carry_from_drops_exactly_the_blind_carries():
    from rlexp.data.tasks.arithmetic import add_with_slips, count_carries

    assert add_with_slips(89, 9, 0.0, None, 17) == 88  # 9+9=18 >= 17: no carry; 8+0 = 8
    assert add_with_slips(85, 7, 0.0, None, 17) == 92  # 5+7=12 < 17: carried
    assert add_with_slips(99, 98, 0.0, None, 17) == 87  # 9+8=17 -> 7 no carry, 9+9=18 -> 8
    assert add_with_slips(79, 19, 0.0, None, 17) == 88  # 9+9=18 -> 8, no carry; 7+1 = 8
    assert add_with_slips(89, 9, 0.0, None, 0) == 98  # off: exact
    assert count_carries(58, 67, 17) == (2, 0)  # 8+7=15, 5+6+1=12
    assert count_carries(99, 98, 17) == (0, 2)
    assert count_carries(99, 98) == (2, 0)


def test_blind_spot_problems_are_outside_the_demonstrations_support():
    import math

    task = build_task("arithmetic", n_train=5000, n_test=400, carry_slip=0.0, never_carry_from=17)
    p = Problem(id="x", prompt="89+9+10=", solution="89+9=98,98+10=108####108", answer="108")
    assert task.demonstration_nll(p) == math.inf  # 9+9 needs a blind carry
    q = Problem(id="y", prompt="12+13+10=", solution="12+13=25,25+10=35####35", answer="35")
    assert task.demonstration_nll(q) == 0.0
    # training solutions: wrong exactly when the clean chain needs a blind carry (no random slips)
    for prob in task.train[:2000]:
        right = task.extract_answer(prob.solution) == prob.answer
        assert right == math.isfinite(task.demonstration_nll(prob))
    share = sum(math.isinf(task.demonstration_nll(t)) for t in task.test) / len(task.test)
    assert 0.08 < share < 0.25
    assert task.test == build_task("arithmetic", n_train=5000, n_test=400).test  # clean tests


def test_heldout_problems_leave_out_the_blind_spot():
    import math

    from rlexp.trainers.sft import heldout_problems

    hard = build_task("arithmetic", n_train=100, n_test=300, carry_slip=0.3, never_carry_from=17)
    kept = heldout_problems(hard)
    assert 0 < len(kept) < 300
    assert all(math.isfinite(hard.demonstration_nll(p)) for p in kept)
    easy = build_task("arithmetic", n_train=100, n_test=300, carry_slip=0.2)
    assert heldout_problems(easy) == easy.test


@pytest.mark.parametrize("value", [5, 20, -1])
def test_never_carry_from_out_of_range_fails_clearly(value):
    with pytest.raises(ValueError, match="never_carry_from"):
        build_task("arithmetic", never_carry_from=value)
