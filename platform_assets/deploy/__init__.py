"""Rolling a built Bento out: a managed local ``bentoml serve`` process, or a Kubernetes rollout."""
