"""disentanglement_lib's metrics under their old import path.

The metrics live one file per metric in `vae_jax.analysis.metrics` (the registry, its
preconditions and `evaluate`); this module re-exports what callers used from here, so
`from vae_jax.analysis import disentanglement` and `disentanglement.mig(...)`,
`disentanglement.compute_all(...)` keep working with the same numbers for the same seed.
"""

# pylint: disable=unused-import
from vae_jax.analysis.metrics import (PREFIX, REGISTRY, SCORE_KEYS, Evaluation,  # noqa: F401
                                      Inputs, compute_all, evaluate, result_keys)
from vae_jax.analysis.metrics.beta_vae import (beta_vae_features,  # noqa: F401
                                               beta_vae_from_features, beta_vae_score)
from vae_jax.analysis.metrics.common import (DEFAULTS, OBSERVATIONS_PER_CALL,  # noqa: F401
                                             FactorData, Representation, RngLike, as_generator,
                                             discrete_entropy, discrete_mutual_info, encode,
                                             factor_data_from_arrays, histogram_discretize,
                                             sample_codes, scaled_defaults)
from vae_jax.analysis.metrics.common import draw_seed as _seed  # noqa: F401
from vae_jax.analysis.metrics.common import gradient_boosting as _gradient_boosting  # noqa: F401
from vae_jax.analysis.metrics.common import linear_svc as _linear_svc  # noqa: F401
from vae_jax.analysis.metrics.common import (  # noqa: F401
    logistic_regression as _logistic_regression)
from vae_jax.analysis.metrics.dci import (GBT_IMPORTANCES, dci, dci_from_codes,  # noqa: F401
                                          dci_from_importance, dci_importance_matrix,
                                          gbt_importances)
from vae_jax.analysis.metrics.factor_vae import (factor_vae_from_votes,  # noqa: F401
                                                 factor_vae_score, factor_vae_votes)
from vae_jax.analysis.metrics.mig import mig, mig_from_codes  # noqa: F401
from vae_jax.analysis.metrics.modularity_explicitness import (  # noqa: F401
    explicitness_from_codes, modularity_explicitness, modularity_from_codes, modularity_from_mi)
from vae_jax.analysis.metrics.sap import sap, sap_from_codes, sap_score_matrix  # noqa: F401
