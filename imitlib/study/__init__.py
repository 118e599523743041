"""The study's stage modules, one per stage of the DAG (:mod:`imitlib.dag`).

=====================  ==================================  =========================================
stage                  module                              builds
=====================  ==================================  =========================================
``01_world``           :mod:`imitlib.study.world`          base LMs, the teacher, task items
``02_imitation_data``  :mod:`imitlib.study.imitation_data` imitation conversations, budgets, exposure
``03_train``           :mod:`imitlib.study.train`          the imitation finetuning sweep
``04_evaluate``        :mod:`imitlib.study.evaluate`       per-model answers and benchmarks, rating
``05_analysis``        :mod:`imitlib.study.analysis`       tables, figures, the claims scorecard
=====================  ==================================  =========================================

A stage module takes its upstream results as arguments (:mod:`imitlib.runner` hands them in) and
imports no other stage module; the tools it uses live below, in :mod:`imitlib.world`,
:mod:`imitlib.data`, :mod:`imitlib.train`, :mod:`imitlib.evaluate` and :mod:`imitlib.analysis`.
"""
