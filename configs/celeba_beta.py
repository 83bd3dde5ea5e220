"""A β-VAE (β = 4) on CelebA faces at 64 x 64 x 3, beside the AE with the same network.

    python launch.py --config configs/celeba_beta.py --workdir runs/celeba_beta
    python launch.py --config configs/celeba_beta.py --workdir runs/celeba_beta --member=vae
    python launch.py --config configs/celeba_beta.py:2d --workdir runs/celeba_2d  # ae_vs_vae.png
    python launch.py --config configs/celeba_beta.py --workdir runs/faces \
        --config.data.name=folder:/data/celeba/img_align_celeba     # the JPEGs, unzipped

Data: TFDS's `celeb_a` (162,770 train and 19,962 test images of 218 x 178 x 3, unlabelled
here), centre-cropped to 148 x 148 and resized to 64 x 64 (Pillow's antialiased bilinear,
as torchvision's CenterCrop(148) + Resize(64)), once, when the split is prepared and cached.
TFDS cannot download CelebA by itself (Google Drive): put img_align_celeba.zip,
list_eval_partition.txt, list_attr_celeba.txt, list_landmarks_align_celeba.txt and
identity_CelebA.txt from the CelebA site (mmlab.ie.cuhk.edu.hk/projects/CelebA.html) in
$VAE_JAX_MANUAL_DIR/celeb_a/ (or --config.data.manual_dir); each is checked against TFDS's size
and SHA-256 before it prepares them. A folder of the aligned JPEGs works as well
(`folder:PATH`; a fixed 10% tests).

Model: the convolutional encoder of Higgins et al. (2017) and Burgess et al. (2018), as in
Locatello et al. (2019): four 4 x 4 stride-2 convolutions with 32, 32, 64, 64 channels
(64 -> 32 -> 16 -> 8 -> 4), a dense layer of 256 units, 32 latents (their CelebA size), and the
mirrored transposed-convolution decoder. The decoder is real-valued: a Gaussian over the pixel
values in [0, 1] with one learned σ (model.learn_scale), so the test numbers are continuous
log-densities in nats per image (12,288 values), negative once σ is small, and the bound does
not depend on a chosen σ. β = 4 weights the KL; the AE member minimises the reconstruction
term alone.

Each member writes reconstructions.png, samples.png and latents.png (PCA of the posterior
means); the VAE also traversals.png (and .gif): each latent unit, ordered by its KL, swept
through the prior. The `:2d` variant trains both with 2 latents, and the sweep then writes
ae_vs_vae.png (latent scatters and decoded manifolds side by side).

Not yet run on CelebA. The whole path was run end to end for one epoch on a generated folder
of 96 JPEGs of CelebA's size (218 x 178), to check the plumbing only.
"""

from configs import default
from vae_jax import config as config_lib

VARIANTS = ("2d",)


def get_config(variant: str | None = None):
  config_lib.check_variant("configs/celeba_beta.py", variant, VARIANTS)
  c = default.get_config()
  c.data.name = "celeb_a"
  c.data.crop = (148,)
  c.data.resize = (64, 64)
  c.data.color = "rgb"
  c.data.binarization = "none"  # colours in [0, 1]
  c.model.name = "vae"
  c.model.architecture = "conv"
  c.model.conv_channels = (32, 32, 64, 64)
  c.model.kernel_size = 4
  c.model.hidden_sizes = (256,)
  c.model.latent_dim = 32
  c.model.likelihood = "gaussian"
  c.model.scale = 0.1  # the initial σ
  c.model.learn_scale = True
  c.beta = 4.0
  c.optimizer.name = "adam"
  c.learning_rate = 5e-4
  c.batch_size = 128
  c.num_epochs = 20  # 25,420 steps
  c.eval_batch_size = 500
  c.checkpoint_every_epochs = 1
  if variant is not None:
    c.model.latent_dim = 2
  return c


def get_sweep(variant: str | None = None):
  config_lib.check_variant("configs/celeba_beta.py", variant, VARIANTS)
  return {"ae": {"model.name": "ae"}, "vae": {"model.name": "vae"}}
