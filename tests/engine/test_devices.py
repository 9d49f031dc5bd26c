"""`--device auto` picks the GPU when torch sees one; an absent GPU asked for by name is a one-line ConfigError."""

from __future__ import annotations

import pytest
import torch

from freepoint_bench.engine.devices import resolve_device
from freepoint_bench.errors import ConfigError


@pytest.fixture()
def gpus(monkeypatch):
    """Sets how many GPUs torch reports: the resolution never touches a device, only these two answers."""

    def set_count(count: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)

    return set_count


def test_auto_is_cuda_with_a_gpu_and_cpu_without(gpus):
    gpus(2)
    assert resolve_device("auto") == torch.device("cuda")
    gpus(0)
    assert resolve_device("auto") == torch.device("cpu")


def test_named_devices_resolve_when_the_machine_has_them(gpus):
    gpus(2)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("GPU") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device(torch.device("cuda", 0)) == torch.device("cuda", 0)


def test_cuda_without_cuda_is_one_line_naming_the_option_and_the_fix(gpus):
    gpus(0)
    with pytest.raises(ConfigError, match=r"^--device cuda: CUDA is not available.*use --device cpu") as e:
        resolve_device("cuda")
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=r"^--eval-device cuda:0: CUDA is not available"):
        resolve_device("cuda:0", option="--eval-device")


def test_an_absent_gpu_index_or_an_unknown_name_is_refused(gpus):
    gpus(2)
    with pytest.raises(ConfigError, match=r"--device cuda:2: this machine has 2 GPU\(s\) \(cuda:0 to cuda:1\)"):
        resolve_device("cuda:2")
    for name in ("tpu", "cuda:x", "", "mps"):
        with pytest.raises(ConfigError, match="not a device; choose auto, cpu, cuda"):
            resolve_device(name)


@pytest.mark.parametrize("command", [
    ["predict", "--checkpoint", "absent.ckpt", "--dataset", "synthetic", "--export-benchmark", "out"],
    ["pseudo-labels", "--dataset", "synthetic", "--features", "absent.ckpt"],
    ["tune", "--dataset", "synthetic", "--features", "absent.ckpt"],
])
def test_commands_refuse_a_cuda_device_the_machine_lacks_before_reading_anything(command, gpus, bench_cli, tmp_path,
                                                                                  monkeypatch):
    gpus(0)
    monkeypatch.chdir(tmp_path)
    code, out, err = bench_cli(*command, "--device", "cuda", "--cache", tmp_path / "cache")
    assert code == 2 and err.startswith("error: --device cuda: CUDA is not available"), err
    assert not (tmp_path / "cache").exists()  # refused before any data was read


def test_predict_runs_on_the_gpu_by_default_when_there_is_one(gpus, bench_cli, tmp_path, monkeypatch):
    import freepoint_bench.engine.predict as engine_predict
    from freepoint_bench.data.synthetic import SyntheticConfig, write_synthetic_dataset

    root = tmp_path / "synthetic"
    write_synthetic_dataset(root, num_scenes=1, seed=0, config=SyntheticConfig(num_points=1000))
    asked = []
    monkeypatch.setattr(engine_predict, "predict", lambda *args, device, **kwargs: asked.append(device) or [])
    gpus(1)
    code, _, err = bench_cli("predict", "--checkpoint", tmp_path / "model.ckpt", "--dataset", "synthetic", "--root",
                             root, "--cache", tmp_path / "cache", "--export-benchmark", tmp_path / "out")
    assert code == 0, err
    gpus(0)
    code, _, err = bench_cli("predict", "--checkpoint", tmp_path / "model.ckpt", "--dataset", "synthetic", "--root",
                             root, "--cache", tmp_path / "cache", "--export-benchmark", tmp_path / "out")
    assert code == 0, err
    assert asked == ["cuda", "cpu"]
