"""DL-PVC networks, training (checkpoint, resume, seed), inference with activity conservation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from refsuite.pvc import Architecture, Schedule, TrainConfig, build_network, correct, gaussian_blur, load_model, save_model, train


def _toy_data(n=6, shape=(8, 8, 8), seed=0):
    """Blurred random blocks as 'SPECT', the blocks as truth (no projector: fast)."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((n, *shape))
    for i in range(n):
        z, y, x = rng.integers(1, 5, 3)
        truth[i, z:z + 3, y:y + 3, x:x + 3] = rng.uniform(1, 2)
    blurred = np.array([gaussian_blur(t, fwhm_mm=8.0, voxel_size_mm=4.8) for t in truth])
    return {"truth": truth.astype(np.float32), "RR_n": blurred.astype(np.float32)}


CFG = TrainConfig(features=(2, 4), epochs=2, batch_size=2, val_fraction=0.25, inputs=("RR_n",), seed=3)


@pytest.mark.parametrize("arch,features", [(Architecture.UNET, (2, 2, 4, 4, 8)), (Architecture.R2UNET, (2, 4, 8))])
def test_untrained_network_is_identity_and_conserves(arch, features):
    torch.manual_seed(0)
    model = build_network(arch, features=features)
    img = _toy_data(1, (12, 20, 20))["RR_n"][0].astype(np.float64)
    out = correct(img, model)
    assert np.allclose(out, img, rtol=1e-5, atol=1e-6 * img.max())
    patched = correct(img, model, patch=32)
    assert abs(patched.sum() / img.sum() - 1) < 1e-9


def test_training_learns_is_reproducible_and_resumes(tmp_path):
    data = _toy_data(4)
    a = train(data, config=CFG, checkpoint_dir=tmp_path / "a", progress=False)
    # interrupted after one epoch, then resumed: identical to the uninterrupted run (so the
    # training is reproducible from its seed too: c is a second run from scratch)
    one = TrainConfig(**{**CFG.__dict__, "epochs": 1})
    train(data, config=one, checkpoint_dir=tmp_path / "c", progress=False)
    state = torch.load(tmp_path / "c" / "last.pt", weights_only=False)
    state["config"] = CFG.as_json()  # pretend the 2-epoch run stopped after epoch 0
    torch.save(state, tmp_path / "c" / "last.pt")
    c = train(data, config=CFG, checkpoint_dir=tmp_path / "c", progress=False)
    assert len(c.history) == 2
    for pa, pc in zip(a.model.state_dict().values(), c.model.state_dict().values()):
        assert torch.equal(pa, pc)
    assert (tmp_path / "a" / "last.pt").exists() and (tmp_path / "a" / "best.pt").exists()
    with pytest.raises(ValueError, match="another configuration"):
        train(data, config=TrainConfig(**{**CFG.__dict__, "learning_rate": 0.5}), checkpoint_dir=tmp_path / "a",
              progress=False)
    save_model(tmp_path / "m.pt", a)
    m = load_model(tmp_path / "m.pt")
    img = data["RR_n"][0].astype(np.float64)
    assert np.allclose(correct(img, m), correct(img, a.model))


def test_training_reduces_loss():
    data = _toy_data(4)
    cfg = TrainConfig(features=(4, 8), epochs=8, batch_size=1, val_fraction=0.0, inputs=("RR_n",), learning_rate=1e-2)
    res = train(data, config=cfg, progress=False)
    assert res.history[-1]["train_loss"] < 0.7 * res.history[0]["train_loss"]


def test_cosine_schedule_and_options():
    from refsuite.pvc.training import _learning_rate

    cfg = TrainConfig(epochs=4, learning_rate=0.02, schedule=Schedule.COSINE.value)
    assert [_learning_rate(cfg, e) for e in range(4)] == pytest.approx([0.02, 0.01 * (1 + np.cos(np.pi / 4)), 0.01,
                                                                        0.01 * (1 + np.cos(3 * np.pi / 4))])
    const = TrainConfig(epochs=4, learning_rate=0.02, schedule="constant")
    assert {_learning_rate(const, e) for e in range(4)} == {0.02}
    with pytest.raises(ValueError, match="not a valid Schedule"):
        TrainConfig(schedule="linear")


def test_output_is_non_negative_and_never_loses_its_gradients():
    """The stall the earlier max(0, x + r) output fell into: a strongly negative last bias
    zeroed the output and every gradient. With y = x exp(r) the output stays >= 0 and the
    gradients reach the whole network; in training the conservation step is applied too."""
    from refsuite.pvc.training import _output

    torch.manual_seed(1)
    model = build_network(Architecture.R2UNET, features=(2, 4))
    head = model.net.head
    torch.nn.init.normal_(head.weight, std=1.0)
    torch.nn.init.constant_(head.bias, -5.0)
    x = torch.from_numpy(_toy_data(2, (8, 8, 8))["RR_n"][:, None])
    x = x / x.amax(dim=(1, 2, 3, 4), keepdim=True)
    y = _output(model.train(), x, TrainConfig(features=(2, 4)))
    assert torch.isfinite(y).all() and (y >= 0).all()
    assert torch.allclose(y.sum(dim=(1, 2, 3, 4)), x.sum(dim=(1, 2, 3, 4)), rtol=1e-5)
    (y - 2 * x).abs().mean().backward()
    first = model.net.down[0].proj.weight.grad
    assert first is not None and first.abs().sum() > 0
    patch_cfg = TrainConfig(features=(2, 4), patch=8)
    assert not torch.allclose(_output(model, x, patch_cfg).sum(dim=(1, 2, 3, 4)), x.sum(dim=(1, 2, 3, 4)))


def test_correct_bad_inputs():
    model = build_network(Architecture.R2UNET, features=(2, 4))
    img = np.ones((8, 8, 8))
    bad = img.copy()
    bad[1, 1, 1] = np.nan
    with pytest.raises(ValueError, match="image must be finite"):
        correct(bad, model)
    with pytest.raises(ValueError, match="positive total activity"):
        correct(np.zeros((8, 8, 8)), model)
    with pytest.raises(ValueError, match="3-D"):
        correct(np.ones((8, 8)), model)
    with pytest.raises(ValueError, match="patch must be a multiple"):
        correct(img, model, patch=9)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given when CUDA is absent")
def test_cuda_request_without_cuda_is_a_clear_error():
    with pytest.raises(RuntimeError, match="cuda is required"):
        correct(np.ones((8, 8, 8)), build_network(Architecture.R2UNET, features=(2, 4)), device="cuda")


def test_masked_ssim_of_the_loss_equals_the_metric():
    # the L1+SSIM loss must optimise what the study scores: refsuite.metrics.ssim (scikit-image)
    from scipy.ndimage import gaussian_filter

    from refsuite.metrics import ssim
    from refsuite.pvc.training import masked_ssim

    rng = np.random.default_rng(0)
    truths, images = [], []
    for _ in range(3):
        t = np.zeros((16, 24, 24))
        t[4:12, 6:18, 5:15] = rng.uniform(0.2, 1.0, (8, 12, 10))
        t = gaussian_filter(t, 0.7) * (t > 0)
        truths.append(t * rng.uniform(1, 100))  # the data range differs per sample
        images.append(gaussian_filter(truths[-1], 1.5) + rng.normal(0, 0.05 * truths[-1].max(), t.shape))
    as_t = lambda a: torch.tensor(np.array(a)[:, None], dtype=torch.float32)  # noqa: E731
    ours = masked_ssim(as_t(images), as_t(truths)).numpy()
    reference = [ssim(i, t, t > 0) for i, t in zip(images, truths)]
    assert ours == pytest.approx(reference, abs=1e-4)
    perfect = masked_ssim(as_t(truths), as_t(truths)).numpy()
    assert perfect == pytest.approx(1.0, abs=1e-5)


def test_l1_ssim_loss_trains_and_has_gradients_on_empty_patches():
    from refsuite.pvc.training import _l1_plus_masked_ssim

    empty = torch.zeros((1, 1, 16, 16, 16))
    image = torch.rand((1, 1, 16, 16, 16), requires_grad=True)
    _l1_plus_masked_ssim(image, empty).backward()
    assert torch.isfinite(image.grad).all()
    data = _toy_data(4)
    cfg = TrainConfig(features=(4, 8), epochs=8, batch_size=1, val_fraction=0.0, inputs=("RR_n",), learning_rate=1e-2,
                      loss="l1+ssim")
    res = train(data, config=cfg, progress=False)
    assert res.history[-1]["train_loss"] < 0.7 * res.history[0]["train_loss"]


def test_direct_output_form_trains_and_round_trips(tmp_path):
    from refsuite.pvc import Output

    torch.manual_seed(0)
    model = build_network(Architecture.R2UNET, features=(2, 4), output=Output.DIRECT)
    img = _toy_data(1, (8, 8, 8))["RR_n"][0].astype(np.float64)
    out = correct(img, model)  # the paper's form is not the identity before training, but conserves
    assert not np.allclose(out, img, rtol=1e-2) and (out >= 0).all() and abs(out.sum() / img.sum() - 1) < 1e-9
    with pytest.raises(TypeError, match="output must be an Output"):
        build_network(Architecture.R2UNET, features=(2, 4), output="direct")
    with pytest.raises(ValueError, match="not a valid Output"):
        TrainConfig(output="residual")
    data = _toy_data(4)
    cfg = TrainConfig(features=(2, 4), epochs=2, batch_size=2, val_fraction=0.0, inputs=("RR_n",), output="direct")
    res = train(data, config=cfg, progress=False)
    assert res.model.output is Output.DIRECT
    save_model(tmp_path / "m.pt", res)
    m = load_model(tmp_path / "m.pt")
    assert m.output is Output.DIRECT and np.allclose(correct(img, m), correct(img, res.model))


def test_ssim_weight_and_flips_options():
    from refsuite.pvc.training import _batches, _loss_fn

    image, target = torch.rand((2, 1, 16, 16, 16)), torch.rand((2, 1, 16, 16, 16))
    l1 = float(torch.nn.functional.l1_loss(image, target))
    one = float(_loss_fn(TrainConfig(loss="l1+ssim"))(image, target))
    three = float(_loss_fn(TrainConfig(loss="l1+ssim", ssim_weight=3.0))(image, target))
    assert three - l1 == pytest.approx(3 * (one - l1), rel=1e-5) and one > l1
    with pytest.raises(ValueError, match="ssim_weight"):
        TrainConfig(ssim_weight=-1.0)
    x = np.arange(4 * 4 * 6 * 8, dtype=np.float32).reshape(4, 4, 6, 8)
    seen = {}
    for flips in (True, False):
        cfg = TrainConfig(batch_size=4, flips=flips)
        seen[flips] = [xb.numpy()[:, 0] for _ in range(8)
                       for xb, _ in _batches(x, x, cfg, np.random.default_rng(_), 1)]
    assert all(np.array_equal(np.sort(b, axis=0), np.sort(x, axis=0)) for b in seen[False])  # only shuffled
    assert any(not np.array_equal(np.sort(b.reshape(4, -1), axis=0), np.sort(x.reshape(4, -1), axis=0))
               for b in seen[True])  # some batch was flipped
