"""jobqueue: an asyncio job queue with an atomic Redis engine."""
