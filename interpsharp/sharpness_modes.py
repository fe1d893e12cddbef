"""The layer-wise perturbation modes (SPEC, config ``layerwise_sharpness.mode``), apart from
:mod:`interpsharp.sharpness` so that table code (the model summary) can name them without
importing torch.

- ``perturb_finetuned`` (the paper's Sec. 3.1, default): layer i of theta_1 is perturbed with
  noise scaled by |W1_i|, then interpolated: theta(alpha) + alpha * delta_i, so at alpha = 0
  the noise vanishes;
- ``perturb_interpolated``: noise scaled by |W_i(alpha)| on theta(alpha) itself.
"""

PERTURB_FINETUNED = "perturb_finetuned"
PERTURB_INTERPOLATED = "perturb_interpolated"
MODES = (PERTURB_FINETUNED, PERTURB_INTERPOLATED)
