# Part of _rolltpl_support.py (compiler/pyemit/support.go): the helpers
# of ops with tensor steps. Uses contextmanager, torch and StackedTensors,
# which the module imports when a template has tensor steps.

@contextmanager
def hf_parts(op, n):
    """Show op's base class n HF names, one per tensor its steps yield.

    An op with tensor steps lists the HF weights the steps read as its
    hf_names (what the template looks up and gathers); its base class
    (QKVConverOp, StackConverOp, ...) counts its inputs by hf_names.
    """
    names = op.hf_names
    op.hf_names = ["<part %d>" % i for i in range(n)]
    try:
        yield
    finally:
        op.hf_names = [names] if isinstance(names, str) else names


def as_list(weights):
    """The tensors a ConverOp returned, as a list."""
    if isinstance(weights, (torch.Tensor, StackedTensors)):
        return [weights]
    return list(weights)


def chunk(tensor, parts, dim=0):
    """tensor split into parts equal parts along dim; the size must divide."""
    size = tensor.shape[dim]
    if size % parts != 0:
        raise ValueError(f"chunk: size {size} along dim {dim} does not divide into {parts} parts")
    return list(torch.split(tensor, size // parts, dim=dim))
