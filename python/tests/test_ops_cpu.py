"""customar's torch.library ops without a GPU (CI, where torch is installed): the schemas are registered, the fake
implementations give the shapes, strides and dtypes the real ones give (so torch.compile plans the right buffers),
bad fused arguments are refused at trace time, and Communicator.torch_all_reduce traces into one graph."""
import pytest

torch = pytest.importorskip("torch")
import customar  # noqa: E402
import customar.ops  # noqa: E402,F401  (registers the ops)
from torch._subclasses.fake_tensor import FakeTensorMode  # noqa: E402

OPS = {
    "all_reduce": "customar::all_reduce(Tensor input, int comm) -> Tensor",
    "all_reduce_inplace": "customar::all_reduce_inplace(Tensor(a!) input, int comm) -> ()",
    "all_reduce_out": "customar::all_reduce_out(Tensor input, Tensor(a!) out, int comm) -> ()",
    "all_reduce_add_rmsnorm": "customar::all_reduce_add_rmsnorm(Tensor(a!) input, Tensor residual, Tensor gamma, "
                              "float eps, int comm, Tensor? fp8_scale=None) -> (Tensor, Tensor)",
    "all_reduce_add_rmsnorm_inplace": "customar::all_reduce_add_rmsnorm_inplace(Tensor(c!) input, Tensor(a!) residual, "
                                      "Tensor gamma, Tensor(b!) norm_out, float eps, int comm, "
                                      "Tensor? fp8_scale=None) -> ()",
}


@pytest.mark.parametrize("name", OPS)
def test_op_is_registered_with_its_schema(name):
    assert str(getattr(torch.ops.customar, name).default._schema) == OPS[name]


@pytest.fixture
def fake():
    return FakeTensorMode(allow_non_fake_inputs=False)


def test_fake_all_reduce_gives_the_input_layout(fake):
    with fake:
        x = torch.empty(40, 6, dtype=torch.bfloat16, device="cuda").t()
        y = torch.ops.customar.all_reduce(x, 7)
    assert (y.shape, y.stride(), y.dtype, y.device.type) == (x.shape, x.stride(), x.dtype, "cuda")


def test_fake_out_variant_checks_the_output(fake):
    with fake:
        x = torch.empty(8, 16, dtype=torch.float16, device="cuda")
        torch.ops.customar.all_reduce_out(x, torch.empty_like(x), 7)
        torch.ops.customar.all_reduce_inplace(x, 7)
        with pytest.raises(customar.InvalidArgument, match="out is torch.float32"):
            torch.ops.customar.all_reduce_out(x, torch.empty(8, 16, device="cuda"), 7)


@pytest.mark.parametrize("scale, norm_dtype", [(False, torch.bfloat16), (True, torch.float8_e4m3fn)],
                         ids=["bf16", "fp8"])
def test_fake_fused_gives_both_outputs(fake, scale, norm_dtype):
    with fake:
        x = torch.empty(5, 64, dtype=torch.bfloat16, device="cuda")
        r = torch.empty_like(x)
        g = torch.empty(64, dtype=torch.bfloat16, device="cuda")
        s = torch.empty(1, dtype=torch.float32, device="cuda") if scale else None
        norm, res = torch.ops.customar.all_reduce_add_rmsnorm(x, r, g, 1e-6, 7, s)
        torch.ops.customar.all_reduce_add_rmsnorm_inplace(x, r, g, torch.empty_like(x, dtype=norm_dtype), 1e-6, 7, s)
    assert (norm.shape, norm.dtype, res.shape, res.dtype) == (x.shape, norm_dtype, x.shape, x.dtype)


@pytest.mark.parametrize("make, error", [
    (lambda: dict(x=(5, 64, 2)), r"input must be \[tokens, hidden\] float16 or bfloat16"),
    (lambda: dict(dtype=torch.float32), r"input must be \[tokens, hidden\] float16 or bfloat16"),
    (lambda: dict(r=(5, 32)), "residual must be the input's shape and dtype"),
    (lambda: dict(r_dtype=torch.float16), "residual must be the input's shape and dtype"),
    (lambda: dict(g=(32,)), r"gamma must be \[hidden\] = \(64,\)"),
    (lambda: dict(s=(2,)), "fp8_scale must be a 1-element float32 tensor"),
    (lambda: dict(s=(1,), s_dtype=torch.float16), "fp8_scale must be a 1-element float32 tensor"),
], ids=["three_dims", "float32", "residual_shape", "residual_dtype", "gamma_shape", "scale_size", "scale_dtype"])
def test_fake_fused_refuses_bad_arguments_at_trace_time(fake, make, error):
    a = dict(x=(5, 64), dtype=torch.bfloat16, r=(5, 64), r_dtype=None, g=(64,), s=None, s_dtype=torch.float32)
    a.update(make())
    with fake:
        x = torch.empty(a["x"], dtype=a["dtype"], device="cuda")
        r = torch.empty(a["r"], dtype=a["r_dtype"] or a["dtype"], device="cuda")
        g = torch.empty(a["g"], dtype=a["dtype"], device="cuda")
        s = None if a["s"] is None else torch.empty(a["s"], dtype=a["s_dtype"], device="cuda")
        with pytest.raises(customar.InvalidArgument, match=error):
            torch.ops.customar.all_reduce_add_rmsnorm(x, r, g, 1e-6, 7, s)


@pytest.mark.parametrize("scale", [False, True], ids=["bf16", "fp8"])
def test_fake_fused_inplace_checks_norm_out(fake, scale):
    with fake:
        x = torch.empty(5, 64, dtype=torch.bfloat16, device="cuda")
        s = torch.empty(1, dtype=torch.float32, device="cuda") if scale else None
        wrong = torch.empty_like(x, dtype=torch.bfloat16 if scale else torch.float8_e4m3fn)
        with pytest.raises(customar.InvalidArgument, match="norm_out must be"):
            torch.ops.customar.all_reduce_add_rmsnorm_inplace(x, torch.empty_like(x), torch.empty(64, device="cuda",
                                                              dtype=x.dtype), wrong, 1e-6, 7, s)


def test_real_op_with_an_unknown_handle_is_a_state_error():
    with pytest.raises(customar.StateError, match="handle 987654 names no open communicator"):
        torch.ops.customar.all_reduce(torch.ones(4), 987654)


def _stand_in(handle):
    """A Communicator as far as torch_all_reduce and all_reduce_add_rmsnorm look (they read the handle and the ops
    module only): what tracing needs, without a GPU to build a real one on."""
    comm = customar.Communicator.__new__(customar.Communicator)
    comm._handle, comm._ops = handle, customar.ops
    return comm


class _Traced(Exception):
    pass


def _trace(fn, *args):
    """Traces fn with fullgraph=True (a graph break raises) and returns the names of the custom ops in its graph, in
    order. The graph is not run: its compiled form raises _Traced instead."""
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)

        def run(*a):
            raise _Traced

        return run

    torch._dynamo.reset()
    with pytest.raises(_Traced):
        torch.compile(fn, fullgraph=True, backend=backend)(*args)
    assert len(graphs) == 1
    return [str(n.target).removesuffix(".default") for n in graphs[0].graph.nodes
            if n.op == "call_function" and "customar" in str(n.target)]


def test_torch_all_reduce_traces_into_one_graph():
    comm = _stand_in(41)

    def fn(x, out):
        y = comm.torch_all_reduce(x * 2)
        comm.torch_all_reduce(y, out=y)
        comm.torch_all_reduce(y, out=out)
        return y + 1

    ops = _trace(fn, torch.ones(8), torch.empty(8))
    assert ops == ["customar.all_reduce", "customar.all_reduce_inplace", "customar.all_reduce_out"]


@pytest.mark.parametrize("in_place", [False, True])
def test_fused_method_traces_into_one_graph(in_place):
    comm = _stand_in(42)

    def fn(x, r, g):
        norm, res = comm.all_reduce_add_rmsnorm(x, r, g, 1e-6, in_place=in_place)
        return norm, res

    ops = _trace(fn, torch.ones(4, 16, dtype=torch.bfloat16), torch.ones(4, 16, dtype=torch.bfloat16),
                 torch.ones(16, dtype=torch.bfloat16))
    assert ops == ["customar.all_reduce_add_rmsnorm" + ("_inplace" if in_place else "")]


def test_fused_method_takes_norm_out_only_in_place():
    comm = _stand_in(43)
    x = torch.ones(4, 16, dtype=torch.bfloat16)
    with pytest.raises(customar.InvalidArgument, match="norm_out is taken with in_place=True only"):
        comm.all_reduce_add_rmsnorm(x, x, torch.ones(16, dtype=torch.bfloat16), 1e-6, norm_out=torch.empty_like(x))


class _CopyCommunicator:
    """A world of one rank on the CPU, registered under a handle: the sum is a copy, the fused call the reference
    formula. What the ops' real implementations call, so that compiled code runs them without a GPU."""

    def all_reduce(self, input, out):
        return out.copy_(input)

    def _all_reduce_add_rmsnorm(self, input, residual_in, residual_out, gamma, norm_out, eps, fp8_scale):
        r = residual_in.float() + input.float()
        residual_out.copy_(r)
        norm = r * torch.rsqrt((r * r).mean(-1, keepdim=True) + eps) * gamma.float()
        norm_out.copy_((norm if fp8_scale is None else norm / fp8_scale).to(norm_out.dtype))


@pytest.fixture
def copy_comm():
    stand_in = _CopyCommunicator()
    customar._LIVE[31337] = stand_in
    yield _stand_in(31337)
    del customar._LIVE[31337]


def _ops_step(x, w, out, comm):
    y = comm.torch_all_reduce(x * 2)
    comm.torch_all_reduce(w, out=w)
    comm.torch_all_reduce(x, out=out)
    return y * 2


def test_compiled_ops_return_mutate_and_write_as_eager_ones(copy_comm):
    torch._dynamo.reset()
    step = torch.compile(_ops_step, fullgraph=True, backend="aot_eager")  # AOT functionalises the mutations
    x, w = torch.randn(8, 16), torch.randn(32)
    w0, out = w.clone(), torch.full_like(x, float("nan"))
    y = step(x, w, out, copy_comm)
    assert torch.equal(y, x * 4) and torch.equal(w, w0) and torch.equal(out, x)


@pytest.mark.parametrize("in_place", [False, True], ids=["new", "in_place"])
def test_compiled_fused_call_updates_the_residual_only_in_place(copy_comm, in_place):
    torch._dynamo.reset()

    def fused(x, r, g):
        return copy_comm.all_reduce_add_rmsnorm(x, r, g, 1e-6, in_place=in_place)

    x, r, g = (torch.randn(s, dtype=torch.bfloat16) for s in ((4, 16), (4, 16), (16,)))
    r0 = r.clone()
    norm, res = torch.compile(fused, fullgraph=True, backend="aot_eager")(x, r, g)
    assert torch.equal(res, (r0.float() + x.float()).to(torch.bfloat16))
    assert (res.data_ptr() == r.data_ptr()) == in_place
    assert torch.equal(r, res if in_place else r0)
    assert norm.dtype == torch.bfloat16 and norm.shape == x.shape


class _ClobberingCommunicator(_CopyCommunicator):
    """The copy stand-in that then overwrites its input, as the unfused path's in-place all-reduce does."""

    def _all_reduce_add_rmsnorm(self, input, *rest):
        super()._all_reduce_add_rmsnorm(input, *rest)
        input.fill_(-7.0)


@pytest.mark.parametrize("in_place", [False, True], ids=["new", "in_place"])
def test_compiled_fused_call_sees_its_input_written_as_eager_does(in_place):
    # The ops declare the input mutated, so a compiled program that reads it after the call reads what the call
    # left there, as eager code does, and never a value forwarded from before the call.
    stand_in = _ClobberingCommunicator()  # _LIVE holds its values weakly
    customar._LIVE[31338] = stand_in
    try:
        comm = _stand_in(31338)

        def fused(x, r, g):
            norm, res = comm.all_reduce_add_rmsnorm(x, r, g, 1e-6, in_place=in_place)
            return norm, res, x + 1

        torch._dynamo.reset()
        x, r, g = (torch.randn(s, dtype=torch.bfloat16) for s in ((4, 16), (4, 16), (16,)))
        eager = fused(x.clone(), r.clone(), g)
        compiled = torch.compile(fused, fullgraph=True, backend="aot_eager")(x.clone(), r.clone(), g)
        assert torch.equal(eager[2], torch.full_like(x, -6.0))
        for e, c in zip(eager, compiled):
            assert torch.equal(e, c)
    finally:
        del customar._LIVE[31338]
