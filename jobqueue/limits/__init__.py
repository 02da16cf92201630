"""Shared limiters: budgets (requests, input and output tokens...) that many queues spend
together, a job's cost of them settled against its real usage, limits learned at run time, a
429 that holds every queue of the limiter, and a circuit breaker per limiter."""

from .model import Breaker, Bucket, Cost, Limiter

__all__ = ["Breaker", "Bucket", "Cost", "Limiter"]
