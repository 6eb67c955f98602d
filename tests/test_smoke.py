import numpy as np

from skembed import EmbeddingVectorizer


def test_vectorizer_matches_sentence_transformers(tiny_model):
    from sentence_transformers import SentenceTransformer

    texts = ["Nerea va a comprar un cuadro usando bitcoins", "Se puede comprar arte", "hola"]
    ours = EmbeddingVectorizer(tiny_model, device="cpu").fit_transform(texts)
    theirs = SentenceTransformer(tiny_model, device="cpu").encode(texts)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=0)
