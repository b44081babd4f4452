"""Galley: a self-hosted container orchestrator that speaks the Amazon ECS API."""

__version__ = "0.1.0"
