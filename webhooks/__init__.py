"""Webhook delivery: signing, URL guard, sender, retry schedule, delivery log."""
