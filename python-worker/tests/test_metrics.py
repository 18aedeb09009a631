"""The held-out metrics (noisesearch_research.metrics) against values computed by hand."""
import base64
import io
import math

import numpy as np
import pytest
from PIL import Image

from noisesearch_research import metrics as M


def test_fid_of_two_1d_gaussians():
    # N(0, 1) vs N(2, 4): (0-2)^2 + 1 + 4 - 2*sqrt(1*4) = 5
    assert M.fid_from_stats(np.array([0.0]), np.array([[1.0]]), np.array([2.0]), np.array([[4.0]])) == pytest.approx(5.0)


def test_fid_of_two_diagonal_gaussians():
    # diff^2 = 2; traces 5 + 13; 2 * tr sqrt(diag(4, 36)) = 2 * (2 + 6) = 16  ->  2 + 18 - 16 = 4
    fid = M.fid_from_stats(np.zeros(2), np.diag([1.0, 4.0]), np.ones(2), np.diag([4.0, 9.0]))
    assert fid == pytest.approx(4.0)


def test_fid_of_non_commuting_covariances():
    # I vs [[2,1],[1,2]] (eigenvalues 3, 1): 2 + 4 - 2 (sqrt 3 + 1) = 4 - 2 sqrt 3
    fid = M.fid_from_stats(np.zeros(2), np.eye(2), np.zeros(2), np.array([[2.0, 1.0], [1.0, 2.0]]))
    assert fid == pytest.approx(4 - 2 * math.sqrt(3))


def test_fid_of_identical_stats_is_zero_and_gaussian_stats_are_unbiased():
    x = np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 4.0]])
    mu, sigma = M.gaussian_stats(x)
    assert mu == pytest.approx([2.0, 2.0])
    assert sigma == pytest.approx(np.array([[4.0, 3.0], [3.0, 3.0]]))  # ddof = 1
    assert M.fid_from_stats(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)


def test_inception_score_of_hand_made_posteriors():
    assert M.inception_score(np.array([[1.0, 0.0], [0.0, 1.0]])) == pytest.approx(2.0)   # confident and diverse
    assert M.inception_score(np.full((4, 3), 1 / 3)) == pytest.approx(1.0)                # uninformative
    assert M.inception_score(np.array([[1.0, 0.0], [1.0, 0.0]])) == pytest.approx(1.0)   # collapsed
    # p1 = (.5, .5), p2 = (1, 0): p(y) = (.75, .25); KL1 = .5 log(4/3), KL2 = log(4/3); IS = (4/3)^(3/4)
    assert M.inception_score(np.array([[0.5, 0.5], [1.0, 0.0]])) == pytest.approx((4 / 3) ** 0.75)


def test_precision_recall_on_a_toy_point_set():
    real = np.array([[0.0], [1.0], [2.0], [3.0], [10.0]])
    fake = np.array([[0.5], [20.0], [2.5], [11.0]])
    # k=1 radii: reals 1,1,1,1,7 -> fakes inside: 0.5, 2.5, 11 (20 is 10 from 10 > 7): precision 3/4.
    # fakes' radii 2, 2, 8.5, 9 -> every real is within 0.5 or 1 of a fake: recall 1.
    assert M.precision_recall(real, fake, k=1) == pytest.approx((0.75, 1.0))


def test_precision_recall_exposes_mode_collapse():
    real = np.arange(10.0)[:, None]
    fake = np.array([[0.0], [0.1], [0.2], [0.3], [0.4]])
    # all fakes sit in real 0's ball (radius 3): precision 1; the fakes' radii are <= 0.3, so only real 0 is
    # covered: recall 1/10.
    assert M.precision_recall(real, fake, k=3) == pytest.approx((1.0, 0.1))
    assert M.precision_recall(real, real.copy(), k=3) == pytest.approx((1.0, 1.0))
    assert M.knn_radii(real, 3)[[0, 5, 9]] == pytest.approx([3.0, 2.0, 3.0])


def test_class_diversity():
    f = np.array([[0.0], [3.0], [4.0], [100.0], [101.0]])
    y = np.array([1, 1, 1, 2, 2])
    # class 1: distances 3, 4, 1 -> 8/3; class 2: 1 -> mean (8/3 + 1) / 2
    assert M.class_diversity(f, y) == pytest.approx((8 / 3 + 1) / 2)
    assert math.isnan(M.class_diversity(f[:1], y[:1]))


def test_spearman():
    assert M.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert M.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(M.spearman([1, 1, 1], [1, 2, 3]))


def _png_b64(img: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _tensor_row(x: np.ndarray, png: bool = True) -> dict:
    """A results.jsonl-like row of a (1, 32, 32) sample: its raw tensor and the PNG the worker would return."""
    from noisesearch_worker.data import to_uint8_image
    import torch
    row = {"unit": "t", "tensor": {"shape": [1, 32, 32], "b64": base64.b64encode(x.astype("<f4").tobytes()).decode()}}
    row["png_b64"] = _png_b64(to_uint8_image(torch.from_numpy(x))) if png else ""
    return row


def test_the_border_is_the_test_images_border():
    from noisesearch_worker.data import PAD
    assert M.PAD == PAD and M.CONTENT + 2 * M.PAD == 32


def test_evaluator_view_crops_clamps_and_repads_with_minus_one():
    rng = np.random.default_rng(1)
    x = rng.uniform(-1.3, 1.3, (5, 1, 32, 32)).astype(np.float32)
    v = M.evaluator_view(x)
    assert v.shape == x.shape and v.dtype == np.float32
    inner = (slice(None), slice(None), slice(2, 30), slice(2, 30))
    np.testing.assert_array_equal(v[inner], np.clip(x[inner], -1, 1))
    border = np.ones((32, 32), bool)
    border[2:30, 2:30] = False
    assert (v[..., border] == -1.0).all()
    xt, _ = M._test_split()
    np.testing.assert_array_equal(M.evaluator_view(xt[:200]), xt[:200])  # the identity on test images
    with pytest.raises(ValueError, match="32, 32"):
        M.evaluator_view(np.zeros((1, 28, 28)))


def test_decode_sample_from_png_and_from_raw_tensor_agree():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (28, 28), dtype=np.uint8)
    x = np.pad(img.astype(np.float32) / 127.5 - 1.0, 2, constant_values=-1.0)[None]
    from_png = M.decode_sample({"png_b64": _png_b64(img)})
    from_tensor = M.decode_sample({"png_b64": "", "tensor": {"shape": [1, 32, 32],
                                                             "b64": base64.b64encode(x.astype("<f4").tobytes()).decode()}})
    assert from_png.shape == (1, 32, 32) and from_png.dtype == np.float32
    np.testing.assert_array_equal(from_png, x)
    np.testing.assert_array_equal(from_tensor, x)


@pytest.fixture(scope="module")
def evaluator():
    return M.Evaluator()


def test_the_test_split_against_its_own_shipped_statistics(evaluator):
    """The evaluator + shipped statistics are consistent: the test split's FID to itself is ~0, and its
    accuracy, IS and precision/recall against disjoint test images are those of real data."""
    x, y = M._test_split()
    feats, probs = evaluator(x)
    mu, sigma = M.gaussian_stats(feats)
    assert M.fid_from_stats(mu, sigma, evaluator.ref_mu, evaluator.ref_sigma) == pytest.approx(0.0, abs=1e-3)
    assert (probs.argmax(1) == y).mean() >= 0.9
    # 50 per class from the end of the split: disjoint from the reference set (the first 50 per class)
    idx = np.concatenate([np.flatnonzero(y == c)[-50:] for c in range(10)])
    m = M.set_metrics(evaluator, feats[idx], probs[idx], y[idx])
    assert m.n == 500 and m.accuracy >= 0.85 and m.inception_score > 5
    assert m.precision > 0.6 and m.recall > 0.6


def _generated_border(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """Test images with a border like a generated sample's (the study's samples reach about -0.57 there)."""
    rng = np.random.default_rng(seed)
    y = x.copy()
    noise = rng.uniform(-1.0, -0.5, y.shape).astype(np.float32)
    border = np.ones(y.shape[-2:], bool)
    border[2:30, 2:30] = False
    y[..., border] = noise[..., border]
    return y


def test_test_images_through_the_generated_sample_path_give_the_shipped_statistics(evaluator):
    """The generated-sample path (a 32x32 tensor with generated content in its border) judges the content
    only: the whole test split, its border overwritten, has exactly the shipped statistics."""
    x, _ = M._test_split()
    feats, _ = evaluator(_generated_border(x))
    mu, sigma = M.gaussian_stats(feats)
    assert np.abs(mu - evaluator.ref_mu).max() < 1e-6
    assert np.abs(sigma - evaluator.ref_sigma).max() < 1e-6
    assert M.fid_from_stats(mu, sigma, evaluator.ref_mu, evaluator.ref_sigma) == pytest.approx(0.0, abs=1e-3)


def _real_blocks(spc: int = 3, blocks: int = 3):
    """Disjoint blocks of `spc` test images per class from the end of the split (the report's real-data row)."""
    x, y = M._test_split()
    for b in range(blocks):
        idx = np.concatenate([np.flatnonzero(y == c)[::-1][b * spc:(b + 1) * spc] for c in range(10)])
        yield x[idx], y[idx]


def test_fid_of_real_test_images_through_the_generated_sample_path_stays_at_its_small_sample_value(evaluator):
    """30 real test images (the study's per-seed count) score the same FID, IS and precision/recall whether
    judged as test images, as raw tensors with a generated border, or as the PNGs of those tensors."""
    fids = []
    for b, (x, y) in enumerate(_real_blocks()):
        clean = M.set_metrics(evaluator, *evaluator(x), y)
        rows = [_tensor_row(s) for s in _generated_border(x, seed=b)]
        raw = M.set_metrics(evaluator, *evaluator(np.stack([M.decode_sample(r, "tensor") for r in rows])), y)
        png = M.set_metrics(evaluator, *evaluator(np.stack([M.decode_sample(r, "png") for r in rows])), y)
        for m in (raw, png):  # the test images are 8-bit, so the PNG round trip is exact too
            assert m.fid == pytest.approx(clean.fid, abs=1e-6)
            assert m.inception_score == pytest.approx(clean.inception_score, abs=1e-9)
            assert (m.precision, m.recall, m.accuracy) == (clean.precision, clean.recall, clean.accuracy)
        fids.append(clean.fid)
    # the small-sample bias of FID at 30 samples in 96-d (docs/study: real images score about 2.3)
    assert 1.5 < np.mean(fids) < 3.5


def test_precision_recall_use_as_many_reference_images_as_samples_class_by_class(evaluator):
    x, y = M._test_split()
    idx = np.concatenate([np.flatnonzero(y == 3)[-5:], np.flatnonzero(y == 7)[-2:]])
    m = M.set_metrics(evaluator, *evaluator(x[idx]), y[idx])
    assert m.n == m.n_reference == 7
    ref = evaluator.reference_features(((3, 5), (7, 2)))
    expect = np.concatenate([np.flatnonzero(y == 3)[:5], np.flatnonzero(y == 7)[:2]])
    np.testing.assert_allclose(ref, evaluator(x[expect])[0])
    # too few points for k = 3 nearest neighbours: no value rather than a silently larger reference
    m = M.set_metrics(evaluator, *evaluator(x[idx[:3]]), y[idx[:3]])
    assert m.n_reference == 3 and math.isnan(m.precision) and math.isnan(m.recall)


def test_real_images_on_both_sides_have_precision_and_recall_near_one_at_the_study_size(evaluator):
    """3 test images per class (30, as one study seed) against the same number of reference test images:
    precision and recall near 1 in every block (with the old 4-per-class reference, one block fell to 0.93)."""
    for x, y in _real_blocks():
        m = M.set_metrics(evaluator, *evaluator(x), y)
        assert m.n == m.n_reference == 30
        assert m.precision >= 0.95 and m.recall >= 0.95, (m.precision, m.recall)


def test_metrics_from_raw_tensors_and_from_their_pngs_agree_to_within_8_bit_rounding(evaluator):
    """Samples off the 8-bit grid with a generated border: judged from the raw tensor or from the PNG (the
    8-bit rounding of its content), the metrics differ only by the rounding's effect."""
    rng = np.random.default_rng(2)
    for b, (x, y) in enumerate(_real_blocks()):
        gen = _generated_border(np.clip(x + rng.normal(0, 0.05, x.shape).astype(np.float32), -1, 1), seed=b)
        rows = [_tensor_row(s) for s in gen]
        raw = M.set_metrics(evaluator, *evaluator(np.stack([M.decode_sample(r, "tensor") for r in rows])), y)
        png = M.set_metrics(evaluator, *evaluator(np.stack([M.decode_sample(r, "png") for r in rows])), y)
        assert abs(raw.fid - png.fid) < 0.05
        assert abs(raw.inception_score - png.inception_score) < 0.01 * raw.inception_score
        assert abs(raw.diversity - png.diversity) < 0.01 * raw.diversity
        for k in ("precision", "recall", "accuracy"):  # at most one sample of 30 on the other side of a boundary
            assert abs(getattr(raw, k) - getattr(png, k)) <= 1 / 30 + 1e-9, k
