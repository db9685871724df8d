"""Evaluation: accuracy under attack, worst-case suites, sanity checks, weight statistics, Eq. 3 bounds."""

from .accuracy import evaluate, fixed_subset, predict, summary, wilson_interval
from .bounds import conv_spectral_norm, lipschitz_bound, measured_distortion
from .checks import check_images, sanity_checks
from .fast import PRECISIONS, attack_model, autocast_context, fold_batchnorm
from .stats import layer_stats_markdown, stats_markdown, weight_stats
from .suite import SUITE_HELP, SUITES, AttackSpec, check_suite, repeat_over_seeds, worst_case

__all__ = ["AttackSpec", "PRECISIONS", "SUITES", "SUITE_HELP", "attack_model", "autocast_context", "check_images",
           "check_suite", "conv_spectral_norm", "evaluate", "fixed_subset", "fold_batchnorm",
           "layer_stats_markdown", "lipschitz_bound", "measured_distortion", "predict", "repeat_over_seeds",
           "sanity_checks", "stats_markdown", "summary", "weight_stats", "wilson_interval", "worst_case"]
