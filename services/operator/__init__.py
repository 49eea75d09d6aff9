"""The ConnectionBudget operator: keeps every HPA-scaled ``replicas x pool size`` under
Postgres' ``max_connections`` by resizing the PgBouncer sidecars' pools live (docs/operator.md)."""
