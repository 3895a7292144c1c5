"""The one spelling of a replica uid, and its inverse."""

import pytest

from xinference.core.cluster_state import ReplicaRecord
from xinference.core.replica_names import replica_uid, split_replica_uid


@pytest.mark.parametrize("model_uid,index", [("m", 0), ("m-2", 0), ("qwen2.5-7b-1", 12)])
def test_split_inverts_replica_uid(model_uid, index):
    assert split_replica_uid(replica_uid(model_uid, index)) == (model_uid, index)


def test_format_is_xinferences():
    assert replica_uid("my-model", 3) == "my-model-3"
    assert ReplicaRecord("m-2", 1, "w:1").replica_uid == "m-2-1"


@pytest.mark.parametrize("bad", ["m", "m-", "-1", "m-x", "m-1.5", "m-\u0663"])
def test_split_rejects_what_is_not_a_replica_uid(bad):
    with pytest.raises(ValueError):
        split_replica_uid(bad)


@pytest.mark.parametrize("model_uid,index", [("", 0), ("m", -1), ("m", "1"), ("m", True)])
def test_replica_uid_rejects_bad_parts(model_uid, index):
    with pytest.raises(ValueError):
        replica_uid(model_uid, index)
