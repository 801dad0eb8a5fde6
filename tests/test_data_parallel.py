"""parallel_pairs: disjoint shares of a parallel corpus (PAWS-X here), against the shared split."""

import pandas as pd
from conftest import write_pawsx

from frkit.data import load_marketplaces
from frkit.data.parallel import pair_shares


def ids(m) -> set:
    return set(m.train["id"]) | set(m.validation["id"])


def test_shares_are_disjoint_balanced_and_tied_to_names():
    shares = pair_shares([str(i) for i in range(100)], ["ja", "en", "es"], seed=3)
    assert sorted(len(s) for s in shares.values()) == [33, 33, 34]
    assert set().union(*shares.values()) == {str(i) for i in range(100)}
    assert sum(len(s) for s in shares.values()) == 100
    assert pair_shares([str(i) for i in range(100)], ["es", "ja", "en"], seed=3) == shares  # order-free
    assert pair_shares([str(i) for i in range(100)], ["ja", "en", "es"], seed=4) != shares  # seeded


def test_disjoint_pawsx_marketplaces(tmp_path):
    root = write_pawsx(tmp_path / "x-final")
    shared = load_marketplaces("pawsx", str(root), ["en", "es", "ja"], parallel_pairs="shared")
    en, es, ja = load_marketplaces("pawsx", str(root), ["en", "es", "ja"])  # disjoint is the default
    assert not (ids(en) & ids(es)) and not (ids(en) & ids(ja)) and not (ids(es) & ids(ja))
    assert ids(en) | ids(es) | ids(ja) == ids(shared[0])
    for m, s in zip((en, es, ja), shared):
        pd.testing.assert_frame_equal(m.test, s.test)  # test sets stay whole
        assert set(m.parallel_corpus["id"]) == ids(s)  # translations of any training pair can be looked up
    # the same pairs for a marketplace in every order of the sequence
    ja2, en2 = load_marketplaces("pawsx", str(root), ["ja", "en"])
    es_alone = load_marketplaces("pawsx", str(root), ["es", "en", "ja"])[0]
    assert ids(es_alone) == ids(es)
    assert ids(en2) | ids(ja2) == ids(shared[0])  # two marketplaces share the pool between them
