"""What the workers load to analyse a photo: the artifact's networks and heads, the gates, the risk policy and
the triage with the answers, the explanation picture; `skinsense classify`. It never imports models.training."""
