"""The Keras model that trains a BNN: distillation or label loss, and the recipe's weight decay."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from adambnn_larq.config import WEIGHT_DECAY_MODES
from adambnn_larq.models import binary_conv_layers
from adambnn_larq.optim import decayed_variables, latent_variable


def distillation_loss(teacher_logits: tf.Tensor, student_logits: tf.Tensor) -> tf.Tensor:
    r"""Per-example soft-target cross-entropy, temperature 1 (the official recipe's loss).

    \(-\sum_k \mathrm{softmax}(t)_k \log \mathrm{softmax}(s)_k\); no hard-label term.
    """
    targets = tf.nn.softmax(tf.cast(teacher_logits, tf.float32))
    return -tf.reduce_sum(targets * tf.nn.log_softmax(student_logits), axis=-1)


class BNNTrainer(tf.keras.Model):
    """Trains ``student`` with ``model.fit``: AdamBNN's loss and weight decay around any model.

    Loss: distillation from a frozen ``teacher`` (run in inference mode on the same augmented
    batch) or from the teacher's logits cached in the data (batches of ``(images, labels,
    teacher_logits)``, see `make_dataset`'s ``soft_targets``; the teacher is then not run), or
    cross-entropy with the labels and optional label smoothing when there is no
    teacher. Weight decay on ``decayed`` variables only (default: `decayed_variables`):

    - ``"coupled"``: PyTorch's ``weight_decay`` (L2 added to the gradient before Adam's
      moments), implemented as the loss term \\(\\lambda/2 \\sum w^2\\), which is exact and
      replica-safe; any sign of \\(\\lambda\\) works.
    - ``"decoupled"``: AdamW's \\(w \\leftarrow w - \\eta \\lambda w\\) before the update
      (with the optimizer's current learning rate), on the same variables.

    With ``track_gradients`` (single replica), ``gradient_abs_max`` holds max |dL/dw| per
    binary conv kernel since `reset_gradient_tracking`, and ``gradient_norms`` the last step's
    L2 norm per kernel, for the dead-weight and gradient statistics of the analysis callbacks.

    Arguments:
        student: the network being trained (outputs logits).
        teacher: frozen real-valued network (outputs logits) or None.
        weight_decay: \\(\\lambda\\).
        weight_decay_mode: ``"coupled"`` or ``"decoupled"``.
        decayed: variables to decay; default `decayed_variables(student)`.
        label_smoothing: for the label loss (ignored with a teacher).
        track_gradients: keep the gradient statistics described above.
    """

    def __init__(
        self,
        student: tf.keras.Model,
        *,
        teacher: tf.keras.Model | None = None,
        weight_decay: float = 0.0,
        weight_decay_mode: str = "coupled",
        decayed: Sequence[tf.Variable] | None = None,
        label_smoothing: float = 0.0,
        track_gradients: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if weight_decay_mode not in WEIGHT_DECAY_MODES:
            raise ValueError(
                f"unknown weight_decay_mode {weight_decay_mode!r}; choose one of "
                f"{list(WEIGHT_DECAY_MODES)}"
            )
        self.student = student
        self.teacher = teacher
        if teacher is not None:
            teacher.trainable = False
        self.weight_decay = float(weight_decay)
        self.weight_decay_mode = weight_decay_mode
        if decayed is None:
            decayed = decayed_variables(student)
        self.decayed = [latent_variable(v) for v in decayed]
        self.label_smoothing = label_smoothing
        self.loss_tracker = tf.keras.metrics.Mean(name="loss")
        self.accuracy = tf.keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.track_gradients = track_gradients
        if track_gradients:
            kernels = [latent_variable(layer.kernel) for layer in binary_conv_layers(student)]
            self._tracked = kernels
            self.gradient_abs_max = [
                tf.Variable(tf.zeros(k.shape), trainable=False, name=f"grad_abs_max_{i}")
                for i, k in enumerate(kernels)
            ]
            self.gradient_norms = tf.Variable(
                tf.zeros(len(kernels)), trainable=False, name="gradient_norms"
            )

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy]

    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    def reset_gradient_tracking(self) -> None:
        """Restart the max-|gradient| window of ``gradient_abs_max``."""
        for variable in self.gradient_abs_max:
            variable.assign(tf.zeros_like(variable))

    def _per_example_loss(self, images, labels, logits, teacher_logits=None):
        if teacher_logits is not None:
            return distillation_loss(teacher_logits, logits)
        if self.teacher is not None:
            return distillation_loss(self.teacher(images, training=False), logits)
        num_classes = tf.shape(logits)[-1]
        targets = tf.one_hot(tf.cast(tf.reshape(labels, [-1]), tf.int32), num_classes)
        return tf.keras.losses.categorical_crossentropy(
            targets, logits, from_logits=True, label_smoothing=self.label_smoothing
        )

    def coupled_decay_loss(self) -> tf.Tensor:
        """\\(\\lambda/2 \\sum w^2\\) over the decayed variables (0 unless coupled)."""
        if self.weight_decay_mode != "coupled" or self.weight_decay == 0.0 or not self.decayed:
            return tf.constant(0.0)
        squares = tf.add_n([tf.reduce_sum(tf.square(v)) for v in self.decayed])
        return 0.5 * self.weight_decay * squares

    # AutoGraph does not know tf_keras as a library and would convert all of Keras' internals
    # on every layer call (~6x slower tracing); these steps have no tensor-dependent control flow.
    @tf.autograph.experimental.do_not_convert
    def train_step(self, data):
        images, labels, *cached = data
        teacher_logits = cached[0] if cached else None
        variables = self.student.trainable_variables
        with tf.GradientTape() as tape:
            logits = self.student(images, training=True)
            per_example = self._per_example_loss(images, labels, logits, teacher_logits)
            # Scaled by the global batch: replica gradients are summed, not averaged.
            loss = tf.nn.compute_average_loss(per_example)
            # Divided by the replica count so that the summed replica gradients add lambda*w once.
            total = loss + tf.nn.scale_regularization_loss(self.coupled_decay_loss())
        gradients = tape.gradient(total, variables)
        if self.track_gradients:
            self._update_gradient_tracking(variables, gradients)
        if self.weight_decay_mode == "decoupled" and self.weight_decay != 0.0:
            self._apply_decoupled_decay()
        self.optimizer.apply_gradients(zip(gradients, variables))
        self.loss_tracker.update_state(per_example)
        self.accuracy.update_state(labels, logits)
        return {m.name: m.result() for m in self.metrics}

    def _apply_decoupled_decay(self) -> None:
        learning_rate = self.optimizer._decayed_lr(tf.float32)
        factor = learning_rate * self.weight_decay

        def decay(strategy):
            for variable in self.decayed:
                strategy.extended.update(variable, lambda v: v.assign_sub(factor * v))

        # A cross-replica update, so mirrored copies of each variable stay identical.
        tf.distribute.get_replica_context().merge_call(decay)

    def _update_gradient_tracking(self, variables, gradients) -> None:
        by_id = {id(latent_variable(v)): g for v, g in zip(variables, gradients)}
        norms = []
        for kernel, tracker in zip(self._tracked, self.gradient_abs_max):
            gradient = by_id[id(kernel)]
            tracker.assign(tf.maximum(tracker, tf.abs(gradient)))
            norms.append(tf.norm(gradient))
        self.gradient_norms.assign(tf.stack(norms))

    @tf.autograph.experimental.do_not_convert
    def test_step(self, data):
        images, labels = data[:2]
        logits = self.student(images, training=False)
        num_classes = tf.shape(logits)[-1]
        targets = tf.one_hot(tf.cast(tf.reshape(labels, [-1]), tf.int32), num_classes)
        loss = tf.keras.losses.categorical_crossentropy(targets, logits, from_logits=True)
        self.loss_tracker.update_state(loss)
        self.accuracy.update_state(labels, logits)
        return {m.name: m.result() for m in self.metrics}
