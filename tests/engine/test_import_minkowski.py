"""Importing MinkowskiEngine Res16UNet weights: key/shape layout written from ME's network definition, numerical
parity with MinkowskiEngine's own network, and loud refusals of files that do not fit."""

from __future__ import annotations

import collections
import collections.abc

import pytest
import torch
from torch import nn

from freepoint_bench.engine.checkpoints import load_model, read_index
from freepoint_bench.engine.minkowski_import import MinkowskiImportConfig, convert_state_dict, import_minkowski
from freepoint_bench.errors import CheckpointError
from freepoint_bench.models.backbone import PRESETS
from freepoint_bench.models.voxels import match_rows


def me_layout(preset: str, in_channels: int, stem: int, out_channels: int = 32) -> dict[str, tuple[int, ...]]:
    """Returns {key: shape} of a ME 0.5 Res16UNet state dict, written from PointContrast's / CSC's res16unet.py
    (conv0p1s1, bn0, conv{i}p{s}s2 + bn{i} + block{i}, convtr{i}p{s}s2 + bntr{i} + block{i+1}, final)."""
    spec = PRESETS[preset]
    init, planes, layers = spec.init_dim, spec.planes, spec.layers
    out: dict[str, tuple[int, ...]] = {}

    def bn(name: str, c: int) -> None:
        out.update({f"{name}.bn.weight": (c,), f"{name}.bn.bias": (c,), f"{name}.bn.running_mean": (c,),
                    f"{name}.bn.running_var": (c,), f"{name}.bn.num_batches_tracked": ()})

    def stage(name: str, c_in: int, c_out: int, blocks: int) -> None:
        for j in range(blocks):
            a = c_in if j == 0 else c_out
            out[f"{name}.{j}.conv1.kernel"] = (27, a, c_out)
            bn(f"{name}.{j}.norm1", c_out)
            out[f"{name}.{j}.conv2.kernel"] = (27, c_out, c_out)
            bn(f"{name}.{j}.norm2", c_out)
            if a != c_out:
                out[f"{name}.{j}.downsample.0.kernel"] = (a, c_out)  # ME 0.5: a 1x1 kernel is a matrix
                bn(f"{name}.{j}.downsample.1", c_out)

    out["conv0p1s1.kernel"] = (stem**3, in_channels, init)
    bn("bn0", init)
    widths = [init, *planes[:3]]
    for i in range(4):
        out[f"conv{i + 1}p{2 ** i}s2.kernel"] = (8, widths[i], widths[i])
        bn(f"bn{i + 1}", widths[i])
        stage(f"block{i + 1}", widths[i], planes[i], layers[i])
    skips = [planes[2], planes[1], planes[0], init]
    c = planes[3]
    for i in range(4):
        out[f"convtr{i + 4}p{2 ** (4 - i)}s2.kernel"] = (8, c, planes[4 + i])
        bn(f"bntr{i + 4}", planes[4 + i])
        stage(f"block{i + 5}", planes[4 + i] + skips[i], planes[4 + i], layers[4 + i])
        c = planes[4 + i]
    out["final.kernel"], out["final.bias"] = (planes[7], out_channels), (1, out_channels)
    return out


def random_state(layout: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(shape, generator=g)
        else:
            state[key] = torch.randn(shape, generator=g) * 0.2
    return state


@pytest.mark.parametrize(("preset", "stem"), [("34C", 3), ("34C", 5), ("small", 3)])
def test_every_key_of_the_me_layout_maps_onto_our_backbone(preset, stem):
    state = random_state(me_layout(preset, 3, stem))
    model, dropped = convert_state_dict(state, MinkowskiImportConfig(stem_kernel_size=stem))
    assert model.config.preset == preset and model.config.stem_kernel_size == stem
    assert dropped == ["final.bias", "final.kernel"]
    ours = model.state_dict()
    assert len(ours) == len(state) - 2  # every other tensor used exactly once
    assert torch.equal(ours["stem.1.module.running_var"], state["bn0.bn.running_var"])
    assert torch.equal(ours["up4.1.module.weight"], state["bntr4.bn.weight"])  # the first decoder up conv
    assert torch.equal(ours["up1.0.weight"][1, 1, 0], state["convtr7p2s2.kernel"][3])  # the last decoder up conv
    # the 1x1 projection of a block that changes width: ME's (c_in, c_out) matrix is our (1, 1, 1, c_in, c_out)
    assert torch.equal(ours["block5.0.downsample.0.weight"][0, 0, 0], state["block5.0.downsample.0.kernel"])
    # a kernel offset: ME enumerates x fastest, so ME row 1 is offset (x=1, y=0, z=0)
    assert torch.equal(ours["block1.0.conv1.weight"][1, 0, 0], state["block1.0.conv1.kernel"][1])
    assert torch.equal(ours["block1.0.conv1.weight"][0, 1, 0], state["block1.0.conv1.kernel"][3])
    assert torch.equal(ours["block1.0.conv1.weight"][0, 0, 1], state["block1.0.conv1.kernel"][9])


def test_refusals_are_one_line_and_name_keys_and_shapes(tmp_path):
    state = random_state(me_layout("small", 3, 3))
    good = MinkowskiImportConfig(stem_kernel_size=3)
    wrong = dict(state)
    wrong["block3.0.conv2.kernel"] = torch.zeros(27, 64, 48)  # another width: no preset fits
    with pytest.raises(CheckpointError) as e:
        convert_state_dict(wrong, good, "w.pth")
    assert "\n" not in str(e.value) and "none of our presets" in str(e.value)
    wrong = dict(state)
    wrong["block3.0.norm1.bn.weight"] = torch.zeros(65)
    with pytest.raises(CheckpointError, match=r"block3\.0\.norm1\.bn\.weight: \(65,\) in the file, \(64,\) expected"):
        convert_state_dict(wrong, good, "w.pth")
    wrong = dict(state)
    wrong["block2.0.conv1.kernel"] = torch.zeros(8, 16, 32)  # a 2x2x2 kernel where ME has 3x3x3
    with pytest.raises(CheckpointError, match=r"block2\.0\.conv1\.kernel: \(8, 16, 32\) in the file, \(27, 16, 32\)"):
        convert_state_dict(wrong, good, "w.pth")
    missing = {k: v for k, v in state.items() if k != "block7.0.norm2.bn.running_mean"}
    path = tmp_path / "missing.pth"
    torch.save({"state_dict": missing}, path)
    with pytest.raises(CheckpointError) as e:
        import_minkowski(path, good, tmp_path / "ck")
    assert "missing keys ['block7.0.norm2.bn.running_mean']" in str(e.value) and "\n" not in str(e.value)
    extra = {**state, "block9.0.conv1.kernel": torch.zeros(27, 32, 32)}
    with pytest.raises(CheckpointError, match=r"unexpected keys \['block9.0.conv1.kernel'\]"):
        convert_state_dict(extra, good, "w.pth")
    with pytest.raises(CheckpointError, match="pass --stem-kernel-size 3"):
        convert_state_dict(state, MinkowskiImportConfig(stem_kernel_size=5), "w.pth")
    with pytest.raises(CheckpointError, match="not the 34C asked for"):
        convert_state_dict(state, MinkowskiImportConfig(preset="34C"), "w.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        import_minkowski(tmp_path / "junk.pth", good, tmp_path / "ck")
    assert not (tmp_path / "ck" / "index.json").exists()


def test_import_writes_a_contract_checkpoint(tmp_path):
    state = random_state(me_layout("small", 6, 5))
    path = tmp_path / "released.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)  # as DDP saves it
    config = MinkowskiImportConfig(stem_kernel_size=5, method="pointcontrast", dataset="scannet",
                                   scenes=("scene0000_00", "scene0001_00"), voxel_size_m=0.02)
    out, meta = import_minkowski(path, config, tmp_path / "ck")
    model, loaded = load_model(out, part="backbone")
    assert loaded["id"] == meta["id"] and meta["id"].startswith("pointcontrast-scannet-")
    assert loaded["data"]["scenes"] == ["scene0000_00", "scene0001_00"] and loaded["source"]["sha256"]
    assert loaded["input"] == {"voxel_size_m": 0.02, "use_xyz_features": True, "backend": "spconv"}
    assert model.config.in_channels == 6 and meta["id"] in read_index(tmp_path / "ck" / "index.json")["checkpoints"]
    assert torch.equal(model.state_dict()["block4.0.norm2.module.bias"], state["block4.0.norm2.bn.bias"])


# ---------------------------------------------------------------------------------------------- against ME itself


def _minkowski():
    if not hasattr(collections, "Sequence"):  # ME 0.5.4 still reads collections.Sequence
        collections.Sequence = collections.abc.Sequence  # type: ignore[attr-defined]
    return pytest.importorskip("MinkowskiEngine", reason="MinkowskiEngine is not installed (make setup-minkowski)")


def me_network(ME, preset: str, in_channels: int, stem: int, out_channels: int = 20) -> nn.Module:
    """Returns MinkowskiEngine's Res16UNet (the network of PointContrast's / CSC's models/res16unet.py, built from
    ME's own layers and ME's BasicBlock); forward returns (final output, block8 features)."""
    from MinkowskiEngine.modules.resnet_block import BasicBlock

    spec = PRESETS[preset]
    init, planes, layers = spec.init_dim, spec.planes, spec.layers

    def conv(a, b, k, s=1):
        return ME.MinkowskiConvolution(a, b, kernel_size=k, stride=s, dimension=3)

    def stage(a, b, n):
        down = nn.Sequential(conv(a, b, 1), ME.MinkowskiBatchNorm(b)) if a != b else None
        return nn.Sequential(BasicBlock(a, b, downsample=down, dimension=3),
                             *[BasicBlock(b, b, dimension=3) for _ in range(n - 1)])

    class Res16UNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv0p1s1, self.bn0 = conv(in_channels, init, stem), ME.MinkowskiBatchNorm(init)
            widths = [init, *planes[:3]]
            for i in range(4):
                setattr(self, f"conv{i + 1}p{2 ** i}s2", conv(widths[i], widths[i], 2, 2))
                setattr(self, f"bn{i + 1}", ME.MinkowskiBatchNorm(widths[i]))
                setattr(self, f"block{i + 1}", stage(widths[i], planes[i], layers[i]))
            skips, c = [planes[2], planes[1], planes[0], init], planes[3]
            for i in range(4):
                setattr(self, f"convtr{i + 4}p{2 ** (4 - i)}s2",
                        ME.MinkowskiConvolutionTranspose(c, planes[4 + i], kernel_size=2, stride=2, dimension=3))
                setattr(self, f"bntr{i + 4}", ME.MinkowskiBatchNorm(planes[4 + i]))
                setattr(self, f"block{i + 5}", stage(planes[4 + i] + skips[i], planes[4 + i], layers[4 + i]))
                c = planes[4 + i]
            self.final = ME.MinkowskiConvolution(planes[7], out_channels, kernel_size=1, bias=True, dimension=3)
            self.relu = ME.MinkowskiReLU()

        def forward(self, x):
            p1 = self.relu(self.bn0(self.conv0p1s1(x)))
            skips = [p1]
            out = p1
            for i in range(4):
                out = getattr(self, f"block{i + 1}")(self.relu(getattr(self, f"bn{i + 1}")(
                    getattr(self, f"conv{i + 1}p{2 ** i}s2")(out))))
                skips.append(out)
            for i in range(4):
                out = self.relu(getattr(self, f"bntr{i + 4}")(getattr(self, f"convtr{i + 4}p{2 ** (4 - i)}s2")(out)))
                out = getattr(self, f"block{i + 5}")(ME.cat(out, skips[3 - i]))
            return self.final(out), out

    return Res16UNet()


@pytest.mark.parametrize(("preset", "in_channels", "stem"), [("small", 3, 3), ("34C", 6, 5)])
def test_imported_weights_give_me_networks_features(tmp_path, preset, in_channels, stem):
    ME = _minkowski()
    torch.manual_seed(0)
    net = me_network(ME, preset, in_channels, stem)
    with torch.no_grad():  # non-trivial batch-norm statistics and affines
        for m in net.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    net.eval()
    state = net.state_dict()
    assert set(state) == set(me_layout(preset, in_channels, stem, 20))  # the layout test's names are ME's names
    path = tmp_path / "me.pth"
    torch.save({"state_dict": state}, path)
    out, _ = import_minkowski(path, MinkowskiImportConfig(stem_kernel_size=stem), tmp_path / "ck")

    g = torch.Generator().manual_seed(1)
    sites = torch.cat([torch.randint(0, 2, (900, 1), generator=g), torch.randint(0, 24, (900, 3), generator=g)], 1)
    coords = torch.unique(sites, dim=0).to(torch.int32)
    feats = torch.rand(len(coords), in_channels, generator=g) - 0.5
    with torch.no_grad():
        _, theirs = net(ME.SparseTensor(features=feats, coordinates=coords))
        rows = match_rows(coords, theirs.C.to(torch.int32))
        assert bool((rows >= 0).all())
        expected = theirs.F[rows]
        for backend in ("spconv", "minkowski"):
            model, _ = load_model(out, part="backbone")
            if backend == "minkowski":
                model = convert_state_dict(torch.load(path)["state_dict"],
                                           MinkowskiImportConfig(stem_kernel_size=stem, backend="minkowski"))[0]
            got = model(coords, feats).feats
            scale = expected.abs().max().item()
            assert scale > 0.1
            assert torch.allclose(got, expected, atol=1e-4 * scale, rtol=1e-4), (
                backend, (got - expected).abs().max().item(), scale)


def test_cli_checkpoints_import(capsys, tmp_path):
    from freepoint_bench.cli import main

    def run(*args) -> tuple[int, str]:
        with pytest.raises(SystemExit) as exc:
            main([str(a) for a in args])
        out = capsys.readouterr()
        return int(exc.value.code or 0), " ".join((out.out + out.err).split())

    state = random_state(me_layout("small", 3, 3))
    path = tmp_path / "csc.pth"
    torch.save({"state_dict": state}, path)
    (tmp_path / "train.txt").write_text("scene0000_00\nscene0001_00\n\n")
    code, text = run("checkpoints", "import", "--from", "minkowski", path, "--method", "csc", "--dataset", "scannet",
                     "--scenes-file", tmp_path / "train.txt", "--checkpoints", tmp_path / "ck",
                     "--out", tmp_path / "csc-backbone.ckpt")
    assert code == 0, text
    assert "Res16UNet small, stem kernel 3" in text and "final.bias, final.kernel" in text
    _, meta = load_model(tmp_path / "csc-backbone.ckpt", part="backbone")
    assert meta["method"] == "csc" and meta["data"]["scenes"] == ["scene0000_00", "scene0001_00"]
    code, text = run("checkpoints", "import", "--from", "minkowski", path, "--stem-kernel-size", "5",
                     "--checkpoints", tmp_path / "ck")
    assert code == 2 and text.startswith("error:") and "pass --stem-kernel-size 3" in text
    code, text = run("checkpoints", "import", "--from", "detectron", path)
    assert code == 2 and "unknown checkpoint format" in text


def _me043_hypercube_offsets(k: int) -> list[tuple[int, int, int]]:
    """Kernel offsets (in units of tensor stride) by kernel row, as MinkowskiEngine 0.4.3 enumerates a HYPERCUBE
    region (src/region.cpp of its release: the iterator starts at the lower bound and steps the first spatial axis,
    carrying into the next one at the upper bound; an odd kernel spans -(K//2)..K//2, an even one 0..K-1).
    Restated here from the release's rules, step by step, not through our own permutation."""
    lo, hi = (0, k - 1) if k % 2 == 0 else (-(k // 2), k // 2)
    point, rows = [lo, lo, lo], []
    while True:
        rows.append(tuple(point))
        axis = 0
        while axis < 3:
            point[axis] += 1
            if point[axis] <= hi:
                break
            point[axis] = lo
            axis += 1
        if axis == 3:
            return rows


@pytest.mark.parametrize("k", [2, 3, 5])
def test_kernel_rows_match_minkowski_043_released_weights(k):
    # PointContrast's and CSC's released weights come from ME 0.4.3; the parity test above runs ME 0.5.4. Both
    # versions enumerate a kernel's offsets the same way, so one permutation serves both: ME row r holds the
    # canonical weight[kx, ky, kz] whose offset (models.sparse.base: o - (K-1)/2 for odd K, o for K = 2) is
    # 0.4.3's offset of row r.
    from freepoint_bench.models.sparse.minkowski_backend import kernel_permutation

    perm = kernel_permutation(k)
    centre = 0 if k % 2 == 0 else (k - 1) // 2
    for row, offset in enumerate(_me043_hypercube_offsets(k)):
        p = int(perm[row])
        kx, ky, kz = p // (k * k), (p // k) % k, p % k
        assert (kx - centre, ky - centre, kz - centre) == offset, (k, row)
