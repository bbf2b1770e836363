"""Safety services (docs/MODERATION.md): the audit log now; cases, queues, actions and
evidence next."""
