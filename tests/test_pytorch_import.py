"""Importing PyTorch checkpoints: exact logits against an independent PyTorch network.

Checkpoints are built here with torch from `torch_reference` (random weights, random BN
statistics, shifts, PReLU slopes with negative ones, latent weights with a few |w| > 1) in
every accepted form; the imported Keras model must reproduce the reference's logits.
"""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch_reference as ref  # noqa: E402

import adambnn_larq as ab  # noqa: E402
from adambnn_larq.deploy import pytorch_import as pt  # noqa: E402

INPUT_SIZE = 32  # ReActNet-A's full graph: 32 -> 16 (stem) -> 8 -> 4 -> 2 -> 1
SAMPLES = 16
# A sign input closer to 0 than this may flip between float32 implementations (docs/method.md
# §2, "Comparing two implementations").
SIGN_MARGIN = 1e-5
MIN_COMPARED = 4


# --------------------------------------------------------------------------- checkpoints


def _randomize_reactnet(model: ref.ReActNetAReference, weights: str, g: torch.Generator):
    """Random parameters; ``weights``: "latent" (step 2), "real" (step 1) or "pm1" (released)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".move" in name:
                p.normal_(0.0, 0.2, generator=g)
            elif ".prelu" in name:
                p.uniform_(-0.5, 0.8, generator=g)  # negative slopes included
            elif ".binary_" in name and weights == "pm1":
                p.copy_(torch.where(torch.rand(p.shape, generator=g) < 0.5, -1.0, 1.0))
            elif ".binary_" in name:
                p.normal_(0.0, 0.05, generator=g)
                # float32 normal_ returns an exact 0 about once per 10^7 draws; sign(0) is 0 in
                # PyTorch and +1 in larq/LCE (docs/method.md §2), a measure-zero case kept out of
                # here (the importer warns about it, see test_auto_step_rules_and_notes).
                p[p == 0] = 0.01
                if weights == "latent":  # a few latent weights beyond the clip range
                    big = torch.rand(p.shape, generator=g) < 2e-3
                    p[big] = torch.sign(p[big]) * (1 + 2 * torch.rand(int(big.sum()), generator=g))
            elif "bn" in name and name.endswith("weight"):
                p.uniform_(0.5, 1.5, generator=g)
            elif "bn" in name and name.endswith("bias"):
                p.normal_(0.0, 0.3, generator=g)
            elif name == "feature.0.conv1.weight":
                p.normal_(0.0, 0.2, generator=g)
            elif name == "fc.weight":
                p.normal_(0.0, p.shape[1] ** -0.5, generator=g)
            elif name == "fc.bias":
                p.normal_(0.0, 0.1, generator=g)
            else:
                raise AssertionError(f"no rule for {name}")


def _randomize_resnet(model: ref.ResNet34Reference, g: torch.Generator):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 4:
                p.normal_(0.0, (2.0 / p[0].numel()) ** 0.5, generator=g)
            elif name.endswith("weight") and name != "fc.weight":
                p.uniform_(0.3, 1.2, generator=g)
            elif name == "fc.weight":
                p.normal_(0.0, p.shape[1] ** -0.5, generator=g)
            else:
                p.normal_(0.0, 0.2, generator=g)


def _random_batch_norm_statistics(
    model: torch.nn.Module, g: torch.Generator, size: int = INPUT_SIZE
) -> None:
    """Moderate random BN statistics: measured on random images, then perturbed.

    Statistics of the network's own activations keep every layer's output in a sane range
    (like a trained network's); the perturbation makes them arbitrary.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration pass
    model.train()
    with torch.no_grad():
        model(torch.randn(16, 3, size, size, generator=g))
        for bn in norms:
            bn.momentum = 0.1
            std = bn.running_var.sqrt()
            bn.running_mean += 0.2 * std * torch.randn(std.shape, generator=g)
            bn.running_var *= 0.6 + 0.8 * torch.rand(std.shape, generator=g)
            bn.num_batches_tracked.fill_(1000)
    model.eval()


def _reactnet(weights: str, num_classes: int, seed: int) -> ref.ReActNetAReference:
    g = torch.Generator().manual_seed(seed)
    model = ref.ReActNetAReference(num_classes)
    model.set_weight_mode("binary" if weights == "latent" else "real")
    _randomize_reactnet(model, weights, g)
    _random_batch_norm_statistics(model, g)
    return model


def _with_prefix(state: dict) -> dict:
    return {f"module.{key}": value for key, value in state.items()}


def _training_checkpoint(model: torch.nn.Module, weight_decay: float) -> dict:
    """The official training scripts' checkpoint dict, DataParallel prefix and Adam state."""
    conv_weights = [p for name, p in model.named_parameters() if p.dim() == 4 or "conv" in name]
    ids = {id(p) for p in conv_weights}
    others = [p for p in model.parameters() if id(p) not in ids]
    optimizer = torch.optim.Adam(
        [{"params": others}, {"params": conv_weights, "weight_decay": weight_decay}], lr=1.25e-3
    )
    return {
        "epoch": 255,
        "state_dict": _with_prefix(model.state_dict()),
        "best_top1_acc": torch.tensor(70.5),
        "optimizer": optimizer.state_dict(),
    }


def _reactnet_step2_naming(state: dict) -> dict:
    """ReActNet's own step-2 code: ``binary_*.weights`` of shape (O*I*k*k, 1)."""
    return {
        (f"{key}s" if ".binary_" in key else key): (
            value.reshape(-1, 1) if ".binary_" in key else value
        )
        for key, value in state.items()
    }


def _varied_inputs(seed: int, size: int = INPUT_SIZE, n: int = SAMPLES) -> torch.Tensor:
    """Gaussian images at different contrasts and offsets, NCHW."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, size, size, generator=g)
    scale = 0.5 + 1.5 * torch.rand(n, 1, 1, 1, generator=g)
    offset = 0.5 * torch.randn(n, 3, 1, 1, generator=g)
    return x * scale + offset


def _keras_logits(model, x: torch.Tensor) -> np.ndarray:
    return model(x.permute(0, 2, 3, 1).numpy(), training=False).numpy()


def _reference_logits(model, x: torch.Tensor):
    """float64 logits, smallest |sign input| per sample, and the float32 vs float64 gap."""
    with torch.no_grad():
        logits32, _ = model.forward_with_margins(x)
        logits64, margins = copy.deepcopy(model).double().forward_with_margins(x.double())
    gap = (logits32.double() - logits64).abs().amax(dim=1)
    return logits64.numpy(), margins.numpy(), gap.numpy()


def _assert_matches_reference(keras_model, reference, x, *, relative: bool = False) -> dict:
    """Compare on the samples where the comparison is meaningful; return what was measured."""
    expected, margins, gap = _reference_logits(reference, x)
    scale = float(np.abs(expected).max())
    trusted = (margins > SIGN_MARGIN) & (gap <= 1e-4 * max(1.0, scale))
    assert trusted.sum() >= MIN_COMPARED, f"only {trusted.sum()} comparable samples: {margins}"
    actual = _keras_logits(keras_model, x)
    diff = float(np.abs(actual[trusted] - expected[trusted]).max())
    tolerance = 1e-3 * scale if relative else 1e-3
    assert diff <= tolerance, f"max |keras - torch| = {diff} > {tolerance} (scale {scale})"
    np.testing.assert_array_equal(actual[trusted].argmax(1), expected[trusted].argmax(1))
    assert len(set(expected[trusted].argmax(1))) > 1, "inputs should not all get one class"
    return {"diff": diff, "scale": scale, "compared": f"{trusted.sum()} of {len(x)}"}


def _run_cli(*args: str):
    return subprocess.run(
        [sys.executable, "-m", "adambnn_larq", *args], capture_output=True, text=True, timeout=600
    )


# --------------------------------------------------------------------------- exactness


def _case_cli_training_checkpoint(tmp_path) -> dict:
    reference = _reactnet("latent", num_classes=1000, seed=1)
    checkpoint = tmp_path / "checkpoint.pth.tar"
    torch.save(_training_checkpoint(reference, weight_decay=0.0), checkpoint)
    output = tmp_path / "reactnet_a.h5"

    result = _run_cli(
        "import-pytorch", str(checkpoint), "--output", str(output), "--input-size", "32"
    )

    assert result.returncode == 0, result.stderr
    assert "training checkpoint, 298 entries, epoch 255, best_top1_acc 70.50" in result.stdout
    assert "step: 2 (auto: optimizer weight decay 0" in result.stdout
    model = ab.load_model(output)
    assert model.name == "reactnet_a" and model.output_shape == (None, 1000)
    return _assert_matches_reference(model, reference, _varied_inputs(seed=11))


@pytest.mark.slow
def test_cli_imports_training_checkpoint_and_output_loads(tmp_path):
    """Training dict, 'module.' prefix, AdamBNN naming, latent weights, 1000 classes."""
    _case_cli_training_checkpoint(tmp_path)


def _case_released_model(tmp_path) -> dict:
    reference = _reactnet("pm1", num_classes=10, seed=3)  # "real" mode: W * x as stored
    state = {
        key: value
        for key, value in _reactnet_step2_naming(reference.state_dict()).items()
        if not key.endswith("num_batches_tracked")
    }
    assert len(state) == 298 - 32  # 32 BatchNorm layers, each without num_batches_tracked
    path = tmp_path / "released.pth"
    torch.save(state, path)

    model, report = pt.import_pytorch(path, input_shape=(INPUT_SIZE, INPUT_SIZE, 3))

    assert report.step == 2 and "binary_*.weights" in report.step_reason
    assert report.num_classes == 10 and not report.notes
    quantizer = model.get_layer("block5_conv3x3").kernel_quantizer
    assert isinstance(quantizer, ab.quantizers.ChannelScaledSign)
    return _assert_matches_reference(model, reference, _varied_inputs(seed=13), relative=True)


@pytest.mark.slow
def test_released_model_reactnet_naming_plus_minus_one_weights(tmp_path):
    """ReActNet's release: bare state_dict, `.weights` (O*I*k*k, 1) holding ±1 with the scale in
    BN, no num_batches_tracked. The reference computes plain ±1 convs; the imported step-2
    model's alpha = mean|W| = 1 must compute the same."""
    _case_released_model(tmp_path)


def _case_step1_override(tmp_path) -> dict:
    reference = _reactnet("real", num_classes=10, seed=4)
    path = tmp_path / "step1.pth"
    torch.save(_with_prefix(reference.state_dict()), path)

    model, report = pt.import_pytorch(path, step=1, input_shape=(INPUT_SIZE, INPUT_SIZE, 3))

    assert report.step == 1 and report.step_reason == "set by the caller"
    assert model.name == "reactnet_a_step1"
    x = _varied_inputs(seed=14)
    measured = _assert_matches_reference(model, reference, x)
    # The comparison can tell the steps apart: these weights binarized give other logits.
    reference.set_weight_mode("binary")
    step2_logits, _, _ = _reference_logits(reference, x)
    assert np.abs(_keras_logits(model, x) - step2_logits).max() > 0.1
    return measured


def test_step1_override_on_prefixed_bare_real_weights(tmp_path):
    """A bare step-1 state_dict with 'module.' prefix (real weights) and --step 1."""
    _case_step1_override(tmp_path)


# --------------------------------------------------------------------------- step rule


@pytest.fixture(scope="module")
def real_reference():
    """A ReActNet-A with real weights and moderate statistics (no Keras model built)."""
    return _reactnet("real", num_classes=10, seed=5)


def _inspect(path, **kwargs) -> pt.ImportReport:
    return pt.inspect_reactnet_a(pt.load_pytorch_checkpoint(path), **kwargs)


def test_auto_step_rules_and_notes(tmp_path, real_reference):
    model = real_reference
    pm1 = {
        k: torch.where(v < 0, -1.0, 1.0) if ".binary_" in k else v
        for k, v in model.state_dict().items()
    }
    cases = {
        "step1_training.pth": (_training_checkpoint(model, weight_decay=5e-6), 1, "5e-06 > 0"),
        "step2_training.pth": (_training_checkpoint(model, weight_decay=0.0), 2, "decay 0"),
        "bare.pth": (model.state_dict(), 2, "cannot tell"),
        "bare_prefixed.pth": (_with_prefix(model.state_dict()), 2, "cannot tell"),
        "reactnet_step2.pth": (_reactnet_step2_naming(model.state_dict()), 2, "binary_*.weights"),
        # ±1 weights win over the optimizer's decay: both steps compute the same on them.
        "pm1.pth": (_training_checkpoint(model, 5e-6) | {"state_dict": pm1}, 2, "exactly ±1"),
    }
    for name, (content, step, reason) in cases.items():
        torch.save(content, tmp_path / name)
        report = _inspect(tmp_path / name)
        assert (report.step, reason in report.step_reason) == (step, True), (name, report)
    report = _inspect(tmp_path / "step1_training.pth", step=2)
    assert (report.step, report.step_reason) == (2, "set by the caller")

    state = model.state_dict()
    state["feature.4.binary_pw_down2.weight"][3, 5] = 0.0
    state["feature.9.binary_3x3.weight"][0, 0, 1, 1] = 0.0
    torch.save(state, tmp_path / "zeros.pth")
    assert any(
        "2 binary conv weights are exactly 0" in n for n in _inspect(tmp_path / "zeros.pth").notes
    )
    assert not _inspect(tmp_path / "zeros.pth", step=1).notes  # real weights: 0 is just 0
    report = _inspect(tmp_path / "reactnet_step2.pth", step=1)
    assert report.step == 1 and "used as real-valued weights" in report.notes[0]


# --------------------------------------------------------------------------- ResNet-34


def _case_resnet34(tmp_path) -> list[dict]:
    g = torch.Generator().manual_seed(6)
    reference = ref.ResNet34Reference(num_classes=20)
    _randomize_resnet(reference, g)
    _random_batch_norm_statistics(reference, g, size=64)
    with torch.no_grad():  # center the classifier: post-ReLU features share a large mean
        reference.fc.bias -= reference(torch.randn(16, 3, 64, 64, generator=g)).mean(dim=0)
    path = tmp_path / "resnet34.pth"
    # torchvision 0.8's resnet34-333f7ec4.pth predates the zip format: save the legacy one.
    torch.save(reference.state_dict(), path, _use_new_zipfile_serialization=False)

    model, report = pt.import_pytorch(path, input_shape=(None, None, 3))

    assert report.architecture == "resnet34" and report.num_classes == 20
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    assert trainable == sum(p.numel() for p in reference.parameters())
    measured = []
    for size in (64, 57):  # even and odd: symmetric padding at every stride-2 layer
        x = _varied_inputs(seed=size, size=size, n=8)
        with torch.no_grad():
            expected = copy.deepcopy(reference).double()(x.double()).numpy()
        actual = _keras_logits(model, x)
        diff = float(np.abs(actual - expected).max())
        assert diff <= 1e-3, (size, diff)
        np.testing.assert_array_equal(actual.argmax(1), expected.argmax(1))
        assert len(set(expected.argmax(1))) > 1, "inputs should not all get one class"
        scale = float(np.abs(expected).max())
        measured.append(
            {"size": size, "diff": diff, "scale": scale, "compared": f"{len(x)} of {len(x)}"}
        )
    return measured


def test_resnet34_teacher_import_matches_torchvision_layout(tmp_path):
    """Legacy (pre-zip) torchvision state_dict, any input size."""
    _case_resnet34(tmp_path)


def test_resnet34_builder_has_torchvision_parameter_count():
    model = ab.ResNet34()
    assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == 21_797_672
    assert model.output_shape == (None, 1000)
    assert ab.ResNet34(include_top=False, input_shape=(64, 64, 3)).output_shape == (
        None,
        2,
        2,
        512,
    )


# --------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def valid_state():
    """A valid ReActNet-A state_dict (zeros are fine: nothing is compared)."""
    return ref.ReActNetAReference(num_classes=10).state_dict()


def _import_fails(tmp_path, content, *args, **kwargs) -> str:
    path = tmp_path / "bad.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    output = tmp_path / "out.h5"
    with pytest.raises(pt.CheckpointError) as error:
        pt.import_pytorch(path, output, *args, **kwargs)
    assert not output.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.pth"]  # no temporary left either
    return str(error.value)


def test_missing_unexpected_and_misshaped_keys_are_named(tmp_path, valid_state):
    state = dict(valid_state)
    del state["feature.3.bn1.running_var"]
    state["feature.3.bn1.wieght"] = state.pop("feature.3.bn1.weight")
    state["feature.5.binary_3x3.weight"] = torch.zeros(256, 256, 1, 1)
    message = _import_fails(tmp_path, state)
    assert "missing 2 keys: feature.3.bn1.weight, feature.3.bn1.running_var" in message
    assert "unexpected 1 key: feature.3.bn1.wieght" in message
    assert "feature.5.binary_3x3.weight has shape (256, 256, 1, 1), expected (256, 256, 3, 3)" in (
        message
    )


def test_wrong_step2_weights_shape_is_named(tmp_path, valid_state):
    state = _reactnet_step2_naming(valid_state)
    state["feature.13.binary_pw.weights"] = torch.zeros(1024 * 1024 - 1, 1)
    message = _import_fails(tmp_path, state)
    assert "feature.13.binary_pw.weights has shape (1048575, 1)" in message
    assert "(1048576, 1)" in message


def test_other_network_is_refused(tmp_path):
    resnet = ref.ResNet34Reference().state_dict()
    layer4 = [k for k in resnet if k.startswith("layer4") and "num_batches" not in k]
    three_stages = {k: v for k, v in resnet.items() if not k.startswith("layer4")}
    message = _import_fails(tmp_path, three_stages)
    assert "does not match ResNet-34" in message
    assert f"missing {len(layer4)} keys: layer4.0.conv1.weight" in message
    message = _import_fails(tmp_path, {"encoder.weight": torch.zeros(3, 3)})
    assert "not a ReActNet-A" in message and "encoder.weight" in message
    # Forced to ReActNet-A, a ResNet-34 shares only fc.weight (mis-shaped) and fc.bias.
    reactnet_keys = [k for k in ref.ReActNetAReference().state_dict() if "num_batches" not in k]
    message = _import_fails(tmp_path, resnet, architecture="reactnet_a")
    assert "does not match ReActNet-A" in message
    assert f"missing {len(reactnet_keys) - 2} keys" in message
    assert "fc.weight has shape (1000, 512), expected (1000, 1024)" in message


def test_class_count_mismatch(tmp_path, valid_state):
    message = _import_fails(tmp_path, valid_state, num_classes=1000)
    assert "class count mismatch: 1000 classes requested" in message
    assert "fc.weight has shape (10, 1024)" in message


def test_corrupt_and_truncated_files(tmp_path, valid_state):
    buffer = tmp_path / "full.pth"
    torch.save(valid_state, buffer)
    data = buffer.read_bytes()
    buffer.unlink()
    for content in (data[: len(data) // 2], data[:100], b"", b"not a checkpoint" * 10):
        assert "not a readable PyTorch checkpoint" in _import_fails(tmp_path, content)
    state = dict(valid_state)
    state["feature.2.bn1.running_var"] = torch.full((64,), float("nan"))
    assert "NaN or infinite values in feature.2.bn1.running_var" in _import_fails(tmp_path, state)
    with pytest.raises(pt.CheckpointError, match="checkpoint not found"):
        pt.import_pytorch(tmp_path / "missing.pth", tmp_path / "out.h5")


@pytest.mark.slow
def test_cli_reports_error_without_traceback_or_output(tmp_path, valid_state):
    path = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 3, "state_dict": _with_prefix(valid_state)}, path)
    output = tmp_path / "model.h5"
    result = _run_cli("import-pytorch", str(path), "--output", str(output), "--num-classes", "5")
    assert result.returncode == 2
    assert "class count mismatch" in result.stderr and "Traceback" not in result.stderr
    assert not output.exists()


# --------------------------------------------------------------------------- malicious files


class _Payload:
    """Unpickling this calls os.system, which creates a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.slow
def test_malicious_checkpoint_is_refused_without_running_code(tmp_path, valid_state):
    marker = tmp_path / "payload_ran"
    torch_file = tmp_path / "evil.pth.tar"
    torch.save({"epoch": 1, "state_dict": valid_state, "optimizer": _Payload(marker)}, torch_file)
    raw_pickle = tmp_path / "evil.pkl"
    raw_pickle.write_bytes(pickle.dumps({"state_dict": _Payload(marker)}))
    output = tmp_path / "out.h5"

    with pytest.raises(pt.CheckpointError, match=r"refused: .* would call posix\.system"):
        pt.import_pytorch(torch_file, output)
    with pytest.raises(pt.CheckpointError, match=r"refused: the file is a pickle \(pickle pro"):
        pt.import_pytorch(raw_pickle, output)
    result = _run_cli("import-pytorch", str(torch_file), "--output", str(output))
    assert result.returncode == 2 and "refused" in result.stderr and "system" in result.stderr
    assert not marker.exists(), "a payload ran"
    assert not output.exists()

    # Control: both payloads are live; unrestricted unpickling runs them.
    torch.load(torch_file, weights_only=False)
    assert marker.exists()
    marker.unlink()
    pickle.loads(raw_pickle.read_bytes())
    assert marker.exists()


def test_whole_pickled_model_is_refused_with_advice(tmp_path):
    """torch.save(model) pickles the class by reference: refused, with the fix named."""
    message = _import_fails(tmp_path, ref.ResNet34Reference(num_classes=2))
    assert "would call torch_reference.ResNet34Reference" in message
    assert "state_dict()" in message


if __name__ == "__main__":
    # The measurements quoted in docs/pretrained.md: python tests/test_pytorch_import.py
    import tempfile

    cases = [
        (
            "training checkpoint, `module.`, `.weight`, latent, 1000 classes (CLI + load_model)",
            "2 (auto)",
            _case_cli_training_checkpoint,
        ),
        (
            "bare, `.weights` (O·I·k·k, 1), ±1, no num_batches_tracked",
            "2 (auto)",
            _case_released_model,
        ),
        ("bare, `module.`, real weights", "1 (--step 1)", _case_step1_override),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for index, (form, step, case) in enumerate(cases):
            run_dir = Path(directory) / str(index)
            run_dir.mkdir()
            rows.append((f"ReActNet-A {INPUT_SIZE}×{INPUT_SIZE}: {form}", step, case(run_dir)))
        run_dir = Path(directory) / "resnet"
        run_dir.mkdir()
        for measured in _case_resnet34(run_dir):
            size = measured["size"]
            rows.append((f"ResNet-34 {size}×{size}, legacy format, 20 classes", "–", measured))
    for form, step, m in rows:
        print(f"| {form} | {step} | {m['diff']:.2e} | {m['scale']:.1f} | {m['compared']} |")
