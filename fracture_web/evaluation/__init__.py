"""Offline evaluation of an exported model on a labelled folder, without any training code.

``metrics`` (numpy), ``scoring`` (the app's preprocessing and model), ``report`` (summary and
table), ``plots`` (matplotlib, optional), ``model_card`` (Jinja2 template) and ``parity``
(TFLite files against the SavedModel). Nothing here imports scikit-learn, Keras or
``fracture_web.training``, so a clinic can evaluate from the runtime install.
"""
