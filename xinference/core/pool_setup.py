"""What every xoscar pool of ours does before it starts: skip importing torch.

When an xoscar pool starts it resolves every serializer registered by name, and
the one for ``torch.Tensor`` imports torch whenever torch is installed: 220 MB
of resident memory and about a second, in the server process and in every model
process, llama.cpp ones included, though no message of ours carries a tensor
(requests and answers are dicts and JSON bytes). Dropping that serializer keeps
torch out of every process that does not load it for its engine; a tensor sent
anyway would still go through pickle.

Importing this module applies it. Server processes import it in ``run_server``,
before their pool starts; model processes through their sub-pool's ``modules``
list, which xoscar imports before it resolves the serializers.
"""

from __future__ import annotations

MODULE = __name__


def prepare() -> None:
    """Unregister xoscar's lazily imported torch serializer in this process."""
    from xoscar.serialization.torch import TorchTensorSerializer

    TorchTensorSerializer.unregister("torch.Tensor")


prepare()
