"""The tiny release builders live in the package (noisesearch_worker.testing.tiny_models), so that the e2e test's
`python -m noisesearch_worker.testing.make_tiny_flux` and these tests make the very same folders."""
from noisesearch_worker.testing.tiny_models import *  # noqa: F401,F403
from noisesearch_worker.testing.tiny_models import (  # noqa: F401  (names the tests import explicitly)
    BERT_VOCAB, LETTERS, TINY_AE, TINY_FLUX, TINY_SIT, WORDS, bert_tokenizer, clip_tokenizer, flux_parts, flux_spec,
    random_sit, save_flux_release, t5_tokenizer, to_bfl_autoencoder, to_bfl_transformer,
)
