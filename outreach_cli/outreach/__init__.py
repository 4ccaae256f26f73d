"""The outreach tick (`run-outreach`) as small units: a pure per-step plan, claims, message
building, one dispatcher, recording, step outcomes and fallbacks, reconciliation, expiry, the
forecast, and the tick that runs the phases in order (see ``tick.py``).
"""
