"""Left-atrium shape (lasegtut.shape, `lasegtut shape`): phantoms with known answers, bad masks,
the exported STL/PLY in patient coordinates, and the 3D viewer."""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from lasegtut import shape
from lasegtut.cli import main
from lasegtut.errors import LasegError
from lasegtut.volume import sphere_mask

MSD = (1.25, 1.25, 1.37)  # the MSD heart voxel size, mm


# ----------------------------------------------------------------------------- phantoms
def centred_grid(shape_: tuple[int, int, int], spacing) -> list[np.ndarray]:
    """Coordinates (mm) of the voxel centres along each axis, 0 at the array's centre, broadcastable."""
    out = []
    for axis, (n, s) in enumerate(zip(shape_, spacing)):
        c = (np.arange(n) - (n - 1) / 2) * s
        out.append(c.reshape([-1 if a == axis else 1 for a in range(3)]))
    return out


def n_for(extent_mm: float, spacing) -> tuple[int, int, int]:
    return tuple(int(extent_mm / s) + 8 for s in spacing)  # type: ignore[return-value]


def ellipsoid(a: float, b: float, c: float, spacing, rotation: np.ndarray | None = None) -> np.ndarray:
    """Voxels whose centre lies in the ellipsoid of semi-axes a, b, c (mm) along x, y, z (or along
    the columns of ``rotation``)."""
    x, y, z = centred_grid(n_for(2 * max(a, b, c), spacing), spacing)
    if rotation is not None:
        r = np.asarray(rotation)
        x, y, z = (r[0, i] * x + r[1, i] * y + r[2, i] * z for i in range(3))
    return ((x / a) ** 2 + (y / b) ** 2 + (z / c) ** 2 <= 1).astype(np.uint8)


def box(sides, spacing) -> np.ndarray:
    x, y, z = centred_grid(n_for(max(sides), spacing), spacing)
    return ((abs(x) <= sides[0] / 2) & (abs(y) <= sides[1] / 2) & (abs(z) <= sides[2] / 2)).astype(np.uint8)


def ball(r: float, spacing=MSD) -> np.ndarray:
    return sphere_mask(n_for(2 * r, spacing), spacing, r)


def ellipsoid_area(a: float, b: float, c: float) -> float:
    """Exact surface area (mm^2) of an ellipsoid, Legendre's formula with elliptic integrals."""
    from scipy.special import ellipeinc, ellipkinc

    a, b, c = sorted((a, b, c), reverse=True)
    phi = math.acos(c / a)
    k2 = a * a * (b * b - c * c) / (b * b * (a * a - c * c))
    s = math.sin(phi)
    return 2 * math.pi * c * c + 2 * math.pi * a * b / s * (
        ellipeinc(phi, k2) * s * s + ellipkinc(phi, k2) * math.cos(phi) ** 2)


def weighted_lasp(r: np.ndarray, w: np.ndarray) -> float:
    mean = float((w * r).sum() / w.sum())
    return 1 - math.sqrt(float((w * (r - mean) ** 2).sum() / w.sum())) / mean


def ellipsoid_lasp(a: float, b: float, c: float, n: int = 600) -> float:
    """LASP of the exact ellipsoid surface by numerical integration (independent of any mesh)."""
    t = (np.arange(n) + 0.5) * math.pi / n
    p = (np.arange(2 * n) + 0.5) * math.pi / n
    t, p = np.meshgrid(t, p, indexing="ij")
    pt = np.stack([a * np.cos(t) * np.cos(p), b * np.cos(t) * np.sin(p), -c * np.sin(t)])
    pp = np.stack([-a * np.sin(t) * np.sin(p), b * np.sin(t) * np.cos(p), np.zeros_like(t)])
    w = np.linalg.norm(np.cross(pt, pp, axis=0), axis=0)
    r = np.sqrt((a * np.sin(t) * np.cos(p)) ** 2 + (b * np.sin(t) * np.sin(p)) ** 2 + (c * np.cos(t)) ** 2)
    return weighted_lasp(r, w)


def cube_lasp(n: int = 801) -> float:
    """LASP of a cube (any size) by integration over one face (all six are alike)."""
    u = np.linspace(-1, 1, n)
    x, y = np.meshgrid(u, u)
    return weighted_lasp(np.sqrt(x ** 2 + y ** 2 + 1), np.ones_like(x))


def edges_shared_twice(mesh: shape.SurfaceMesh) -> bool:
    """A closed, consistently oriented surface uses every directed edge once and its reverse once."""
    f = mesh.faces
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    fwd = {tuple(e) for e in directed.tolist()}
    return len(fwd) == len(directed) and all((b, a) in fwd for a, b in fwd)


# ----------------------------------------------------------------------------- known answers
@pytest.mark.parametrize("r, spacing", [(20, MSD), (30, MSD), (20, (1.0, 1.0, 1.0)), (25, (0.8, 0.8, 1.6))])
def test_sphere_area_volume_sphericity(r, spacing):
    rep = shape.shape_metrics(ball(r, spacing), spacing)
    assert rep.surface_mm2 == pytest.approx(4 * math.pi * r * r, rel=0.03)
    assert rep.mesh_volume_ml == pytest.approx(4 / 3 * math.pi * r ** 3 / 1000, rel=0.02)
    assert rep.mesh_volume_ml == pytest.approx(rep.volume_ml, rel=0.02)
    assert rep.sphericity > 0.99 and rep.sphericity_wadell == pytest.approx(1.0, abs=0.02)
    assert all(abs(d - 2 * r) <= max(spacing) + 0.2 for d in rep.diameters_mm)
    assert rep.components == 1 and rep.discarded_ml == 0 and rep.touches_edge == []


def test_sphere_without_smoothing_overestimates_the_area():
    """Why the mask is smoothed: marching cubes on the raw staircase reads ~8 % too much."""
    mesh = shape.surface_mesh(ball(20), MSD, smoothing=0)
    assert mesh.area_mm2 > 1.05 * 4 * math.pi * 400
    assert shape.surface_mesh(ball(20), MSD).area_mm2 == pytest.approx(4 * math.pi * 400, rel=0.02)


def test_sphere_mesh_is_closed_and_faces_outward():
    mesh = shape.surface_mesh(ball(15), MSD)
    assert edges_shared_twice(mesh)
    assert mesh.volume_mm3 > 0
    normals = np.cross(mesh.triangles()[:, 1] - mesh.triangles()[:, 0], mesh.triangles()[:, 2] - mesh.triangles()[:, 0])
    outward = np.einsum("ij,ij->i", normals, mesh.triangles().mean(axis=1) - mesh.centroid_mm)
    assert (outward > 0).mean() > 0.99


@pytest.mark.parametrize("spacing", [MSD, (1.0, 1.0, 1.0), (0.8, 0.8, 1.6), (0.625, 0.625, 2.5)])
def test_ellipsoid(spacing):
    a, b, c = 30.0, 20.0, 15.0
    rep = shape.shape_metrics(ellipsoid(a, b, c, spacing), spacing)
    assert rep.surface_mm2 == pytest.approx(ellipsoid_area(a, b, c), rel=0.03)
    assert rep.mesh_volume_ml == pytest.approx(4 / 3 * math.pi * a * b * c / 1000, rel=0.025)
    for d, true in zip(rep.diameters_mm, (2 * a, 2 * b, 2 * c)):
        assert abs(d - true) <= max(spacing), (rep.diameters_mm, spacing)
    assert rep.sphericity == pytest.approx(ellipsoid_lasp(a, b, c), abs=0.01)
    assert rep.sphericity_wadell == pytest.approx(
        math.pi ** (1 / 3) * (6 * 4 / 3 * math.pi * a * b * c) ** (2 / 3) / ellipsoid_area(a, b, c), abs=0.02)
    # principal axes: x, y, z in that order (longest first)
    assert np.allclose(np.abs(rep.axes), np.eye(3), atol=0.02)


def test_rotated_ellipsoid_gives_the_same_shape_and_finds_its_axes():
    rot = np.array([[0.0, 0.8, -0.6], [0.6, 0.48, 0.64], [0.8, -0.36, -0.48]])  # orthonormal columns
    straight = shape.shape_metrics(ellipsoid(30, 20, 15, (1.0, 1.0, 1.0)), (1.0, 1.0, 1.0))
    turned = shape.shape_metrics(ellipsoid(30, 20, 15, (1.0, 1.0, 1.0), rotation=rot), (1.0, 1.0, 1.0))
    assert turned.surface_mm2 == pytest.approx(straight.surface_mm2, rel=0.01)
    assert turned.sphericity == pytest.approx(straight.sphericity, abs=0.005)
    assert np.allclose(turned.diameters_mm, straight.diameters_mm, atol=1.0)
    for axis, column in zip(turned.axes, rot.T):
        assert abs(float(axis @ column)) > 0.995


def test_cube_and_box():
    s = 30.0
    rep = shape.shape_metrics(box((s, s, s), (1.0, 1.0, 1.0)), (1.0, 1.0, 1.0))
    assert rep.volume_ml == pytest.approx(s ** 3 / 1000, rel=0.001)
    assert rep.mesh_volume_ml == pytest.approx(rep.volume_ml, rel=0.02)
    # the smoothing rounds the 12 edges: a few % of the area (documented), never more than 8 %
    assert 0.92 * 6 * s * s < rep.surface_mm2 < 6 * s * s
    assert rep.sphericity == pytest.approx(cube_lasp(), abs=0.01)
    assert 0.80 < rep.sphericity_wadell < 0.88  # 0.806 for sharp edges
    b = shape.shape_metrics(box((40, 30, 20), MSD), MSD)
    voxel_sides = [np.any(box((40, 30, 20), MSD), axis=tuple(j for j in range(3) if j != i)).sum() * MSD[i]
                   for i in range(3)]
    assert np.allclose(b.diameters_mm, voxel_sides, atol=0.8)


def test_mask_touching_the_edge_is_closed_along_it():
    """A ball cut by the array edge: measured as a closed half-ball (the edge voxels' outer faces)."""
    r, sp = 20.0, (1.0, 1.0, 1.0)
    half = sphere_mask((30, 48, 48), sp, r, center_mm=(-0.5, 23.5, 23.5))  # centre on the outer face of x = 0
    rep = shape.shape_metrics(half, sp)
    assert rep.touches_edge == [0]
    assert rep.volume_ml == pytest.approx(2 / 3 * math.pi * r ** 3 / 1000, rel=0.02)
    assert rep.surface_mm2 == pytest.approx(3 * math.pi * r * r, rel=0.03)  # hemisphere + flat disc
    assert edges_shared_twice(rep.mesh)
    assert rep.mesh.vertices[:, 0].min() == pytest.approx(-0.5, abs=0.1)  # the cut lies on the array's face
    assert "touches the edge" in rep.describe()


def test_small_but_real_ball_still_measured():
    rep = shape.shape_metrics(ball(6), MSD)
    assert rep.sphericity > 0.97 and rep.surface_mm2 == pytest.approx(4 * math.pi * 36, rel=0.1)


# ----------------------------------------------------------------------------- bad masks
def test_bad_masks_raise_one_line_errors():
    good = ball(10)
    cases = [
        (np.zeros((20, 20, 20), np.uint8), "empty"),
        (good * 2, "not a binary mask"),
        (good.astype(np.float32) * 0.7, "not a binary mask"),
        (good[:, :, 5], "3D mask"),
    ]
    nan = good.astype(np.float32)
    nan[0, 0, 0] = np.nan
    cases.append((nan, "NaN"))
    for mask, message in cases:
        with pytest.raises(LasegError, match=message) as info:
            shape.shape_metrics(mask, MSD if mask.ndim == 3 else MSD[:2])
        assert "\n" not in str(info.value)
    with pytest.raises(LasegError, match="spacing"):
        shape.shape_metrics(good, (1.25, 0, 1.37))
    with pytest.raises(LasegError, match="too small"):
        one = np.zeros((9, 9, 9), np.uint8)
        one[4, 4, 4] = 1
        shape.shape_metrics(one, MSD)


def test_several_components_largest_by_default_or_refused():
    big = ball(15, (1.0, 1.0, 1.0))
    small = sphere_mask(big.shape, (1.0, 1.0, 1.0), 3, center_mm=(4, 4, 4))
    both = np.maximum(big, small)
    rep = shape.shape_metrics(both, (1.0, 1.0, 1.0))
    alone = shape.shape_metrics(big, (1.0, 1.0, 1.0))
    assert rep.components == 2 and rep.voxels == int(big.sum())
    assert rep.discarded_ml == pytest.approx(small.sum() / 1000)
    assert rep.surface_mm2 == pytest.approx(alone.surface_mm2) and rep.sphericity == pytest.approx(alone.sphericity)
    assert "2 connected components" in rep.describe()
    with pytest.raises(LasegError, match="2 connected components"):
        shape.shape_metrics(both, (1.0, 1.0, 1.0), components="error")


def test_bool_mask_accepted():
    assert shape.shape_metrics(ball(10).astype(bool), MSD).voxels == int(ball(10).sum())


# ----------------------------------------------------------------------------- comparing two masks
def test_surface_distance_sign_and_size():
    sp = (1.0, 1.0, 1.0)
    outer = sphere_mask((50, 50, 50), sp, 20)
    inner = sphere_mask((50, 50, 50), sp, 15)
    m_out, m_in = shape.surface_mesh(outer, sp), shape.surface_mesh(inner, sp)
    d_in = shape.surface_distance_mm(m_in, m_out, outer)   # inner surface vs the outer reference
    d_out = shape.surface_distance_mm(m_out, m_in, inner)  # outer surface vs the inner reference
    assert np.all(d_in < 0) and np.median(d_in) == pytest.approx(-5, abs=0.5)
    assert np.all(d_out > 0) and np.median(d_out) == pytest.approx(5, abs=0.5)
    self_d = shape.surface_distance_mm(m_out, m_out, outer)
    assert np.abs(self_d).max() < 1e-9


# ----------------------------------------------------------------------------- export
def read_stl(path: Path) -> tuple[bytes, np.ndarray, np.ndarray]:
    data = path.read_bytes()
    n = struct.unpack("<I", data[80:84])[0]
    assert len(data) == 84 + 50 * n
    rec = np.frombuffer(data[84:], dtype=[("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")])
    return data[:80], rec["n"].astype(float), rec["v"].astype(float)


def read_ply(path: Path) -> tuple[str, np.ndarray, np.ndarray]:
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii")
    nv = int(header.split("element vertex ")[1].split()[0])
    nf = int(header.split("element face ")[1].split()[0])
    v = np.frombuffer(data[end:end + 12 * nv], dtype="<f4").reshape(nv, 3).astype(float)
    f = np.frombuffer(data[end + 12 * nv:], dtype=[("n", "u1"), ("i", "<i4", 3)])
    assert len(f) == nf and np.all(f["n"] == 3)
    return header, v, f["i"]


# an oblique, translated affine in LPS-like orientation (x and y flipped), 1.25 x 1.25 x 1.37 mm
THETA = math.radians(20)
AFFINE = np.array([[-1.25 * math.cos(THETA), -1.25 * math.sin(THETA), 0, 80.0],
                   [-1.25 * math.sin(THETA), 1.25 * math.cos(THETA), 0, -30.0],
                   [0, 0, 1.37, 15.0],
                   [0, 0, 0, 1]])


def test_write_mesh_world_coordinates_in_lps(tmp_path):
    mask = ball(12)
    mesh = shape.surface_mesh(mask, MSD)
    centre_ijk = (np.array(mask.shape) - 1) / 2
    centre_ras = AFFINE[:3, :3] @ centre_ijk + AFFINE[:3, 3]
    stl = shape.write_mesh(tmp_path / "la.stl", mesh, AFFINE)
    header, normals, tri = read_stl(stl)
    assert b"SPACE=LPS" in header and len(tri) == len(mesh.faces)
    ras = tri.reshape(-1, 3) * [-1, -1, 1]
    # every vertex lies 12 mm from the ball's centre in the patient frame (rotation kept the mm)
    assert np.allclose(np.linalg.norm(ras - centre_ras, axis=1), 12, atol=0.9)
    # normals point away from the centre (outward), and agree with the triangles' winding
    centres = tri.mean(axis=1) - centre_ras * [-1, -1, 1]
    assert (np.einsum("ij,ij->i", normals, centres) > 0).mean() > 0.99
    ply = shape.write_mesh(tmp_path / "la.ply", mesh, AFFINE)
    text, v, f = read_ply(ply)
    assert "comment SPACE=LPS" in text
    assert np.allclose(v[f], tri, atol=1e-4)


def test_write_mesh_refuses_bad_paths(tmp_path):
    mesh = shape.surface_mesh(ball(8), MSD)
    out = tmp_path / "a.stl"
    shape.write_mesh(out, mesh, np.eye(4))
    before = out.read_bytes()
    with pytest.raises(LasegError, match="already exists"):
        shape.write_mesh(out, mesh, np.diag([2.0, 2.0, 2.0, 1.0]))
    assert out.read_bytes() == before
    shape.write_mesh(out, mesh, np.diag([2.0, 2.0, 2.0, 1.0]), force=True)
    assert out.read_bytes() != before
    for bad, message in ((tmp_path / "a.obj", "must end in .stl or .ply"),
                         (tmp_path / "nofolder" / "a.stl", "does not exist")):
        with pytest.raises(LasegError, match=message):
            shape.write_mesh(bad, mesh, np.eye(4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.stl"]  # no temporary file left


# ----------------------------------------------------------------------------- command line
def save(path: Path, data: np.ndarray, affine=AFFINE) -> Path:
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def run(capsys, argv) -> tuple[int, list[str], list[str]]:
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out.splitlines(), cap.err.splitlines()


def test_cli_shape_json_and_mesh(tmp_path, capsys):
    mask = ball(15)
    path = save(tmp_path / "la.nii.gz", mask)
    rc, out, err = run(capsys, ["shape", path, "--json", "--mesh", tmp_path / "la.stl"])
    assert rc == 0 and err == []
    report = json.loads(out[-1])
    assert {"volume_ml", "surface_mm2", "sphericity", "diameters_mm", "mesh_volume_ml"} <= set(report)
    assert report["volume_ml"] == pytest.approx(mask.sum() * 1.25 * 1.25 * 1.37 / 1000)
    assert report["surface_mm2"] == pytest.approx(4 * math.pi * 225, rel=0.03)
    assert report["sphericity"] > 0.99 and len(report["diameters_mm"]) == 3
    assert any(line.startswith("wrote ") for line in out)
    _, _, tri = read_stl(tmp_path / "la.stl")
    assert len(tri) == report["triangles"]
    # the file's LPS vertices sit on the ball in the patient frame of the original NIfTI header
    centre = AFFINE[:3, :3] @ ((np.array(mask.shape) - 1) / 2) + AFFINE[:3, 3]
    dist = np.linalg.norm(tri.reshape(-1, 3) * [-1, -1, 1] - centre, axis=1)
    assert np.allclose(dist, 15, atol=0.9)


def test_cli_shape_without_json_prints_no_json(tmp_path, capsys):
    rc, out, _ = run(capsys, ["shape", save(tmp_path / "la.nii.gz", ball(10))])
    assert rc == 0 and not out[-1].startswith("{") and any("sphericity" in line for line in out)


def assert_one_line_error(rc, err, needle):
    assert rc == 2 and len(err) == 1, err
    assert "Traceback" not in err[0] and needle in err[0], err


def test_cli_shape_user_errors(tmp_path, capsys):
    good = save(tmp_path / "la.nii.gz", ball(10))
    empty = save(tmp_path / "empty.nii.gz", np.zeros((20, 20, 20), np.uint8))
    labels = save(tmp_path / "labels.nii.gz", ball(10) * 2)
    two = ball(12, (1.0, 1.0, 1.0))
    two[:3, :3, :3] = 1
    several = save(tmp_path / "two.nii.gz", two, np.eye(4))
    existing = tmp_path / "exists.stl"
    existing.write_bytes(b"keep me")
    for argv, needle in (
        (["shape", empty], "empty"),
        (["shape", labels], "not a binary mask"),
        (["shape", tmp_path / "missing.nii.gz"], "does not exist"),
        (["shape", several, "--strict"], "connected components"),
        (["shape", good, "--mesh", existing], "already exists"),
        (["shape", good, "--mesh", tmp_path / "la.obj"], ".stl or .ply"),
        (["shape", good, "--mesh", tmp_path / "no" / "la.stl"], "does not exist"),
    ):
        rc, _, err = run(capsys, argv)
        assert_one_line_error(rc, err, needle)
    assert existing.read_bytes() == b"keep me"
    rc, out, _ = run(capsys, ["shape", good, "--mesh", existing, "--force"])
    assert rc == 0 and existing.read_bytes() != b"keep me"
    rc, out, err = run(capsys, ["shape", several, "--json"])
    assert rc == 0 and json.loads(out[-1])["components"] == 2 and any("2 connected components" in o for o in out)


# ----------------------------------------------------------------------------- drawing
def test_surface_viewer_redraws_on_slider():
    import ipywidgets as W

    from lasegtut.widgets import surface_viewer

    a = shape.surface_mesh(ellipsoid(20, 12, 8, MSD), MSD, step=2)
    b = shape.surface_mesh(ball(12), MSD, step=2)
    d = shape.surface_distance_mm(b, a, ellipsoid(20, 12, 8, MSD))
    scenes = {"one": [("a", a.vertices, a.faces, None), ("b vs a", b.vertices, b.faces, d)],
              "two": [("b", b.vertices, b.faces, "teal")]}
    box = surface_viewer(scenes)
    assert "lasegtut-surface-viewer" in box._dom_classes
    found: dict = {}

    def walk(w):
        if isinstance(w, W.Image):
            found["image"] = w
        elif isinstance(w, W.IntSlider):
            found[w.description] = w
        elif isinstance(w, W.Dropdown):
            found["scene"] = w
        for c in getattr(w, "children", ()):
            walk(c)

    walk(box)
    first = bytes(found["image"].value)
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    found["azimuth"].value = 0
    turned = bytes(found["image"].value)
    assert turned != first
    found["scene"].value = "two"
    assert bytes(found["image"].value) not in (first, turned)


def test_surface_mesh_rejects_what_it_cannot_mesh():
    with pytest.raises(LasegError, match="3D mask"):
        shape.surface_mesh(np.ones((5, 5), np.uint8), (1.0, 1.0))
    with pytest.raises(LasegError, match="empty"):
        shape.surface_mesh(np.zeros((5, 5, 5), np.uint8), MSD)
    coarse = shape.surface_mesh(ball(12), MSD, step=2)
    fine = shape.surface_mesh(ball(12), MSD)
    assert len(coarse.faces) < len(fine.faces) / 2 and coarse.area_mm2 == pytest.approx(fine.area_mm2, rel=0.05)
