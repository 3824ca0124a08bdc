"""Your own models: parity of a torch.nn.Module and its Keras port, layer by layer, through training.

`pair` (the pair and its data), `mapping` (which layer is which, weights and layouts), `trace`
(each layer's inputs and outputs), `checks` (the parity records), `hints` (the first diverging
layer and the trap behind it), `api` (check_ported, assert_parity).
"""
