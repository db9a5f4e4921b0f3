"""Models: MobileNetV1 as tf.slim defines it, its architecture as data, and its statistics."""
