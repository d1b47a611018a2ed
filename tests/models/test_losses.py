"""HaltingVTLoss: hard/soft targets, prior, motion term, config keys, ponder factor."""

import torch

import haltingvt

from model_helpers import tiny_model


def test_losses_hard_soft_and_backward():
    torch.manual_seed(0)
    model = tiny_model().train()
    clips = torch.randn(4, 3, 4, 32, 32)
    out = model(clips)
    assert out.execution == "masked"
    crit = haltingvt.HaltingVTLoss(distr_prior=True, distr_target_depth=2)
    motion = torch.tensor([1, 0, 1, 0])
    hard = crit(out, torch.tensor([0, 0, 3, 3]), motion)
    soft = crit(out, torch.nn.functional.one_hot(torch.tensor([0, 0, 3, 3]), 5).float(), motion)
    torch.testing.assert_close(hard.action, soft.action)
    assert hard.prior > 0 and hard.ponder > 0 and hard.motion > 0
    hard.total.backward()
    assert model.blocks[5].mlp.fc2.weight.grad is not None
    no_motion = haltingvt.HaltingVTLoss(motion_loss=False)(out, torch.tensor([0, 0, 3, 3]), motion)
    assert no_motion.total.item() < hard.total.item()


def test_loss_from_config_rejects_unknown_keys_and_scales_ponder():
    loss_fn = haltingvt.HaltingVTLoss.from_config(haltingvt.LossConfig(ponder_token_scale=0.5))
    assert loss_fn.ponder_token_scale == 0.5
    try:
        haltingvt.HaltingVTLoss.from_config({"ponder_token_scale": 1.0, "bogus": 2})
    except ValueError as err:
        assert "bogus" in str(err)
    else:
        raise AssertionError("unknown loss key accepted")
    torch.manual_seed(0)
    model = tiny_model(depth=3)
    out = model(torch.randn(2, 3, 4, 32, 32), execution="masked")
    target, motion = torch.tensor([0, 1]), torch.tensor([1, 0])
    full, half = loss_fn(out, target, motion), loss_fn(out, target, motion, ponder_factor=0.5)
    torch.testing.assert_close(full.total - half.total, 0.25 * full.ponder)


def test_static_clips_can_train_the_motion_head_only():
    torch.manual_seed(0)
    model = tiny_model().eval()
    with torch.no_grad():
        out = model(torch.randn(4, 3, 4, 32, 32))
    target, motion = torch.tensor([0, 0, 3, 3]), torch.tensor([1, 0, 1, 0])
    release = haltingvt.HaltingVTLoss()(out, target, motion)
    real_only = haltingvt.HaltingVTLoss.from_config({"static_action_loss": False})(out, target, motion)
    expected = torch.nn.functional.cross_entropy(out.logits[[0, 2]], target[[0, 2]])
    torch.testing.assert_close(real_only.action, expected)
    torch.testing.assert_close(release.action, torch.nn.functional.cross_entropy(out.logits, target))
    torch.testing.assert_close(real_only.motion, release.motion)
