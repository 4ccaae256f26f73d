"""The pure core: statuses, rule sets, scheduling, eligibility, contacts, money, ranges. No SQLAlchemy, no I/O."""
