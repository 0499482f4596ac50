"""Training, evaluating and packaging the model (TensorFlow, the data sets): `skinsense train`, `evaluate`,
`benchmark`; writes models/artifact, which models.serving loads."""
