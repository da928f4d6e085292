"""The account watch: balance and totals polls, the daily reconciliation, alerts, the pause."""
