"""Ledger, wallets, metering and settlement live here (built in the billing work)."""
