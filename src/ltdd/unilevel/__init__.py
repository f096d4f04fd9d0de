"""UL-LT: uni-level long-tailed distillation (debiased experts, fair BN recalibration,
confidence-guided initialisation, statistical recovery, teacher relabelling) and ADSA.

See reference/unilevel-method.md for the specification every module follows.
"""
