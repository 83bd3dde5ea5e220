"""The core MLP 784-400-20 VAE of `mnist_vae.py`, trained with bfloat16 compute.

    python launch.py --config configs/mnist_vae_bf16.py --workdir runs/vae_bf16

(equivalently: `--config configs/mnist_vae.py --config.dtype=bfloat16`). The layers compute in
bfloat16; parameters, Adam's moments, the likelihood and the KL stay float32, and the test
metrics are computed in float32 from the same parameters, so `test/neg_elbo` compares directly
with a float32 run: after one epoch the two differed by 0.06 nats (tests/test_precision.py).
bfloat16 pays on GPUs and TPUs (tensor cores, half the activation memory); on a CPU without
native bfloat16 matmuls XLA emulates them and an epoch is slower than in float32.
"""

from configs import mnist_vae


def get_config():
  config = mnist_vae.get_config()
  config.dtype = "bfloat16"
  return config
