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
