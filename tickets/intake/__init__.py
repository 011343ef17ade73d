"""The seller's way in: the webhook and the refund and ticket-list endpoints, one module a step.

A request goes `views` -> `body` (read and parse the JSON, bounded) -> `signature` (Standard
Webhooks, or `seller_auth` for the seller's other endpoints) -> `validation` (the rules, and the
fast path that takes a plainly valid body) or `serializers` (DRF, for everything else) -> one
service in tickets.services; `answers` shapes what goes back.
"""
