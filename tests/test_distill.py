"""Distillation pieces a user relies on: the class weights, the augmentations, the schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.config import load_config
from training.distill import augment, class_weights, colour_jitter, random_shift


def test_class_weights_follow_inverse_sqrt_frequency_with_mean_one() -> None:
    actions = np.array([3] * 16 + [0] * 4)  # 16 "turn left", 4 "forward", no other actions
    w = class_weights(actions, 5).numpy()
    # raw weights 1/4 and 1/2; their sample mean is (16/4 + 4/2) / 20 = 0.3
    assert w[3] == pytest.approx(0.25 / 0.3)
    assert w[0] == pytest.approx(0.5 / 0.3)
    assert w[1] == w[2] == w[4] == 0.0
    assert (w[actions]).mean() == pytest.approx(1.0)


def test_colour_jitter_keeps_red_and_only_moves_green_and_blue() -> None:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    out = colour_jitter(images, gen)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    assert torch.equal(out[:, 0], images[:, 0])
    assert not torch.equal(out[:, 1:], images[:, 1:])
    # a pure red pixel stays pure red whatever the draw
    red = torch.zeros((16, 3, 2, 2), dtype=torch.uint8)
    red[:, 0] = 220
    assert torch.equal(colour_jitter(red, gen), red)


def test_colour_jitter_is_seeded() -> None:
    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    a = colour_jitter(images, torch.Generator().manual_seed(3))
    b = colour_jitter(images, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_random_shift_moves_content_by_at_most_pad() -> None:
    images = torch.zeros((4, 1, 16, 16), dtype=torch.uint8)
    images[:, :, 8, 8] = 255
    out = random_shift(images, 2, torch.Generator().manual_seed(1), groups=4)
    for img in out:
        ys, xs = torch.nonzero(img[0] == 255, as_tuple=True)
        assert len(ys) == 1 and abs(int(ys[0]) - 8) <= 2 and abs(int(xs[0]) - 8) <= 2


def test_random_shift_without_horizontal_keeps_every_column() -> None:
    images = torch.zeros((16, 1, 16, 16), dtype=torch.uint8)
    images[:, :, 8, 8] = 255
    out = random_shift(images, 3, torch.Generator().manual_seed(1), groups=16,
                       horizontal=False)
    rows = set()
    for img in out:
        ys, xs = torch.nonzero(img[0] == 255, as_tuple=True)
        assert len(ys) == 1 and int(xs[0]) == 8 and abs(int(ys[0]) - 8) <= 3
        rows.add(int(ys[0]))
    assert len(rows) > 1  # it still shifts, up and down


def test_colour_jitter_draws_once_per_stacked_observation() -> None:
    frame = torch.randint(0, 256, (8, 3, 6, 6), dtype=torch.uint8)
    stacked = torch.cat([frame, frame], dim=1)  # two identical frames per observation
    out = colour_jitter(stacked, torch.Generator().manual_seed(5))
    assert torch.equal(out[:, :3], out[:, 3:])
    assert torch.equal(out[:, 0], stacked[:, 0]) and torch.equal(out[:, 3], stacked[:, 3])


def test_class_weights_power_zero_weighs_every_sample_alike() -> None:
    actions = np.array([3] * 16 + [0] * 4)
    w = class_weights(actions, 5, power=0.0).numpy()
    assert w[3] == w[0] == pytest.approx(1.0)
    assert w[1] == w[2] == w[4] == 0.0  # absent actions carry no weight
    # power 1: inverse frequency, so each present action carries the same total weight
    w = class_weights(actions, 5, power=1.0).numpy()
    assert w[3] * 16 == pytest.approx(w[0] * 4)


def test_balance_power_falls_linearly_to_its_final_value() -> None:
    from training.distill import balance_power

    fading = load_config("default", ["distill.balance_power_final=0"])
    assert balance_power(fading, 0.0) == 0.5
    assert balance_power(fading, 0.5) == pytest.approx(0.25)
    assert balance_power(fading, 1.0) == 0.0
    assert balance_power(fading, 1.7) == 0.0  # a run past its budget stays at the end value
    constant = load_config("default", ["distill.balance_power_final=0.5"])
    assert balance_power(constant, 0.0) == balance_power(constant, 1.0) == 0.5


def test_balance_power_final_out_of_range_is_a_config_error() -> None:
    from envs.config import ConfigError

    with pytest.raises(ConfigError, match="balance_power_final: must be in \\[0, 1\\]"):
        load_config("default", ["distill.balance_power_final=-0.5"])


@pytest.mark.parametrize("n_seq", [1, 4])
def test_augment_jitters_the_frames_and_leaves_the_command_channels(n_seq: int) -> None:
    frames = torch.randint(0, 256, (8, 6, 6, 6), dtype=torch.uint8)
    command = torch.full((8, 2, 6, 6), 191, dtype=torch.uint8)
    images = torch.cat([frames, command], dim=1)
    out = augment(images, n_seq, 1, 6, torch.Generator().manual_seed(2))
    assert out.shape == images.shape
    assert (out[:, 6:] == 191).all()  # a constant channel stays constant under shift and jitter
    assert not torch.equal(out[:, 1:3], images[:, 1:3])
    # without command channels the jitter draws exactly as colour_jitter on the frames alone
    alone = augment(frames, 1, 0, 6, torch.Generator().manual_seed(2))
    assert torch.equal(alone, colour_jitter(frames, torch.Generator().manual_seed(2)))


def test_group_nll_is_minus_log_of_the_teachers_group_probability() -> None:
    from training.distill import distribution_loss, group_nll

    # actions: forward, forward-left, forward-right (drive), turn left, turn right (turn)
    probs = torch.tensor([[0.2, 0.2, 0.2, 0.3, 0.1], [0.1, 0.1, 0.1, 0.35, 0.35]])
    logits = probs.log()
    expert = torch.tensor([3, 0])  # a turn label where 0.4 turns; a drive label where 0.3 drives
    nll = group_nll(logits, expert)
    assert nll[0].item() == pytest.approx(-np.log(0.4))
    assert nll[1].item() == pytest.approx(-np.log(0.3))

    class Dist:
        distribution = torch.distributions.Categorical(logits=logits)

    plain, _ = distribution_loss(Dist(), expert, continuous=False)
    grouped, _ = distribution_loss(Dist(), expert, continuous=False, group_weight=2.0)
    assert grouped.item() == pytest.approx(plain.item() + 2.0 * nll.mean().item())


@pytest.mark.parametrize(("name", "term"), [("group_weight", "drive-or-turn"),
                                          ("drive_side_weight", "drive-side")])
def test_bad_imitation_term_weights_are_config_errors(name: str, term: str) -> None:
    from envs.config import ConfigError

    with pytest.raises(ConfigError, match=f"{name}: must be >= 0"):
        load_config("tiny", [f"distill.{name}=-1"])
    with pytest.raises(ConfigError, match=f"{name}: the {term} term needs discrete"):
        load_config("tiny", ["continuous=true", f"distill.{name}=1"])


def test_training_while_collecting_is_deterministic_and_changes_the_schedule(tmp_path) -> None:
    """The fit runs in a second thread beside the collection, yet a seed still fixes the
    weights; taking turns (the option off) is a different schedule, so different weights."""
    from training.train import train

    def weights(name: str, overlap: bool) -> dict:
        cfg = load_config("tiny", ["eval.every_timesteps=0", "distill.total_timesteps=256",
                                   f"distill.train_while_collecting={str(overlap).lower()}"])
        result = train(cfg, tmp_path / name, quiet=True)
        return torch.load(result.final_checkpoint, weights_only=True)["state_dict"]

    first, second, turns = weights("a", True), weights("b", True), weights("c", False)
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert not all(torch.equal(first[key], turns[key]) for key in first)
    assert all(value.is_contiguous() for value in first.values())


def test_drive_side_nll_teaches_the_drive_on_the_teachers_turning_side() -> None:
    from training.distill import distribution_loss, drive_side_nll

    # actions: forward, forward-left, forward-right, turn left, turn right
    probs = torch.tensor([[0.3, 0.1, 0.2, 0.3, 0.1], [0.1, 0.2, 0.1, 0.3, 0.3],
                          [0.5, 0.1, 0.1, 0.2, 0.1]])
    logits = probs.log()
    expert = torch.tensor([3, 4, 0])  # turn left, turn right, forward
    nll = drive_side_nll(logits, expert)
    # among the drives alone: forward-left 0.1 of 0.6; forward-right 0.1 of 0.4; a drive label 0
    assert nll.tolist() == pytest.approx([-np.log(0.1 / 0.6), -np.log(0.1 / 0.4), 0.0])

    class Dist:
        distribution = torch.distributions.Categorical(logits=logits)

    plain, _ = distribution_loss(Dist(), expert, continuous=False)
    sided, _ = distribution_loss(Dist(), expert, continuous=False, side_weight=0.5)
    assert sided.item() == pytest.approx(plain.item() + 0.5 * nll.mean().item())


def test_plan_side_drives_arc_towards_the_plans_next_waypoint() -> None:
    from training.distill import drive_side_nll, plan_side_drives

    aux = np.zeros((3, 8), dtype=np.float32)
    aux[:, -1] = [0.7, -0.2, 0.0]  # the sine of the waypoint's bearing: left, right, ahead
    side = plan_side_drives(aux)
    assert side.tolist() == [1, 2, 2]  # forward-left, forward-right, forward-right
    # a search label (turn left) whose plan goes right is taught forward-right, not forward-left
    logits = torch.tensor([[0.3, 0.1, 0.2, 0.3, 0.1]]).log()
    nll = drive_side_nll(logits, torch.tensor([3]), torch.as_tensor(side[1:2]))
    assert nll.item() == pytest.approx(-np.log(0.2 / 0.6))


def test_drive_side_from_plan_needs_the_auxiliary_target() -> None:
    from envs.config import ConfigError

    with pytest.raises(ConfigError, match="drive_side_from: 'map'"):
        load_config("tiny", ["distill.drive_side_from=map"])
    with pytest.raises(ConfigError, match="set distill.aux_weight > 0 too"):
        load_config("tiny", ["distill.drive_side_from=plan", "distill.aux_weight=0"])
