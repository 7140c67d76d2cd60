"""genre_core.models.cnn: shapes, input checks, device choice, gradient flow."""

from __future__ import annotations

import pytest
import torch

from genre_core.config import CNNConfig
from genre_core.models.cnn import SliceCNN, pick_device


@pytest.mark.parametrize(("channels", "n_mels", "n_frames"), [((16, 32, 64, 128), 128, 128), ((8, 16), 32, 32),
                                                             ((8, 16, 32), 64, 40)])
def test_output_shape_4d_and_3d_inputs(channels: tuple[int, ...], n_mels: int, n_frames: int) -> None:
    torch.manual_seed(0)
    model = SliceCNN(10, CNNConfig(channels=channels), n_mels=n_mels, n_frames=n_frames).eval()
    x = torch.randn(3, 1, n_mels, n_frames)
    out4 = model(x)
    out3 = model(x[:, 0])
    assert out4.shape == (3, 10)
    torch.testing.assert_close(out4, out3)
    probs = model.predict_proba(x)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(3))


def test_wrong_input_shape_is_refused() -> None:
    model = SliceCNN(4, CNNConfig(channels=(8, 16)), n_mels=32, n_frames=32)
    with pytest.raises(ValueError, match="expected input"):
        model(torch.randn(2, 1, 32, 64))
    with pytest.raises(ValueError, match="expected input"):
        model(torch.randn(2, 2, 32, 32))


def test_bad_construction_arguments() -> None:
    with pytest.raises(ValueError, match="n_classes"):
        SliceCNN(1)
    with pytest.raises(ValueError, match="channels"):
        SliceCNN(3, CNNConfig(channels=()))
    with pytest.raises(ValueError, match="too small"):
        SliceCNN(3, CNNConfig(channels=(8, 8, 8, 8, 8)), n_mels=16, n_frames=16)


def test_default_model_is_compact() -> None:
    model = SliceCNN(10, CNNConfig())
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params < 200_000


def test_batch_independence_in_eval_mode() -> None:
    torch.manual_seed(1)
    model = SliceCNN(5, CNNConfig(channels=(8, 16)), n_mels=32, n_frames=32).eval()
    x = torch.randn(6, 32, 32)
    with torch.no_grad():
        together = model(x)
        alone = torch.cat([model(x[i:i + 1]) for i in range(6)])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


def test_gradients_reach_every_parameter() -> None:
    model = SliceCNN(3, CNNConfig(channels=(8, 16)), n_mels=32, n_frames=32).train()
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 32, 32)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_pick_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device() == torch.device("cuda")


def test_resolve_device_in_the_computing_process() -> None:
    from genre_core.models.cnn import resolve_device

    assert resolve_device("auto", gpu_reserved=False) == torch.device("cpu")
    assert resolve_device("cpu", gpu_reserved=True) == torch.device("cpu")
    if not torch.cuda.is_available():   # a GPU reserved where torch sees none is an error, not a silent CPU run
        with pytest.raises(RuntimeError, match="GPU reserved for this process.*sees no CUDA device"):
            resolve_device("auto", gpu_reserved=True)
        with pytest.raises(RuntimeError, match="sees no CUDA device"):
            resolve_device("cuda", gpu_reserved=False)
