import pytest

from mrisr_ray.config import TrainConfig, warmup_epochs
from mrisr_ray.schedule import learning_rate


def test_paper_schedule_at_epochs_1_50_75_100():
    paper = TrainConfig()  # 100 epochs, 1e-4, decay after half, 2e-6 at the end
    assert learning_rate(1, paper) == 1e-4
    assert learning_rate(50, paper) == 1e-4
    assert learning_rate(75, paper) == pytest.approx(1e-4 + (2e-6 - 1e-4) * 25 / 50)
    assert learning_rate(100, paper) == pytest.approx(2e-6)


def test_schedule_is_relative_to_the_epochs_run():
    short = TrainConfig(epochs=10)
    assert [round(learning_rate(e, short), 9) for e in (5, 6, 10)] == [1e-4, round(1e-4 - 9.8e-5 / 5, 9),
                                                                      2e-6]
    assert learning_rate(1, TrainConfig(epochs=1)) == 1e-4  # a 1-epoch run trains at lr
    assert [learning_rate(e, TrainConfig(epochs=3)) for e in (2, 3)] == pytest.approx([1e-4, 2e-6])
    constant = TrainConfig(epochs=4, decay_start=1.0)
    assert {learning_rate(e, constant) for e in range(1, 5)} == {1e-4}


def test_shares_of_the_epochs_count_exactly_despite_float_products():
    """0.55 × 100 is 55.00000000000001 and 0.29 × 50 is 14.499999999999998 in floats."""
    assert learning_rate(55, TrainConfig(decay_start=0.55)) == 1e-4
    assert learning_rate(56, TrainConfig(decay_start=0.55)) < 1e-4
    assert warmup_epochs(TrainConfig(epochs=50, warmup_fraction=0.29)) == 15  # 14.5, half up
    assert warmup_epochs(TrainConfig(epochs=5, warmup_fraction=0.5)) == 3
