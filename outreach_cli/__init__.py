"""outreach: automated patient-balance outreach for a medical practice's billing team."""

__version__ = "0.1.0"
