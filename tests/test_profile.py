"""Op profiles: the host replay (real LCE interpreter) and lce_benchmark_model's op profile.

The replay is checked for what it computes, not for its times (shared machines): each one-op
model must compute exactly what that op computes inside the whole model (compared with
TensorFlow Lite's own interpreter keeping every intermediate tensor), and the profile must
list every op of the converted model once. The parser reads output in the layout that
TFLite's profile summarizer prints (tab-separated columns, "[name]:node" names).
"""

import numpy as np
import pytest
import tensorflow as tf

import adambnn_larq as ab
from adambnn_larq import deploy as lce_tools
from adambnn_larq.deploy import profile as profiling


def _float_tflite():
    inputs = tf.keras.Input((6, 6, 3), batch_size=1)
    x = tf.keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = tf.keras.layers.ReLU(name="relu")(x)
    x = tf.keras.layers.Add(name="add")([x, tf.keras.layers.Conv2D(4, 1, name="skip")(inputs)])
    x = tf.keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = tf.keras.layers.Dense(5, name="logits")(x)
    model = tf.keras.Model(inputs, outputs)
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


@pytest.mark.slow
def test_each_replayed_op_computes_what_it_computes_in_the_whole_model(rng):
    flatbuffer = _float_tflite()
    image = rng.uniform(-1, 1, (1, 6, 6, 3)).astype(np.float32)
    # The same kernels for both (no XNNPACK, which partitions the two graphs differently).
    plain = tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    whole = tf.lite.Interpreter(
        model_content=flatbuffer,
        experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=plain,
    )
    whole.allocate_tensors()
    whole.set_tensor(whole.get_input_details()[0]["index"], image)
    whole.invoke()
    model = profiling.read_model(flatbuffer)
    graph = model.subgraphs[0]
    assert len(graph.operators) >= 4
    for position, op in enumerate(graph.operators):
        variable = [
            int(i)
            for i in op.inputs
            if i >= 0 and not profiling._is_constant(model, graph.tensors[i])
        ]
        outputs = [int(i) for i in op.outputs]
        one_op = profiling._submodel(model, [position], variable, outputs)
        replay = tf.lite.Interpreter(model_content=one_op, experimental_op_resolver_type=plain)
        replay.allocate_tensors()
        for detail, index in zip(replay.get_input_details(), variable):
            replay.set_tensor(detail["index"], whole.get_tensor(index))
        replay.invoke()
        for detail, index in zip(replay.get_output_details(), outputs):
            np.testing.assert_array_equal(
                replay.get_tensor(detail["index"]), whole.get_tensor(index)
            )


@pytest.mark.slow
def test_host_profile_lists_every_op_of_a_converted_reactnet():
    model = ab.ReActNetSmall(input_shape=(16, 16, 1), width_multiplier=0.125)
    flatbuffer = lce_tools.convert_model(model, route="graphdef").flatbuffer
    seen = []
    result = profiling.profile_host(
        flatbuffer, runs=2, warmup=1, progress=lambda done, total: seen.append((done, total))
    )
    census = lce_tools.op_census(flatbuffer)
    assert sorted(op.op for op in result.ops) == sorted(census.elements())
    assert [op.index for op in result.ops] == list(range(sum(census.values())))
    assert seen[-1] == (len(result.ops), len(result.ops))
    assert all(op.ms >= 0 for op in result.ops) and result.whole_model_ms > 0
    by_type = {row["op"]: row for row in result.by_type()}
    assert by_type["LceBconv2d"]["count"] == 31
    assert sum(row["share"] for row in result.by_type()) == pytest.approx(1.0)
    layers = [row["layer"] for row in result.by_layer()]
    assert [layer for layer in layers if layer.startswith("block")] == [
        f"block{i}" for i in range(1, 14)
    ]
    report = result.to_json()
    assert report["source"] == "host replay" and len(report["ops"]) == len(result.ops)
    assert "LceBconv2d" in result.table() and "| LceBconv2d | 31 |" in result.markdown()


# lce_benchmark_model --enable_op_profiling=true: the initialization table comes first and
# must be skipped; the regular runs' "Run Order" table is the profile.
BENCHMARK_OUTPUT = """\
Inference timings in us: Init: 20184, First inference: 190412, Warmup (avg): 181337, \
Inference (avg): 179822
Profiling Info for Benchmark Initialization:
============================== Run Order ==============================
\t             [node type]\t          [start]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t\
  [mem KB]\t[times called]\t[Name]
\t         AllocateTensors\t            0.000\t   12.501\t   12.501\t100.000%\t100.000%\t\
  3204.000\t        1\tAllocateTensors/0

Operator-wise Profiling Info for Regular Benchmark Runs:
============================== Run Order ==============================
\t             [node type]\t          [start]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t\
  [mem KB]\t[times called]\t[Name]
\t              REVERSE_V2\t            0.000\t    0.412\t    0.405\t  0.226%\t  0.226%\t\
     0.000\t        1\t[reactnet_a/rotate_input/ReverseV2]:0
\t                 CONV_2D\t            0.406\t    2.101\t    2.034\t  1.134%\t  1.360%\t\
     0.000\t        1\t[reactnet_a/stem_bn/FusedBatchNormV3;reactnet_a/stem_conv/Conv2D]:1
\t             LceQuantize\t            2.441\t    0.212\t    0.198\t  0.110%\t  1.470%\t\
     0.000\t        1\t[reactnet_a/block1_rsign1/add]:2
\t              LceBconv2d\t            2.640\t    9.871\t    9.512\t  5.303%\t  6.773%\t\
     0.000\t        1\t[reactnet_a/block1_bn1/FusedBatchNormV3;reactnet_a/block1_conv3x3/Conv2D]:3

============================== Top by Computation Time ==============================
\t             [node type]\t          [start]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t\
  [mem KB]\t[times called]\t[Name]
\t              LceBconv2d\t            2.640\t    9.871\t    9.512\t  5.303%\t  5.303%\t\
     0.000\t        1\t[reactnet_a/block1_bn1/FusedBatchNormV3;reactnet_a/block1_conv3x3/Conv2D]:3
"""


def test_parse_op_profile_reads_the_regular_runs():
    result = profiling.parse_op_profile(BENCHMARK_OUTPUT.replace("\\\n", ""))
    assert [(op.index, op.op, op.ms) for op in result.ops] == [
        (0, "REVERSE_V2", 0.405),
        (1, "CONV_2D", 2.034),
        (2, "LceQuantize", 0.198),
        (3, "LceBconv2d", 9.512),
    ]
    assert result.ops[3].name.startswith("reactnet_a/block1_bn1/")
    assert profiling.layer_of(result.ops[3].name) == "block1"
    assert result.whole_model_ms == pytest.approx(179.822)
    assert result.source == "lce_benchmark_model"


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "Inference timings in us: Init: 1, First inference: 2, Warmup (avg): 3, "
            "Inference (avg): 4",
            "--enable_op_profiling=true",
        ),
        ("Operator-wise Profiling Info for Regular Benchmark Runs:\nnothing", "no 'Run Order'"),
    ],
)
def test_parse_op_profile_errors(text, message):
    with pytest.raises(ValueError, match=message):
        profiling.parse_op_profile(text)
