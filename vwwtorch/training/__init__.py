"""Training: the TinyML book's recipe in Lightning (module, RMSProp as TF computes it, EMA), the CLI,
checkpoints (the one door for checkpoint files), transfer learning and fine-tuning."""
