"""from_torch / to_torch against PyTorch itself: the ported jaxnn model and the torch module give
the same outputs and the same input gradients on the same data; structure mismatches are named."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn
from jaxnn.interop import from_torch, to_torch

torch = pytest.importorskip("torch")
nn = torch.nn


@pytest.fixture(scope="module", autouse=True)
def fast_compilation():
    """Replaces conftest's fixture of this name: these models are compiled with XLA's optimizations
    on, as users run them. With most optimizations off, the jitted gradient of a Conv2D, BatchNorm,
    Relu, MaxPool2D stack with PyTorch's weights differs from the eager one (and from PyTorch's).
    PyTorch runs on one thread: for models this small, more threads only contend with XLA's."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomize_batch_norm(module):
    """Non-trivial running statistics and affine parameters, so a swapped mapping would show."""
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                layer.running_mean.uniform_(-1, 1)
                layer.running_var.uniform_(0.5, 2.0)
                layer.weight.uniform_(0.5, 1.5)
                layer.bias.uniform_(-0.5, 0.5)
    return module


def assert_same_function(model, params, state, module, x, torch_x, output_to_jaxnn=lambda a: a):
    """Outputs equal, and gradients of the outputs' sum with respect to the input equal (an oracle
    independent of how parameter gradients are mapped)."""
    module.eval()
    differentiable = torch_x.is_floating_point()
    torch_x = torch_x.clone().requires_grad_(differentiable)
    y_torch = module(torch_x)

    def summed(inputs):
        y, _ = model.apply(params, state, inputs)
        return jnp.sum(y), y

    if differentiable:
        (_, y), grad = jax.jit(jax.value_and_grad(summed, has_aux=True))(x)
    else:
        y = jax.jit(lambda inputs: summed(inputs)[1])(x)
    np.testing.assert_allclose(np.asarray(y), output_to_jaxnn(y_torch.detach().numpy()), atol=2e-5, rtol=1e-4)
    if differentiable:
        y_torch.sum().backward()
        expected = torch_x.grad.numpy()
        expected = expected if x.shape == expected.shape else np.moveaxis(expected, 1, -1)
        np.testing.assert_allclose(np.asarray(grad), expected, atol=2e-5, rtol=1e-4)


@pytest.mark.slow
def test_cnn_conv_batch_norm_flatten_dense():
    torch.manual_seed(0)
    module = randomize_batch_norm(nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 5, 3, stride=2, groups=1), nn.Flatten(), nn.Linear(5 * 1 * 1, 6), nn.Tanh(),
        nn.Linear(6, 3)))
    model = jaxnn.Sequential([jaxnn.Conv2D(4, 3, padding=1), jaxnn.BatchNorm(), jaxnn.Relu(), jaxnn.MaxPool2D(2),
                              jaxnn.Conv2D(5, 3, stride=2), jaxnn.Flatten(), jaxnn.Dense(6), jaxnn.Tanh(),
                              jaxnn.Dense(3)])
    params, state, report = from_torch(model, module, (6, 6, 3))
    assert report.passed, str(report)
    assert [row.layer for row in report.rows] == ["conv2d_0", "batch_norm_1", "conv2d_4", "dense_6", "dense_8",
                                                  "(model output)"]
    assert "BatchNorm(momentum=0.9)" in str(report)
    np.testing.assert_array_equal(state["batch_norm_1"]["var"], module[1].running_var.numpy())
    x = jax.random.normal(jax.random.key(1), (3, 6, 6, 3))
    assert_same_function(model, params, state, module, x, torch.from_numpy(np.moveaxis(np.asarray(x), -1, 1).copy()))


def test_flatten_of_a_feature_map_reorders_dense_rows():
    """PyTorch flattens channels first: a Dense after Flatten of a (2, 2, 3) map gets its rows permuted."""
    torch.manual_seed(1)
    module = nn.Sequential(nn.Conv1d(2, 3, 2), nn.BatchNorm1d(3), nn.Flatten(), nn.Linear(3 * 4, 2))
    randomize_batch_norm(module)
    model = jaxnn.Sequential([jaxnn.Conv1D(3, 2), jaxnn.BatchNorm(), jaxnn.Flatten(), jaxnn.Dense(2)])
    params, state, report = from_torch(model, module, (5, 2))
    assert report.passed, str(report)
    weight = module[3].weight.detach().numpy()              # (2, C·L) with C = 3, L = 4
    expected = weight.reshape(2, 3, 4).transpose(2, 1, 0).reshape(12, 2)   # rows (L·C)
    np.testing.assert_array_equal(params["dense_3"]["w"], expected)
    x = jax.random.normal(jax.random.key(2), (4, 5, 2))
    assert_same_function(model, params, state, module, x, torch.from_numpy(np.moveaxis(np.asarray(x), -1, 1).copy()))


class SequenceModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(11, 6)
        self.lstm = nn.LSTM(6, 5, batch_first=True)
        self.gru = nn.GRU(5, 4, batch_first=True)
        self.norm = nn.LayerNorm(4)
        self.birnn = nn.LSTM(4, 3, batch_first=True, bidirectional=True)
        self.rnn = nn.RNN(6, 3, batch_first=True)
        self.head = nn.Linear(3, 2)

    def forward(self, tokens):
        h = self.norm(self.gru(self.lstm(self.embedding(tokens))[0])[0])
        h = self.rnn(self.birnn(h)[0])[1][-1]
        return self.head(h)


def sequence_model():
    """The jaxnn counterpart of SequenceModel."""
    return jaxnn.Sequential([jaxnn.Embedding(11, 6), jaxnn.LSTM(5, return_sequences=True),
                             jaxnn.GRU(4, return_sequences=True), jaxnn.LayerNorm(),
                             jaxnn.Bidirectional(jaxnn.LSTM(3, return_sequences=True)),
                             jaxnn.SimpleRNN(3), jaxnn.Dense(2)])


@pytest.mark.slow
def test_embedding_recurrent_layers_and_layer_norm():
    torch.manual_seed(2)
    module = SequenceModel()
    model = sequence_model()
    params, state, report = from_torch(model, module, (7,))
    assert report.passed, str(report)
    assert "bias_ih + bias_hh are summed" in str(report)
    np.testing.assert_allclose(params["lstm_1"]["b"], (module.lstm.bias_ih_l0 + module.lstm.bias_hh_l0).detach().numpy())
    np.testing.assert_array_equal(params["gru_2"]["bh"], module.gru.bias_hh_l0.detach().numpy())
    tokens = jax.random.randint(jax.random.key(3), (3, 7), 0, 11)
    assert_same_function(model, params, state, module, tokens, torch.from_numpy(np.asarray(tokens).astype(np.int64)))


class AttentionModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = nn.MultiheadAttention(8, 2, batch_first=True)
        self.block = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, activation="gelu",
                                                batch_first=True, norm_first=True)

    def forward(self, x):
        return self.block(self.attention(x, x, x, need_weights=False)[0])


@pytest.mark.slow
def test_attention_and_transformer_block():
    torch.manual_seed(3)
    module = AttentionModel()
    with torch.no_grad():   # PyTorch starts these biases at zero; make them count
        for parameter in module.parameters():
            if parameter.ndim == 1:
                parameter.uniform_(-0.5, 0.5)
    model = jaxnn.Sequential([jaxnn.MultiHeadAttention(2), jaxnn.TransformerEncoderBlock(2, mlp_ratio=2)])
    params, state, report = from_torch(model, module, (5, 8))
    assert report.passed, str(report)
    x = jax.random.normal(jax.random.key(4), (2, 5, 8))
    assert_same_function(model, params, state, module, x, torch.from_numpy(np.asarray(x).copy()))
    # The same port from the state dict alone.
    from_dict, _, unchecked = from_torch(model, module.state_dict(), (5, 8))
    assert not unchecked.checked and not unchecked.passed
    jax.tree.map(np.testing.assert_array_equal, params, from_dict)


def test_round_trip_gives_the_state_dict_back():
    torch.manual_seed(4)
    module = SequenceModel()
    model = sequence_model()
    params, state, _ = from_torch(model, module.state_dict(), (7,), check=False)
    back = to_torch(model, params, state, module, (7,))
    original = module.state_dict()
    assert list(back) == list(original)
    for name, tensor in original.items():
        torch.testing.assert_close(back[name], tensor, rtol=0, atol=1e-6, msg=name)


@pytest.mark.slow
def test_trained_params_load_into_a_fresh_module():
    torch.manual_seed(4)
    module = SequenceModel()
    model = sequence_model()
    params, state, _ = from_torch(model, module.state_dict(), (7,), check=False)
    # Trained jaxnn params (here: changed) load into a fresh module and give jaxnn's outputs.
    changed = jax.tree.map(lambda p: p * 1.5, params)
    fresh = SequenceModel()
    fresh.load_state_dict(to_torch(model, changed, state, fresh, (7,)))
    tokens = jax.random.randint(jax.random.key(5), (2, 7), 0, 11)
    assert_same_function(model, changed, state, fresh, tokens, torch.from_numpy(np.asarray(tokens).astype(np.int64)))


def test_a_state_dict_ports_as_its_module_does():
    """Matched in the module's order (``'10'`` after ``'9'``, not after ``'1'``), weights transposed."""
    torch.manual_seed(8)
    module = nn.Sequential(*[nn.Linear(3, 3) for _ in range(11)])
    model = jaxnn.Sequential([jaxnn.Dense(3) for _ in range(11)])
    params, _, _ = from_torch(model, module.state_dict(), (3,))
    for index in range(11):
        np.testing.assert_array_equal(params[f"dense_{index}"]["w"], module[index].weight.detach().numpy().T)
        np.testing.assert_array_equal(params[f"dense_{index}"]["b"], module[index].bias.detach().numpy())


def test_structure_mismatches_name_the_layer_and_module():
    module = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
    wrong_width = jaxnn.Sequential([jaxnn.Dense(32), jaxnn.Relu(), jaxnn.Dense(10), jaxnn.Relu(), jaxnn.Dense(10)])
    with pytest.raises(ValueError, match=r"layer 'dense_2' \(dense, w \(32, 10\)\) does not fit torch module '2' "
                                         r"\(Linear, weight \(64, 32\)\)"):
        from_torch(wrong_width, module, (4,))
    with pytest.raises(ValueError, match=r"layer 'conv1d_0' .* torch module '0' \(Linear.*ports to dense, not conv1d"):
        from_torch(jaxnn.Sequential([jaxnn.Conv1D(32, 1), jaxnn.Dense(64), jaxnn.Dense(10)]), module, (3, 4))
    with pytest.raises(ValueError, match=r"torch module '4' \(Linear, weight \(10, 64\)\) has no jaxnn counterpart"):
        from_torch(jaxnn.Sequential([jaxnn.Dense(32), jaxnn.Dense(64)]), module, (4,))
    with pytest.raises(ValueError, match=r"layer 'dense_3' .* has no torch counterpart"):
        from_torch(jaxnn.Sequential([jaxnn.Dense(32), jaxnn.Dense(64), jaxnn.Dense(10), jaxnn.Dense(3)]), module, (4,))
    with pytest.raises(TypeError, match="torch.nn.Module or a state dict"):
        from_torch(wrong_width, [1, 2], (4,))


def test_a_wrong_port_fails_the_check():
    """A model whose formula differs (no bias in jaxnn's norm would not even match; here GELU vs ReLU)
    fails the report, with the output row naming the difference."""
    module = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    model = jaxnn.Sequential([jaxnn.Dense(8), jaxnn.Tanh(), jaxnn.Dense(2)])
    _, _, report = from_torch(model, module, (4,))
    assert not report.passed
    assert report.rows[-1].layer == "(model output)" and report.rows[-1].passed is False
    assert "FAILED" in str(report)


@pytest.mark.slow
def test_group_norm_rms_norm_conv_transpose():
    torch.manual_seed(5)
    module = nn.Sequential(nn.Conv2d(2, 4, 3), nn.GroupNorm(2, 4), nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1,
                                                                                       output_padding=1),
                           nn.Flatten(), nn.Linear(3 * 8 * 8, 6), nn.RMSNorm(6))
    model = jaxnn.Sequential([jaxnn.Conv2D(4, 3), jaxnn.GroupNorm(2), jaxnn.ConvTranspose2D(3, 3, stride=2, padding=1,
                                                                                            output_padding=1),
                              jaxnn.Flatten(), jaxnn.Dense(6), jaxnn.RMSNorm()])
    params, state, report = from_torch(model, module, (6, 6, 2))
    assert report.passed, str(report)
    x = jax.random.normal(jax.random.key(6), (2, 6, 6, 2))
    assert_same_function(model, params, state, module, x, torch.from_numpy(np.moveaxis(np.asarray(x), -1, 1).copy()))


class StackedModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 5, num_layers=2, batch_first=True)
        self.gru = nn.GRU(5, 4, num_layers=3, batch_first=True)

    def forward(self, x):
        return self.gru(self.lstm(x)[0])[1][-1]


@pytest.mark.slow
def test_stacked_recurrent_layers():
    torch.manual_seed(6)
    module = StackedModel()
    model = jaxnn.Sequential([jaxnn.LSTM(5, num_layers=2, return_sequences=True), jaxnn.GRU(4, num_layers=3)])
    params, state, report = from_torch(model, module, (7, 3))
    assert report.passed, str(report)
    np.testing.assert_array_equal(params["gru_1"]["layer_2"]["wh"], module.gru.weight_hh_l2.detach().numpy().T)
    x = jax.random.normal(jax.random.key(7), (2, 7, 3))
    assert_same_function(model, params, state, module, x, torch.from_numpy(np.asarray(x).copy()))


@pytest.mark.slow
def test_cross_attention_with_separate_key_value_projections():
    torch.manual_seed(7)
    module = nn.MultiheadAttention(8, 2, kdim=6, vdim=6, batch_first=True)
    with torch.no_grad():
        module.in_proj_bias.uniform_(-1, 1)
    model = jaxnn.MultiHeadAttention(2, context_features=6)
    params, state, _ = from_torch(model, module, (5, 8), check=False)   # the check feeds x alone
    x, context = np.random.default_rng(0).normal(size=(2, 2, 5, 8)).astype(np.float32)[0], \
        np.random.default_rng(1).normal(size=(2, 4, 6)).astype(np.float32)
    y, _ = jax.jit(lambda a, c: model.apply(params, state, a, context=c))(x, context)
    expected = module(torch.from_numpy(x), torch.from_numpy(context), torch.from_numpy(context), need_weights=False)[0]
    np.testing.assert_allclose(np.asarray(y), expected.detach().numpy(), atol=2e-5, rtol=1e-4)
    back = to_torch(model, params, state, module, (5, 8))
    assert sorted(back) == sorted(module.state_dict())
    for name, tensor in module.state_dict().items():
        torch.testing.assert_close(back[name], tensor, rtol=0, atol=0, msg=name)


@pytest.mark.slow
def test_upsample_and_conv_transpose1d():
    torch.manual_seed(9)
    # Ending in a normalization: the check's gradients must not be those of the (constant) sum.
    module = nn.Sequential(nn.Conv1d(3, 4, 3), nn.Upsample(scale_factor=2), nn.ConvTranspose1d(4, 2, 3, stride=2),
                           nn.GroupNorm(1, 2))
    model = jaxnn.Sequential([jaxnn.Conv1D(4, 3), jaxnn.Upsample(2), jaxnn.ConvTranspose1D(2, 3, stride=2),
                              jaxnn.GroupNorm(1)])
    params, state, report = from_torch(model, module, (9, 3))
    assert report.passed, str(report)
    x = jax.random.normal(jax.random.key(8), (2, 9, 3))
    assert_same_function(model, params, state, module, x, torch.from_numpy(np.moveaxis(np.asarray(x), -1, 1).copy()),
                         output_to_jaxnn=lambda y: np.moveaxis(y, 1, -1))


@pytest.mark.slow
def test_bidirectional_and_bare_attention_check_as_the_model_itself():
    """The model's output need not be its last leaf's (Bidirectional concatenates two), and a bare
    nn.MultiheadAttention runs as self-attention, module(x, x, x)."""
    torch.manual_seed(11)
    _, _, report = from_torch(jaxnn.Bidirectional(jaxnn.GRU(3, return_sequences=True)),
                              nn.GRU(2, 3, bidirectional=True, batch_first=True), (4, 2))
    assert report.passed and report.rows[0].output_abs is not None, report
    _, _, report = from_torch(jaxnn.MultiHeadAttention(2), nn.MultiheadAttention(4, 2, batch_first=True), (3, 4))
    assert report.passed and report.rows[0].output_abs is not None, report
    assert any("num_heads=2" in note and "heads=2" in note for note in report.notes)


@pytest.mark.slow
def test_a_layer_inside_residual_is_compared_with_its_own_output():
    """The per-layer row compares the attention's output, not Residual's (x + attention(x))."""
    torch.manual_seed(12)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.attention, self.out = nn.Linear(3, 4), nn.MultiheadAttention(4, 2, batch_first=True), \
                nn.Linear(4, 2)

        def forward(self, x):
            h = self.embed(x)
            return self.out(h + self.attention(h, h, h, need_weights=False)[0])

    model = jaxnn.Sequential([jaxnn.Dense(4), jaxnn.Residual(jaxnn.MultiHeadAttention(2)), jaxnn.Dense(2)])
    _, _, report = from_torch(model, Block(), (5, 3))
    assert report.passed, report
    row = report.rows[1]
    assert (row.layer, row.kind) == ("residual_1", "multi_head_attention") and row.output_abs < 1e-5


@pytest.mark.slow
def test_a_norm_before_the_first_convolution_still_transposes_the_probe():
    torch.manual_seed(13)
    module = randomize_batch_norm(nn.Sequential(nn.BatchNorm2d(2), nn.ReLU(), nn.Conv2d(2, 3, 3)))
    model = jaxnn.Sequential([jaxnn.BatchNorm(), jaxnn.Relu(), jaxnn.Conv2D(3, 3)])
    _, _, report = from_torch(model, module, (5, 5, 2))
    assert report.passed, report
    assert report.rows[0].output_abs < 1e-5   # the norm's own output, moved to channels last


@pytest.mark.slow
def test_a_torch_forward_that_fails_names_the_layout_assumed():
    class Transposing(nn.Module):   # reads (N, features, T): not the layout from_torch assumes
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 2)

        def forward(self, x):
            return self.linear(x.transpose(1, 2))

    with pytest.raises(ValueError, match=r"could not run the torch model \(RuntimeError.*does not start with a "
                                         r"convolution.*\(4, 3, 4\).*probe=.*check=False"):
        from_torch(jaxnn.Dense(2), Transposing(), (3, 4))
    _, _, report = from_torch(jaxnn.Dense(2), Transposing(), (3, 4), check=False)
    assert not report.checked


def test_a_stacked_bidirectional_module_is_a_clear_error():
    module = nn.GRU(3, 5, num_layers=2, bidirectional=True, batch_first=True)
    for model in (jaxnn.Bidirectional(jaxnn.GRU(5, num_layers=2)), jaxnn.Bidirectional(jaxnn.GRU(5))):
        with pytest.raises(ValueError, match=r"layer k > 0 of each direction reads both directions.*Sequential of N "
                                             r"Bidirectional\(GRU\(H, return_sequences=True\)\)"):
            from_torch(model, module, (7, 3), check=False)
    with pytest.raises(ValueError, match="stacked bidirectional"):
        from_torch(jaxnn.Bidirectional(jaxnn.GRU(5, num_layers=2)),
                   nn.GRU(3, 5, bidirectional=True, batch_first=True), (7, 3), check=False)


def test_hyperparameters_the_weights_do_not_show():
    """What the tensors cannot tell is a note (heads, groups, eps, norm_first) or, where jaxnn is known
    to differ (TransformerEncoderBlock's GELU), a ValueError naming both."""
    _, _, report = from_torch(jaxnn.MultiHeadAttention(2), nn.MultiheadAttention(8, 4, batch_first=True), (5, 8),
                              check=False)
    assert any("num_heads=4" in note and "heads=4" in note for note in report.notes)
    _, _, report = from_torch(jaxnn.GroupNorm(4), nn.GroupNorm(2, 8, eps=1e-3), (8,), check=False)
    assert any("num_groups=2" in note for note in report.notes) and any("eps=0.001" in note for note in report.notes)
    _, _, report = from_torch(jaxnn.GroupNorm(4), nn.GroupNorm(2, 8).state_dict(), (8,))
    assert any("state dict does not hold" in note for note in report.notes)
    relu_block = nn.TransformerEncoderLayer(8, 2, 32, dropout=0.0, batch_first=True)
    with pytest.raises(ValueError, match="its activation is relu, jaxnn's TransformerEncoderBlock's is gelu"):
        from_torch(jaxnn.TransformerEncoderBlock(2), relu_block, (5, 8), check=False)
    gelu_block = nn.TransformerEncoderLayer(8, 2, 32, dropout=0.0, batch_first=True, activation="gelu")
    _, _, report = from_torch(jaxnn.TransformerEncoderBlock(2, pre_norm=False), gelu_block, (5, 8), check=False)
    assert any("norm_first=False" in note and "pre_norm=False" in note for note in report.notes)


def test_layout_facts_of_wrapped_and_norm_first_models():
    """Without running anything: the model's output shape is the model's, not its last leaf's, and
    a norm or activation before the first convolution leaves the input an image (the fast half of
    the slow tests above)."""
    from jaxnn.interop._units import model_layout

    layout = model_layout(jaxnn.Bidirectional(jaxnn.GRU(3, return_sequences=True)), (4, 2))
    assert layout.output_shape == (4, 6)
    layout = model_layout(jaxnn.Sequential([jaxnn.BatchNorm(), jaxnn.Relu(), jaxnn.Conv2D(3, 3)]), (5, 5, 2))
    assert layout.spatial_input and layout.units[0].spatial_output
    assert not model_layout(jaxnn.Sequential([jaxnn.LayerNorm(), jaxnn.Dense(3)]), (5, 2)).spatial_input
