"""The AI stock-analysis pipeline built on jobqueue."""
