"""Text streams: vocabulary, the stream layout, resets, the tail split and the errors."""

import numpy as np
import pytest

from rnnlab import data
from rnnlab.data import text as text_data

TEXT = "".join(f"line {i}: the cat sat on the mat.\n" for i in range(40))  # 1,240 chars


def test_vocab_roundtrip_and_unknown_characters():
    v = text_data.Vocab.from_text("hello world")
    assert v.chars == " dehlorw"
    assert v.decode(v.encode("lower hell")) == "lower hell"
    assert text_data.Vocab.from_json(v.to_json()).chars == v.chars
    with pytest.raises(ValueError, match=r"2 character\(s\) not in the vocabulary.*'!'.*'z'"):
        v.encode("zero!")


def test_streams_chunks_and_resets():
    B, T = 4, 8
    ds = data.make("text", text=TEXT, seq_length=T, batch_size=B, val_fraction=0.1)
    assert ds.kind == "stream" and ds.model_spec["vocab_size"] == len(ds.vocab)
    ids = ds.vocab.encode(TEXT)
    n_train = len(TEXT) - round(0.1 * len(TEXT))
    L = (n_train - 1) // B
    S = ds.steps_per_epoch
    assert S == L // T
    for step in (0, 1, S - 1, S, S + 2):
        batch, reset = ds.train_batch(step)
        k = step % S
        assert reset == (k == 0)
        assert batch["inputs"].shape == (B, T) and batch["inputs"].dtype == np.int32
        for b in range(B):  # chunk k of stream b; targets are the inputs shifted by one
            start = b * L + k * T
            np.testing.assert_array_equal(batch["inputs"][b], ids[start : start + T])
            np.testing.assert_array_equal(batch["targets"][b], ids[start + 1 : start + T + 1])
    # consecutive chunks continue each stream
    a, _ = ds.train_batch(1)
    b, _ = ds.train_batch(2)
    np.testing.assert_array_equal(a["targets"][:, -1], b["inputs"][:, 0])
    # validation = the tail of the text, in order
    val = list(ds.eval_batches())
    assert len(val) == ds.num_eval_batches >= 1
    val_ids = ids[n_train:]
    Lv = (len(val_ids) - 1) // B
    np.testing.assert_array_equal(val[0]["inputs"][1], val_ids[Lv : Lv + T])
    meta = ds.metadata()
    assert meta["train_chars"] == n_train and meta["val_chars"] == len(TEXT) - n_train
    assert "last 0.1" in meta["split"] and meta["vocab"]["chars"] == ds.vocab.chars
    limited = data.make("text", text=TEXT, seq_length=T, batch_size=B, eval_batches=1)
    assert len(list(limited.eval_batches())) == 1


def test_errors():
    with pytest.raises(ValueError, match="empty"):
        data.make("text", text="", seq_length=4, batch_size=2)
    with pytest.raises(ValueError, match=r"3201 characters are needed|each need 3201"):
        data.make("text", text=TEXT, seq_length=100, batch_size=32)
    with pytest.raises(ValueError, match="val_fraction"):
        data.make("text", text=TEXT, seq_length=4, batch_size=2, val_fraction=1.5)
