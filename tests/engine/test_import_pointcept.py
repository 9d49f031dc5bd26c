"""Importing Pointcept SpUNet-v1m1 weights: numerical parity with a SpUNet built here from Pointcept's published
architecture (spconv 2.x layers, as Pointcept runs it; its encoder widens in the strided convs, our widen="down"
variant), and one-line refusals of files that do not fit."""

from __future__ import annotations

import re
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from freepoint_bench.engine.checkpoints import load_model, read_index
from freepoint_bench.engine.pointcept_import import (
    PointceptImportConfig,
    convert_state_dict,
    import_pointcept,
    pointcept_name,
)
from freepoint_bench.errors import CheckpointError, ConfigError
from freepoint_bench.models.backbone import PRESETS, BackboneConfig, PresetSpec, Res16UNet
from freepoint_bench.models.sparse import available_backends
from freepoint_bench.models.voxels import match_rows

spconv = pytest.importorskip("spconv.pytorch", reason="spconv is not installed")

# SpUNet-v1m1's defaults (Pointcept's ScanNet / S3DIS semseg and pretraining configs)
CHANNELS = (32, 64, 128, 256, 256, 128, 96, 96)
LAYERS = (2, 3, 4, 6, 2, 2, 2, 2)
# A SpUNet whose strided convs keep the width (base = channels[0..3]), the structure our default Res16UNet
# (widen="block") shares; our "tiny" preset takes these widths for the quick tests. Depths 2 and 3 check block
# indices, the decoder widths (16, 12, 12, 8) give every decoder stage a 1x1 projection and widening inverse convs.
SHARED = PresetSpec(8, (1, 2, 1, 1, 2, 1, 3, 1), (8, 8, 8, 8, 16, 12, 12, 8))


def norm(c: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(c, eps=1e-3, momentum=0.01)  # SpUNet-v1m1's norm_fn


class Block(spconv.SparseModule):
    """SpUNet-v1m1's residual block: 3x3x3 subm conv, BN, ReLU, 3x3x3 subm conv, BN, plus the input (through a 1x1
    subm conv + BN when the widths differ), ReLU."""

    def __init__(self, c_in: int, c_out: int, key: str) -> None:
        super().__init__()
        if c_in == c_out:
            self.proj = spconv.SparseSequential(nn.Identity())
        else:
            self.proj = spconv.SparseSequential(spconv.SubMConv3d(c_in, c_out, kernel_size=1, bias=False), norm(c_out))
        self.conv1 = spconv.SubMConv3d(c_in, c_out, kernel_size=3, padding=1, bias=False, indice_key=key)
        self.bn1 = norm(c_out)
        self.conv2 = spconv.SubMConv3d(c_out, c_out, kernel_size=3, padding=1, bias=False, indice_key=key)
        self.bn2 = norm(c_out)

    def forward(self, x):
        out = self.conv1(x)
        out = out.replace_feature(torch.relu(self.bn1(out.features)))
        out = self.conv2(out)
        out = out.replace_feature(self.bn2(out.features) + self.proj(x).features)
        return out.replace_feature(torch.relu(out.features))


class SpUNet(nn.Module):
    """SpUNet-v1m1 from its description: a 5x5x5 subm stem (padding 1, ignored by a subm conv) + BN + ReLU; per
    encoder stage s a k2 s2 conv from the previous width to channels[s] + BN + ReLU, then layers[s] blocks at
    channels[s]; per decoder stage (deepest first) a k2 inverse conv of the matching strided conv to the decoder
    width + BN + ReLU, then blocks over [up | skip], the first one projecting; a 1x1 classifier `final` when
    num_classes > 0. forward
    returns the features before `final`."""

    def __init__(self, in_channels: int, num_classes: int, base: int, channels: tuple[int, ...],
                 layers: tuple[int, ...]) -> None:
        super().__init__()
        self.conv_input = spconv.SparseSequential(
            spconv.SubMConv3d(in_channels, base, kernel_size=5, padding=1, bias=False, indice_key="stem"),
            norm(base), nn.ReLU())
        self.down, self.enc, self.up, self.dec = nn.ModuleList(), nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        enc_width, dec_width = base, channels[-1]
        for s in range(4):
            self.down.append(spconv.SparseSequential(
                spconv.SparseConv3d(enc_width, channels[s], kernel_size=2, stride=2, bias=False,
                                    indice_key=f"spconv{s + 1}"),
                norm(channels[s]), nn.ReLU()))
            self.enc.append(spconv.SparseSequential(OrderedDict(
                (f"block{i}", Block(channels[s], channels[s], f"subm{s + 1}")) for i in range(layers[s]))))
            up_in = channels[6 - s]  # the decoder stage below this one (the bottleneck's width for s = 3)
            self.up.append(spconv.SparseSequential(
                spconv.SparseInverseConv3d(up_in, dec_width, kernel_size=2, bias=False, indice_key=f"spconv{s + 1}"),
                norm(dec_width), nn.ReLU()))
            self.dec.append(spconv.SparseSequential(OrderedDict(
                (f"block{i}", Block(dec_width + enc_width if i == 0 else dec_width, dec_width, f"subm{s}"))
                for i in range(layers[7 - s]))))
            enc_width, dec_width = channels[s], channels[6 - s]
        if num_classes > 0:  # else an Identity, no keys
            self.final = spconv.SubMConv3d(channels[-1], num_classes, kernel_size=1, padding=1, bias=True)

    def forward(self, coords: torch.Tensor, feats: torch.Tensor):
        shape = (coords[:, 1:].max(dim=0).values + 96).tolist()  # Pointcept's sparse_shape
        x = spconv.SparseConvTensor(feats, coords, shape, int(coords[:, 0].max()) + 1)
        x = self.conv_input(x)
        skips = [x]
        for s in range(4):
            x = self.enc[s](self.down[s](x))
            skips.append(x)
        x = skips.pop()
        for s in reversed(range(4)):
            x = self.up[s](x)
            x = x.replace_feature(torch.cat((x.features, skips.pop().features), dim=1))
            x = self.dec[s](x)
        return x


def randomised(net: nn.Module, seed: int = 0) -> nn.Module:
    """Returns `net` in eval mode with He-scaled kernels and non-trivial BatchNorm statistics and affines (small
    variances too, where SpUNet's eps 1e-3 differs from ours)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.002)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
                m.num_batches_tracked.fill_(11)
            elif isinstance(m, spconv.conv.SparseConvolution):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.weight[0].numel() ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g))
    return net.eval()


def shared_spunet(in_channels: int = 6) -> SpUNet:
    return randomised(SpUNet(in_channels, 13, SHARED.init_dim, SHARED.planes, SHARED.layers))


def sample(in_channels: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (coords (M, 4) int32 [batch, x, y, z], feats (M, C)): two scenes of a few hundred voxels."""
    g = torch.Generator().manual_seed(seed)
    sites = torch.cat([torch.randint(0, 2, (1200, 1), generator=g), torch.randint(0, 20, (1200, 3), generator=g)], 1)
    coords = torch.unique(sites, dim=0).to(torch.int32)
    return coords, torch.rand(len(coords), in_channels, generator=g) * 2 - 1


def reference_features(net: SpUNet, coords: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    """Returns the SpUNet's features before `final` at the rows of `coords` (spconv's own CPU kernels, one thread:
    spconv 2.3.8's CPU gather / scatter race with more, models/sparse/spconv_backend.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            out = net(coords, feats)
    finally:
        torch.set_num_threads(threads)
    rows = match_rows(coords, out.indices.to(torch.int32))
    assert bool((rows >= 0).all())
    return out.features[rows]


@pytest.fixture(scope="module")
def published() -> dict[str, torch.Tensor]:
    """The state dict of SpUNet-v1m1 as Pointcept publishes it (6 input channels, no classifier)."""
    return SpUNet(6, 0, 32, CHANNELS, LAYERS).state_dict()


def published_spunet() -> SpUNet:
    """SpUNet-v1m1 at the published widths and depths (our 34C's), with a 13-class classifier, randomised."""
    return randomised(SpUNet(6, 13, 32, CHANNELS, LAYERS))


@pytest.fixture
def shared_preset(monkeypatch):
    """Our "tiny" preset with SHARED's widths (strided convs that keep the width) for the length of a test."""
    monkeypatch.setitem(PRESETS, "tiny", SHARED)
    return "tiny"


def pointcept_file(path, net: nn.Module | dict, prefix: str = "module.backbone.", extra: dict | None = None):
    """Writes `net` (or its state dict) as Pointcept's trainer saves a model (DDP's "module.", the segmentor's
    "backbone.")."""
    state = {f"{prefix}{k}": v for k, v in (net if isinstance(net, dict) else net.state_dict()).items()}
    torch.save({"epoch": 100, "state_dict": {**state, **(extra or {})}, "best_metric_value": 0.7}, path)
    return path


# ---------------------------------------------------------------------------------------------- parity


@pytest.mark.parametrize("structure", ["published", "shared"])
def test_imported_weights_give_the_spunets_features(tmp_path, monkeypatch, structure):
    # published: 34C's widths, the strided convs widen (our widen="down"); shared: they keep the width ("block")
    if structure == "shared":
        monkeypatch.setitem(PRESETS, "tiny", SHARED)
    net = published_spunet() if structure == "published" else shared_spunet()
    path = pointcept_file(tmp_path / "model_best.pth", net, extra={"module.seg_head.weight": torch.zeros(13, 8)})
    config = PointceptImportConfig(method="msc", dataset="scannet", scenes=("scene0000_00",))
    out, meta = import_pointcept(path, config, tmp_path / "ck")
    assert meta["source"]["dropped_keys"] == ["final.bias", "final.weight"]
    assert meta["source"]["prefix"] == "backbone." and meta["source"]["keys_outside_prefix"] == 1
    assert meta["architecture"].get("widen") == ("down" if structure == "published" else None)

    coords, feats = sample(6)
    expected = reference_features(net, coords, feats)
    scale = expected.abs().max().item()
    assert scale > 0.5
    backends = [b for b in ("spconv", "minkowski") if b in available_backends()]
    for backend in backends:
        model, _ = load_model(out, part="backbone")
        if backend == "minkowski":
            model = convert_state_dict(net.state_dict(), PointceptImportConfig(backend="minkowski"))[0]
        with torch.no_grad():
            got = model(coords, feats).feats
        err = (got - expected).abs().max().item()
        # measured, published: 5.4e-03 (spconv) and 6.4e-03 (minkowski) at a feature scale of 6,147 (the small random
        # BatchNorm variances amplify it through 34C's depth); shared: 1.9e-06 (spconv), 1.0e-06 to 2.2e-06
        # (minkowski, threaded sums) at a feature scale of 3.0
        print(f"parity {structure} {backend}: max abs diff {err:.2e} at feature scale {scale:.2f}")
        assert err < 1e-5 * scale, (backend, err, scale)


def test_every_kind_of_tensor_maps_as_spconv_computes_it(shared_preset):
    net = shared_spunet(in_channels=3)
    theirs = net.state_dict()
    model, dropped = convert_state_dict(theirs, PointceptImportConfig(input_features=("color",)))
    ours = model.state_dict()
    assert dropped == ["final.bias", "final.weight"] and len(ours) == len(theirs) - 2
    assert model.config.stem_kernel_size == 5 and model.config.in_channels == 3 and model.config.bn_momentum == 0.01
    # a k>1 kernel: spconv's (c_out, kx, ky, kz, c_in) -> ours (kx, ky, kz, c_in, c_out), same spatial axes
    assert torch.equal(ours["stem.0.weight"][4, 1, 0], theirs["conv_input.0.weight"][:, 4, 1, 0, :].T)
    assert torch.equal(ours["up4.0.weight"][1, 0, 1], theirs["up.3.0.weight"][:, 1, 0, 1, :].T)
    assert torch.equal(ours["block7.1.conv2.weight"][0, 2, 1], theirs["dec.1.block1.conv2.weight"][:, 0, 2, 1, :].T)
    # a 1x1 kernel: spconv 2.3's conv1x1 multiplies by the stored memory viewed as (c_in, c_out), not transposed
    proj = theirs["dec.1.block0.proj.0.weight"]  # (12, 1, 1, 1, 20): 12 + 8 channels in, 12 out
    assert torch.equal(ours["block7.0.downsample.0.weight"][0, 0, 0], proj.reshape(20, 12))
    x = torch.randn(5, 20)
    layer = net.dec[1].block0.proj[0]
    t = spconv.SparseConvTensor(x, torch.tensor([[0, i, 0, 0] for i in range(5)], dtype=torch.int32), [8, 8, 8], 1)
    with torch.no_grad():
        assert torch.allclose(layer(t).features, x @ proj.reshape(20, 12))
    # BatchNorm: eps 1e-3 folded into running_var; the rest as it is
    assert torch.allclose(ours["block3.0.norm2.module.running_var"],
                          theirs["enc.2.block0.bn2.running_var"] + (1e-3 - 1e-5))
    assert torch.equal(ours["down1.1.module.running_mean"], theirs["down.0.1.running_mean"])
    assert int(ours["block7.2.norm1.module.num_batches_tracked"]) == 11


def test_names_map_one_to_one_onto_the_published_spunet(published):
    # every key of Res16UNet 34C widen="down" has one SpUNet-v1m1 name, and those are exactly SpUNet's keys
    down = Res16UNet(BackboneConfig(preset="34C", in_channels=6, widen="down"))
    names = [pointcept_name(k) for k in down.state_dict()]
    assert len(set(names)) == len(names) and set(names) == set(published)  # (num_classes=0: no classifier keys)
    # the default Res16UNet widens in block{2,3,4}.0's projections, which SpUNet does not have
    default = {pointcept_name(k) for k in Res16UNet(BackboneConfig(preset="34C", in_channels=6)).state_dict()}
    unmatched = sorted(default - set(published))
    assert unmatched and all(re.match(r"enc\.[123]\.block0\.proj\.", n) for n in unmatched), unmatched


def test_the_published_spunet_loads_only_into_the_widen_down_variant(tmp_path, published):
    path = pointcept_file(tmp_path / "msc.pth", published)
    _, meta = import_pointcept(path, PointceptImportConfig(), tmp_path / "ck")
    assert meta["architecture"]["widen"] == "down"
    down = Res16UNet(BackboneConfig(preset="34C", in_channels=6, widen="down"))
    assert [n for n, _ in down.named_children()][:9] == ["stem", "down1", "block1", "down2", "block2", "down3",
                                                          "block3", "down4", "block4"]
    load_model(tmp_path / "ck" / f"{meta['id']}-backbone.ckpt", "backbone", into=down)
    with pytest.raises(CheckpointError, match=r"widen='down' in the checkpoint, None expected"):
        load_model(tmp_path / "ck" / f"{meta['id']}-backbone.ckpt", "backbone",
                   into=Res16UNet(BackboneConfig(preset="34C", in_channels=6)))


# ---------------------------------------------------------------------------------------------- refusals


def test_refusals_are_one_line_and_name_the_key_and_the_fix(tmp_path, shared_preset):
    state = shared_spunet().state_dict()
    good = PointceptImportConfig()

    def refused(bad: dict, match: str) -> None:
        with pytest.raises(CheckpointError, match=match) as e:
            convert_state_dict(bad, good, "w.pth")
        assert "\n" not in str(e.value)

    refused({k: v for k, v in state.items() if k != "dec.1.block2.bn1.running_mean"},
            r"missing keys \['dec\.1\.block2\.bn1\.running_mean'\]")
    refused({**state, "enc.0.block0.bn1.extra": torch.zeros(8)}, r"unexpected keys \['enc\.0\.block0\.bn1\.extra'\]")
    wrong = dict(state)
    wrong["enc.1.block1.conv1.weight"] = torch.zeros(8, 3, 3, 3, 7)
    refused(wrong, r"enc\.1\.block1\.conv1\.weight: \(8, 3, 3, 3, 7\) in the file, \(8, 3, 3, 3, 8\) expected")
    wrong = dict(state)
    wrong["dec.3.block0.bn2.weight"] = torch.zeros(17)
    refused(wrong, r"dec\.3\.block0\.bn2\.weight: \(17,\) in the file, \(16,\) expected")
    wrong = dict(state)
    wrong["down.2.0.weight"] = torch.zeros(9, 2, 2, 2, 8)  # another width: no preset fits
    refused(wrong, r"channels \(8, 8, 9, 8, 16, 12, 12, 8\), layers \(1, 2, 1, 1, 2, 1, 3, 1\) is none of our presets")
    with pytest.raises(CheckpointError, match="not the 34C asked for"):
        convert_state_dict(state, PointceptImportConfig(preset="34C"), "w.pth")
    with pytest.raises(CheckpointError, match="3 encoder and 4 decoder stages"):
        convert_state_dict({k: v for k, v in state.items() if not k.startswith("down.3.")}, good, "w.pth")

    # files: prefixes found, ambiguous ones refused, the input contract checked
    both = {**{f"student.backbone.{k}": v for k, v in state.items()},
            **{f"teacher.backbone.{k}": v for k, v in state.items()}}
    torch.save({"state_dict": both}, tmp_path / "two.pth")
    with pytest.raises(CheckpointError, match=r"holds 2 SpUNets \('student\.backbone\.', 'teacher\.backbone\.'\); "
                                              "pass --prefix"):
        import_pointcept(tmp_path / "two.pth", good, tmp_path / "ck")
    _, meta = import_pointcept(tmp_path / "two.pth", PointceptImportConfig(prefix="teacher.backbone."),
                               tmp_path / "ck")
    assert meta["source"]["keys_outside_prefix"] == len(state)
    torch.save(state, tmp_path / "bare.pth")  # a bare state dict, no wrapper, no prefix
    _, meta = import_pointcept(tmp_path / "bare.pth", good, tmp_path / "ck")
    assert meta["source"]["prefix"] == ""
    with pytest.raises(CheckpointError, match="the features color give 3; pass --input-features"):
        import_pointcept(tmp_path / "bare.pth", PointceptImportConfig(input_features=("color",)), tmp_path / "ck")
    with pytest.raises(ConfigError, match=r"unknown input feature\(s\) \['rgb'\]"):
        import_pointcept(tmp_path / "bare.pth", PointceptImportConfig(input_features=("rgb", "normal")),
                         tmp_path / "ck")
    torch.save({"state_dict": {"backbone.stem.0.weight": torch.zeros(1)}}, tmp_path / "ours.pth")
    with pytest.raises(CheckpointError, match="no key ending in conv_input.0.weight; not a Pointcept SpUNet-v1m1"):
        import_pointcept(tmp_path / "ours.pth", good, tmp_path / "ck")
    with pytest.raises(CheckpointError, match="no such file; pass the Pointcept checkpoint"):
        import_pointcept(tmp_path / "absent.pth", good, tmp_path / "ck")


def test_import_registers_a_contract_checkpoint(tmp_path, shared_preset):
    path = pointcept_file(tmp_path / "model_last.pth", shared_spunet())
    config = PointceptImportConfig(method="csc", dataset="scannet", scenes=("scene0001_00", "scene0000_00"))
    out, meta = import_pointcept(path, config, tmp_path / "ck")
    model, loaded = load_model(out, part="backbone")
    assert loaded["id"] == meta["id"] and meta["id"].startswith("csc-scannet-")
    assert meta["id"] in read_index(tmp_path / "ck" / "index.json")["checkpoints"]
    assert loaded["data"]["scenes"] == ["scene0000_00", "scene0001_00"] and loaded["data"]["scenes_known"]
    assert loaded["input"] == {"voxel_size_m": 0.02, "use_xyz_features": False, "features": ["color", "normal"],
                               "color_range": [-1.0, 1.0], "backend": "spconv"}
    assert loaded["source"]["format"] == "pointcept-spunet-v1m1" and loaded["source"]["sha256"]
    assert model.config.in_channels == 6 and model.config.bn_momentum == 0.01
    again, _ = import_pointcept(path, config, tmp_path / "ck")  # the same file again: the same id and file
    assert again == out


def test_cli_checkpoints_import_from_pointcept(capsys, tmp_path, shared_preset):
    from freepoint_bench.cli import main

    def run(*args) -> tuple[int, str]:
        with pytest.raises(SystemExit) as exc:
            main([str(a) for a in args])
        out = capsys.readouterr()
        return int(exc.value.code or 0), " ".join((out.out + out.err).split())

    path = pointcept_file(tmp_path / "msc.pth", shared_spunet())
    (tmp_path / "train.txt").write_text("scene0000_00\nscene0002_00\n")
    code, text = run("checkpoints", "import", "--from", "pointcept", path, "--method", "msc", "--dataset", "scannet",
                     "--scenes-file", tmp_path / "train.txt", "--checkpoints", tmp_path / "ck",
                     "--out", tmp_path / "msc-backbone.ckpt")
    assert code == 0, text
    assert "Res16UNet tiny, stem kernel 5" in text and "final.bias, final.weight" in text and "color, normal" in text
    _, meta = load_model(tmp_path / "msc-backbone.ckpt", part="backbone")
    assert meta["method"] == "msc" and meta["data"]["scenes"] == ["scene0000_00", "scene0002_00"]
    code, text = run("checkpoints", "import", "--from", "pointcept", path, "--input-features", "color",
                     "--checkpoints", tmp_path / "ck")
    assert code == 2 and text.startswith("error:") and "pass --input-features" in text
    code, text = run("checkpoints", "import", "--from", "pointcept", path, "--stem-kernel-size", "3")
    assert code == 2 and "--stem-kernel-size is read from a Pointcept file" in text


# ---------------------------------------------------------------------------------------------- fine-tuning


def tiny_pointcept_checkpoint(tmp_path) -> tuple:
    """A SpUNet at our tiny preset's widths (base 8, strided convs 8->8, 8->16, 16->16, 16->32: it widens in two),
    imported; returns (its file, its metadata)."""
    tiny = PRESETS["tiny"]
    path = pointcept_file(tmp_path / "tiny.pth", randomised(SpUNet(6, 0, tiny.init_dim, tiny.planes, tiny.layers)))
    return import_pointcept(path, PointceptImportConfig(method="msc", dataset="scannet"), tmp_path / "ck")


def test_fine_tuning_refuses_a_pointcept_backbone_naming_the_settings_that_fit(tmp_path):
    from freepoint_bench.engine.module import segmenter_from_preset
    from freepoint_bench.engine.presets import get_preset
    from freepoint_bench.harness.finetune import load_backbone

    path, meta = tiny_pointcept_checkpoint(tmp_path)
    assert meta["architecture"]["widen"] == "down"
    plain = get_preset("cpu-small")  # small backbone, stem 3, colour + xyz, widen block
    with pytest.raises(CheckpointError) as e:
        load_backbone(segmenter_from_preset(plain), path, plain)
    text = str(e.value)
    assert "\n" not in text and "trained on the input features color, normal" in text and "feeds rgb+xyz" in text
    assert text.endswith("pass --set input_features=rgb+normal --set backbone=tiny --set stem_kernel_size=5 "
                         "--set widen=down"), text
    # the input right, the architecture not: the architecture's refusal names the rest
    inputs = plain.with_(input_features="rgb+normal", backbone="tiny", stem_kernel_size=5)
    with pytest.raises(CheckpointError, match=r"widen='down' in the checkpoint, None expected .* --set widen=down$"):
        load_backbone(segmenter_from_preset(inputs), path, inputs)
    # without a preset, the default one's input (colour + xyz) is checked
    with pytest.raises(CheckpointError, match="pass --set input_features=rgb\\+normal"):
        load_backbone(segmenter_from_preset(inputs.with_(widen="down")), path)
    fits = inputs.with_(widen="down")
    model = segmenter_from_preset(fits)
    assert load_backbone(model, path, fits)["id"] == meta["id"]
    loaded, _ = load_model(path, part="backbone")
    assert all(torch.equal(v, model.backbone.state_dict()[k]) for k, v in loaded.state_dict().items())
    # and the other way: our own checkpoint into a colour + normal model
    ours = tmp_path / "ours-backbone.ckpt"
    from freepoint_bench.engine.checkpoints import input_metadata, save_model_checkpoint

    save_model_checkpoint(ours, segmenter_from_preset(fits.with_(input_features="rgb+xyz")).backbone,
                          {"method": "scratch", "input": input_metadata(fits.with_(input_features="rgb+xyz"))})
    with pytest.raises(CheckpointError, match=r"input features rgb, xyz and the fine-tuning model feeds rgb\+normal; "
                                              r"pass --set input_features=rgb\+xyz$"):
        load_backbone(segmenter_from_preset(fits), ours, fits)


def test_a_pointcept_backbone_fine_tunes_and_predicts_on_colour_and_normals(tmp_path):
    from freepoint_bench.data.store import SceneStore
    from freepoint_bench.data.synthetic import SyntheticConfig, generate_room
    from freepoint_bench.engine.data import make_sample
    from freepoint_bench.engine.predict import predict_scene
    from freepoint_bench.harness.finetune import ProtocolTargets, class_vocabulary, finetune_config, train_fold
    from freepoint_bench.harness.protocol import EvalRules

    path, _ = tiny_pointcept_checkpoint(tmp_path)
    store = SceneStore(tmp_path / "cache" / "synthetic-x")
    for i in range(2):
        store.save(generate_room(i, SyntheticConfig(num_points=1500), name=f"synth_{i:04d}"), split="train")
    # what a user passes as --set to bench.py finetune / run
    config = finetune_config("cpu-small", epochs=1, num_queries=8, batch_size=2, max_points=None, backbone="tiny",
                             stem_kernel_size=5, widen="down", input_features="rgb+normal")
    rules = EvalRules(classes="s3dis")
    trained, _ = train_fold(store, store.names("train"), ProtocolTargets(rules), config,
                            num_classes=len(class_vocabulary(rules)[0]), init_backbone=path, seed=0,
                            work_dir=tmp_path / "ft")
    scene = store.load(store.names("train")[0])
    sample = make_sample(scene, config.train, None, train=False)
    assert sample["feats"].shape[1] == 6 and np.abs(np.linalg.norm(sample["feats"][:, 3:], axis=1) - 1).max() < 1e-4
    found = predict_scene(trained.segmenter.eval(), scene, config.train, config.inference, "cpu")
    assert found.masks.ndim == 2 and found.masks.shape[1] == scene.num_points
